/**
 * Bulk workloads and progress probes on the bench database. Times that feed
 * a figure are read on the database clock (`clock_timestamp()`), as text, and
 * intervals are computed in SQL, so no figure mixes two clocks.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { OUTBOX_NOTIFY_CHANNEL, type Sql } from '@petcover/outbox';
import { BENCH_EVENT_TYPE } from './bench-event';

/** Distinct partition keys of pre-filled events: enough to spread over any partition count. */
const PREFILL_PARTITION_KEYS = 1024;

/**
 * Inserts `count` outbox events (payload `{seq}`, seq = firstSeq...) spread
 * round-robin over `streams`, in one transaction, and NOTIFYs each stream as
 * `enqueue` does. Returns the database clock right after COMMIT: the moment
 * the whole backlog became visible at once.
 */
export async function prefillOutbox(sql: Sql, streams: readonly string[], count: number, firstSeq = 1): Promise<string> {
  await sql.begin(async (tx) => {
    await tx`
      INSERT INTO events.outbox_event (event_id, stream_name, partition_key, event_type, payload, headers)
      SELECT gen_random_uuid(),
             (${streams as string[]}::text[])[1 + (g % ${streams.length})],
             'entity-' || (g % ${PREFILL_PARTITION_KEYS}),
             ${BENCH_EVENT_TYPE},
             jsonb_build_object('seq', g),
             '{}'::jsonb
      FROM generate_series(${firstSeq}::bigint, ${firstSeq + count - 1}::bigint) AS g
      ORDER BY g`;
    for (const stream of streams) await tx`SELECT pg_notify(${OUTBOX_NOTIFY_CHANNEL}, ${stream})`;
  });
  return databaseNow(sql);
}

/** The database clock now, as timestamptz text. */
export async function databaseNow(sql: Sql): Promise<string> {
  const [row] = await sql<{ now: string }[]>`SELECT clock_timestamp()::text AS now`;
  return (row as { now: string }).now;
}

/** Milliseconds from `since` (database clock text) to the latest `column` of `table`. */
export async function millisecondsUntilLatest(sql: Sql, table: string, column: string, since: string): Promise<number | null> {
  const [row] = await sql.unsafe<{ ms: string | null }[]>(
    `SELECT (extract(epoch FROM max(${column}) - $1::timestamptz) * 1000)::float8::text AS ms FROM ${table}`,
    [since],
  );
  return row?.ms == null ? null : Number(row.ms);
}

export async function countRows(sql: Sql, query: string): Promise<number> {
  const [row] = await sql.unsafe<{ n: string }[]>(`SELECT (${query})::bigint::text AS n`);
  return Number(row?.n ?? 0);
}

/**
 * Polls `probe` every `intervalMs` until it returns at least `target` or the
 * deadline passes. Returns the last value seen (less than target on timeout).
 */
export async function waitForCount(probe: () => Promise<number>, target: number, timeoutMs: number, intervalMs = 100): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  let seen = await probe();
  while (seen < target && Date.now() < deadline) {
    await sleep(intervalMs);
    seen = await probe();
  }
  return seen;
}

/** Rows handled (one per event or job) so far. */
export const handledCount = (sql: Sql) => countRows(sql, 'SELECT count(*) FROM bench.handled');

/** Handled rows whose seq appears more than once: effects applied twice. */
export const duplicateHandledCount = (sql: Sql) =>
  countRows(sql, 'SELECT count(*) FROM (SELECT seq FROM bench.handled GROUP BY seq HAVING count(*) > 1) d');

/**
 * Commit-to-handler latencies (ms) of every produced row that was handled:
 * `handled_at - written_at`, both `clock_timestamp()` of the same server; and
 * from the schedule slot (`scheduled_at`, the same machine's wall clock).
 */
export async function readLatencies(sql: Sql): Promise<{ fromCommit: number[]; fromSchedule: number[] }> {
  const rows = await sql.unsafe<{ c: number; s: number | null }[]>(`
    SELECT (extract(epoch FROM h.handled_at - d.written_at) * 1000)::float8 AS c,
           (extract(epoch FROM h.handled_at - d.scheduled_at) * 1000)::float8 AS s
    FROM bench.handled h JOIN bench.domain_row d USING (seq)`);
  return {
    fromCommit: rows.map((r) => Number(r.c)),
    fromSchedule: rows.filter((r) => r.s !== null).map((r) => Number(r.s)),
  };
}
