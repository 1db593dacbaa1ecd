/**
 * Parking (issue 19): the statements on events.parked_key / parked_event,
 * each in one place. A key whose handler failed with a retryable error is
 * parked durably, in the transaction that records the failure; its later
 * entries are parked behind it in arrival order (each with its inbox row, in
 * the transaction that parks it), their Redis entries acknowledged, and the
 * partition moves on. The partition's lease holder retries the key when due
 * (retry-parked-keys.ts). Only the holder of the partition's current lease
 * grant ever ADDS parked rows (every transaction that parks checks the lease,
 * owner and fencing token), which is what lets a worker skip the lookup while
 * it knows its partition has no parked key.
 */
import { sql as drizzleSql } from 'drizzle-orm';
import type { Database, Transaction } from '../db';
import type { StreamEvent } from '../streams';

/** Where a parked key lives: its group and partition stream. */
export interface ParkingScope {
  group: string;
  /** Partition stream. */
  partitionStream: string;
}

/** An entry to park: the decoded event and its Redis entry id. */
export interface EntryToPark {
  entryId: string;
  event: StreamEvent;
}

function textArray(values: readonly string[]): string {
  // A Postgres array literal; every element quoted and escaped.
  return `{${values.map((v) => `"${v.replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`).join(',')}}`;
}

/**
 * The keys among `keys` that are parked in `scope`, row-locked FOR SHARE so
 * an operator's release or discard of one of them waits for this transaction.
 *
 * SQL: SELECT partition_key FROM events.parked_key
 *      WHERE group_name = $1 AND stream_name = $2 AND partition_key = ANY($3) FOR SHARE
 */
export async function parkedKeysAmong(tx: Transaction, scope: ParkingScope, keys: readonly string[]): Promise<Set<string>> {
  if (keys.length === 0) return new Set();
  const rows = (await tx.execute(drizzleSql`
    SELECT partition_key FROM events.parked_key
    WHERE group_name = ${scope.group} AND stream_name = ${scope.partitionStream}
      AND partition_key = ANY(${textArray([...new Set(keys)])}::text[])
    FOR SHARE`)) as unknown as { partition_key: string }[];
  return new Set(rows.map((r) => r.partition_key));
}

/**
 * Parks `entries` (in this order) behind their keys, which must be parked
 * already (the foreign key refuses otherwise). Idempotent per event: an event
 * parked before is left where it is.
 *
 * SQL: INSERT INTO events.parked_event (...) SELECT ... FROM jsonb_array_elements($1) WITH ORDINALITY
 *      ORDER BY ordinality ON CONFLICT (group_name, event_id) DO NOTHING
 */
export async function parkEntries(tx: Transaction, scope: ParkingScope, entries: readonly EntryToPark[]): Promise<void> {
  if (entries.length === 0) return;
  const rows = entries.map(({ entryId, event }) => ({
    k: event.partitionKey,
    r: entryId,
    e: event.eventId,
    t: event.type,
    o: event.outboxId,
    // JSON text inside the JSON parameter: a NUL stays the escape \u0000 (see the schema).
    p: JSON.stringify(event.payload),
    h: JSON.stringify(event.headers),
    c: event.createdAt,
  }));
  await tx.execute(drizzleSql`
    INSERT INTO events.parked_event
      (group_name, stream_name, partition_key, redis_entry_id, event_id, event_type, outbox_id, payload, headers, event_created_at)
    SELECT ${scope.group}, ${scope.partitionStream}, x.value->>'k', x.value->>'r', (x.value->>'e')::uuid, x.value->>'t',
           x.value->>'o', x.value->>'p', x.value->>'h', x.value->>'c'
    FROM jsonb_array_elements(${JSON.stringify(rows)}::jsonb) WITH ORDINALITY AS x(value, n)
    ORDER BY x.n
    ON CONFLICT (group_name, event_id) DO NOTHING`);
}

/** The state a key is parked with after a failure of its head. */
export interface ParkedFailure {
  partitionKey: string;
  /** Failed attempts of the head so far (≥ 1). */
  attempts: number;
  /** Backoff until the next attempt (database clock); ignored when halted. */
  delayMs: number;
  error: string;
  /** Policy `halt` and out of attempts: no retry until an operator acts. */
  halted: boolean;
}

/**
 * Parks a key whose head just failed for the first time on a fresh read (the
 * key was not parked). If it was parked meanwhile (it cannot be under one
 * lease holder, but the statement stays safe), its state is left alone.
 *
 * SQL: INSERT INTO events.parked_key (...) VALUES (..., now() + $delay, ...) ON CONFLICT DO NOTHING
 */
export async function parkKey(tx: Transaction, scope: ParkingScope, failure: ParkedFailure): Promise<void> {
  await tx.execute(drizzleSql`
    INSERT INTO events.parked_key
      (group_name, stream_name, partition_key, attempts, next_attempt_at, halted_at, last_error, first_failed_at)
    VALUES (${scope.group}, ${scope.partitionStream}, ${failure.partitionKey}, ${failure.attempts},
      now() + make_interval(secs => ${failure.delayMs}::float8 / 1000),
      CASE WHEN ${failure.halted}::boolean THEN now() END, ${failure.error}, now())
    ON CONFLICT (group_name, stream_name, partition_key) DO NOTHING`);
}

/**
 * Records another failure of a parked key's head: attempts, error, next
 * attempt after `delayMs` (database clock), or halted.
 *
 * SQL: UPDATE events.parked_key SET attempts = $, last_error = $, next_attempt_at = now() + $delay,
 *        halted_at = CASE WHEN $halted THEN now() END, first_failed_at = coalesce(first_failed_at, now()) WHERE <key>
 */
export async function recordParkedFailure(tx: Transaction, scope: ParkingScope, failure: ParkedFailure): Promise<void> {
  await tx.execute(drizzleSql`
    UPDATE events.parked_key SET
      attempts = ${failure.attempts}, last_error = ${failure.error},
      next_attempt_at = now() + make_interval(secs => ${failure.delayMs}::float8 / 1000),
      halted_at = CASE WHEN ${failure.halted}::boolean THEN now() END,
      first_failed_at = CASE WHEN ${failure.attempts}::int = 1 THEN now() ELSE coalesce(first_failed_at, now()) END
    WHERE group_name = ${scope.group} AND stream_name = ${scope.partitionStream} AND partition_key = ${failure.partitionKey}`);
}

/**
 * Deletes the parked events `ids` and returns the event ids deleted: the
 * events whose handler this transaction runs (an id missing was run or
 * discarded meanwhile).
 *
 * SQL: DELETE FROM events.parked_event WHERE group_name = $1 AND id = ANY($2) RETURNING event_id
 */
export async function unparkEvents(tx: Transaction, group: string, ids: readonly string[]): Promise<Set<string>> {
  if (ids.length === 0) return new Set();
  const rows = (await tx.execute(drizzleSql`
    DELETE FROM events.parked_event WHERE group_name = ${group} AND id = ANY(${`{${ids.join(',')}}`}::bigint[])
    RETURNING event_id::text AS event_id`)) as unknown as { event_id: string }[];
  return new Set(rows.map((r) => r.event_id));
}

/**
 * After a key's parked events ran (or its head was dead-lettered or
 * discarded): the key is released when nothing of it is parked any more,
 * else its next head starts afresh, due now. Returns true when released.
 *
 * SQL: DELETE FROM events.parked_key WHERE <key> AND NOT EXISTS (parked event of the key);
 *      else UPDATE ... SET attempts = 0, next_attempt_at = now(), halted_at = NULL, last_error = NULL, first_failed_at = NULL
 */
export async function settleParkedKey(tx: Transaction, scope: ParkingScope, partitionKey: string): Promise<boolean> {
  const released = await tx.execute(drizzleSql`
    DELETE FROM events.parked_key k
    WHERE k.group_name = ${scope.group} AND k.stream_name = ${scope.partitionStream} AND k.partition_key = ${partitionKey}
      AND NOT EXISTS (SELECT 1 FROM events.parked_event e
        WHERE e.group_name = k.group_name AND e.stream_name = k.stream_name AND e.partition_key = k.partition_key)
    RETURNING 1`);
  if (released.length > 0) return true;
  await tx.execute(drizzleSql`
    UPDATE events.parked_key SET attempts = 0, next_attempt_at = now(), halted_at = NULL, last_error = NULL, first_failed_at = NULL
    WHERE group_name = ${scope.group} AND stream_name = ${scope.partitionStream} AND partition_key = ${partitionKey}`);
  return false;
}

/** What a partition has parked, for its worker's schedule and the gauges. */
export interface PartitionParking {
  /** Parked keys (halted ones included). */
  keys: number;
  halted: number;
  /** Parked events (heads included). */
  entries: number;
  /** Keys due now (not halted), most overdue first, at most the limit asked. */
  due: { partitionKey: string; attempts: number; firstFailedAt: Date | null }[];
  /** Milliseconds until the next key not due yet is (database clock); null when none waits. */
  nextDueInMs: number | null;
}

/**
 * One look at a partition's parking: counts, the keys due now, and when the
 * next one will be. Time is compared in SQL, on the database clock.
 *
 * SQL: one statement over events.parked_key (and a count of parked_event)
 */
export async function partitionParking(db: Database, scope: ParkingScope, dueLimit: number): Promise<PartitionParking> {
  const [summary] = (await db.execute(drizzleSql`
    SELECT
      (SELECT count(*)::int FROM events.parked_key WHERE group_name = ${scope.group} AND stream_name = ${scope.partitionStream}) AS keys,
      (SELECT count(*)::int FROM events.parked_key WHERE group_name = ${scope.group} AND stream_name = ${scope.partitionStream}
         AND halted_at IS NOT NULL) AS halted,
      (SELECT count(*)::int FROM events.parked_event WHERE group_name = ${scope.group} AND stream_name = ${scope.partitionStream}) AS entries,
      (SELECT ceil(extract(epoch FROM min(next_attempt_at) - now()) * 1000)::bigint FROM events.parked_key
         WHERE group_name = ${scope.group} AND stream_name = ${scope.partitionStream} AND halted_at IS NULL AND next_attempt_at > now())
        AS next_due_in_ms,
      (SELECT coalesce(json_agg(json_build_object('k', d.partition_key, 'a', d.attempts, 'f', d.first_failed_at) ORDER BY d.next_attempt_at), '[]')
         FROM (SELECT partition_key, attempts, first_failed_at, next_attempt_at FROM events.parked_key
               WHERE group_name = ${scope.group} AND stream_name = ${scope.partitionStream} AND halted_at IS NULL AND next_attempt_at <= now()
               ORDER BY next_attempt_at LIMIT ${dueLimit}) d) AS due`)) as unknown as {
    keys: number;
    halted: number;
    entries: number;
    next_due_in_ms: string | number | null;
    due: { k: string; a: number; f: string | null }[];
  }[];
  return {
    keys: summary!.keys,
    halted: summary!.halted,
    entries: summary!.entries,
    due: summary!.due.map((d) => ({ partitionKey: d.k, attempts: d.a, firstFailedAt: d.f === null ? null : new Date(d.f) })),
    nextDueInMs: summary!.next_due_in_ms === null ? null : Number(summary!.next_due_in_ms),
  };
}

/** A parked event as loaded for its retry. */
export interface ParkedEntry {
  /** parked_event.id (decimal string). */
  id: string;
  entryId: string;
  event: StreamEvent;
}

/**
 * The oldest parked events of one key, in order: at most `limit`, and at most
 * `maxBytes` of payload and headers (the first always comes), so a retry holds
 * no more than a read would.
 *
 * SQL: SELECT ... FROM events.parked_event WHERE <key> ORDER BY id (the bigint) LIMIT $limit, cut by a running byte sum
 */
export async function loadParkedEntries(db: Database, scope: ParkingScope, partitionKey: string, limit: number, maxBytes: number): Promise<ParkedEntry[]> {
  const rows = (await db.execute(drizzleSql`
    SELECT r.parked_id::text AS id, redis_entry_id, event_id::text AS event_id, event_type, outbox_id, payload, headers, event_created_at FROM (
      SELECT e.id AS parked_id, redis_entry_id, event_id, event_type, outbox_id, payload, headers, event_created_at,
             sum(octet_length(payload) + octet_length(headers)) OVER (ORDER BY e.id) AS running,
             octet_length(payload) + octet_length(headers) AS size
      FROM events.parked_event e
      WHERE group_name = ${scope.group} AND stream_name = ${scope.partitionStream} AND partition_key = ${partitionKey}
      -- The bigint id: ordering by a ::text alias would put 10 before 9.
      ORDER BY e.id LIMIT ${limit}) r
    WHERE r.running - r.size = 0 OR r.running <= ${maxBytes}
    ORDER BY r.parked_id`)) as unknown as {
    id: string;
    redis_entry_id: string;
    event_id: string;
    event_type: string;
    outbox_id: string;
    payload: string;
    headers: string;
    event_created_at: string;
  }[];
  return rows.map((r) => ({
    id: r.id,
    entryId: r.redis_entry_id,
    event: {
      outboxId: r.outbox_id,
      eventId: r.event_id,
      type: r.event_type,
      partitionKey,
      payload: JSON.parse(r.payload) as unknown,
      headers: JSON.parse(r.headers) as Record<string, string>,
      createdAt: r.event_created_at,
    },
  }));
}
