/**
 * The publisher's hot SQL, each statement in one place. Every time comparison
 * runs on the database clock.
 */
import type { Sql } from '../db';
import type { OutboxRowForAppend } from './redis-scripts';

/**
 * Streams with at least one unpublished row. A loose index scan over the
 * partial index `outbox_event_unpublished_idx (stream_name, id) WHERE
 * published_at IS NULL`: one index probe per stream, however long the backlog.
 */
export async function streamsWithUnpublishedRows(sql: Sql): Promise<string[]> {
  const rows = await sql<{ stream_name: string }[]>`
    WITH RECURSIVE s AS (
      (SELECT stream_name FROM events.outbox_event WHERE published_at IS NULL ORDER BY stream_name LIMIT 1)
      UNION ALL
      SELECT (SELECT o.stream_name FROM events.outbox_event o
              WHERE o.published_at IS NULL AND o.stream_name > s.stream_name
              ORDER BY o.stream_name LIMIT 1)
      FROM s WHERE s.stream_name IS NOT NULL
    )
    SELECT stream_name FROM s WHERE stream_name IS NOT NULL`;
  return rows.map((r) => r.stream_name);
}

export interface DrainRow extends OutboxRowForAppend {
  /** False for a hand-inserted payload that is not a JSON object (published as is). */
  payloadIsObject: boolean;
}

/** A selected batch: its rows, and whether more rows were left behind (the drain loops on at once). */
export interface DrainBatch {
  rows: DrainRow[];
  /** The row limit was reached, or the byte budget cut the batch short. */
  full: boolean;
  /** Bytes of payload + headers text of the rows returned. */
  bytes: number;
}

/**
 * Bounds of one select, in rows AND bytes: 1,000 rows of 250 KiB would be
 * 250 MB in the publisher's heap (twice, with the overlapped UPDATE), over
 * the pod's memory limit. At least one row is always returned, however large.
 */
export interface BatchBounds {
  rows: number;
  bytes: number;
}

/**
 * The next unpublished rows of one stream with id > `afterId`, in id order
 * (the drain), at most `bounds.rows` rows and, past the first row, at most
 * `bounds.bytes` bytes of payload + headers text. Served by the partial
 * index, or by a primary-key range scan when the planner's statistics are
 * stale (a large backlog just drained): with `afterId` that range starts
 * where the last batch ended, so a long published prefix is never re-scanned
 * batch after batch. `afterId` = '0' is the full sweep that also finds rows
 * whose transaction committed late (commit order is not id order). Payload
 * and headers come back as JSON text, so they are appended without a
 * parse/stringify round trip.
 */
export async function selectUnpublishedBatch(sql: Sql, stream: string, afterId: string, bounds: BatchBounds): Promise<DrainBatch> {
  return byteBounded(
    sql,
    bounds,
    sql`WHERE stream_name = ${stream} AND published_at IS NULL AND id > ${afterId}::bigint`,
  );
}

/**
 * Rows of one stream published within the last `windowMs`, in id order,
 * from `afterId` on, bounded like the drain: what Redis data-loss recovery
 * re-appends.
 */
export async function selectRecentlyPublishedBatch(sql: Sql, stream: string, windowMs: number, afterId: string, bounds: BatchBounds): Promise<DrainBatch> {
  return byteBounded(
    sql,
    bounds,
    sql`WHERE stream_name = ${stream} AND id > ${afterId}::bigint
      AND published_at IS NOT NULL
      AND published_at > now() - make_interval(secs => ${windowMs}::float8 / 1000)`,
  );
}

/**
 * SQL: the first `bounds.rows` rows matching `where` in id order, rendered
 * as text once (the OFFSET 0 keeps the planner from inlining the subquery
 * and rendering payloads twice); a running sum of their sizes keeps the
 * prefix that fits in `bounds.bytes` (the first row always). `candidates`
 * (count over the whole window) tells a byte cut from the end of the rows.
 * Rendering a candidate costs server CPU whether it is returned or not, so
 * callers shrink `bounds.rows` to what fits (DrainBatchSizer).
 */
async function byteBounded(sql: Sql, bounds: BatchBounds, where: ReturnType<Sql>): Promise<DrainBatch> {
  const rows = await sql<(DrainRecord & { row_bytes: string; candidates: string })[]>`
    SELECT id::text, event_id::text, event_type, partition_key, payload, headers, created_at, is_object, row_bytes::text, candidates::text
    FROM (
      SELECT c.*, sum(c.row_bytes) OVER (ORDER BY c.id ROWS UNBOUNDED PRECEDING) AS running_bytes, count(*) OVER () AS candidates
      FROM (
        SELECT id, event_id, event_type, partition_key, payload::text AS payload, headers::text AS headers,
               to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS created_at,
               jsonb_typeof(payload) = 'object' AS is_object,
               octet_length(payload::text) + octet_length(headers::text) AS row_bytes
        FROM events.outbox_event ${where}
        ORDER BY id LIMIT ${bounds.rows} OFFSET 0
      ) c
    ) w
    WHERE running_bytes - row_bytes < ${bounds.bytes}
    ORDER BY w.id`;
  let bytes = 0;
  for (const row of rows) bytes += Number(row.row_bytes);
  const candidates = rows.length > 0 ? Number(rows[0]!.candidates) : 0;
  return { rows: rows.map(toDrainRow), full: candidates >= bounds.rows || rows.length < candidates, bytes };
}

/**
 * Per-stream row limit of the next select: the configured rows, shrunk to
 * what fits in the byte budget at the size of the rows seen last, so a
 * backlog of large rows does not make Postgres render a thousand payloads
 * to return a dozen. Grows back as soon as rows are small again.
 */
export class DrainBatchSizer {
  private limit: number;
  constructor(private readonly max: BatchBounds) {
    this.limit = max.rows;
  }

  get bounds(): BatchBounds {
    return { rows: this.limit, bytes: this.max.bytes };
  }

  observe(batch: DrainBatch): void {
    if (batch.rows.length === 0) return;
    const average = Math.max(1, batch.bytes / batch.rows.length);
    // One row more than fits, so a byte cut (not the row limit) says the batch was full.
    this.limit = Math.min(this.max.rows, Math.max(1, Math.floor(this.max.bytes / average) + 1));
  }
}

/** A drained row as selected by byteBounded. */
interface DrainRecord {
  id: string; event_id: string; event_type: string; partition_key: string; payload: string; headers: string; created_at: string; is_object: boolean;
}

function toDrainRow(r: DrainRecord): DrainRow {
  return {
    id: r.id,
    eventId: r.event_id,
    type: r.event_type,
    partitionKey: r.partition_key,
    payloadJson: r.payload,
    headersJson: r.headers,
    createdAt: r.created_at,
    payloadIsObject: r.is_object,
  };
}

/**
 * Marks rows published in ONE statement, fenced in SQL: it updates only while
 * `ownerId` still holds the stream's publisher lease with `fencingToken` and
 * the lease has not expired (database clock). Returns the number of rows
 * updated; 0 for a non-empty `ids` means the lease was lost.
 */
export async function markPublished(sql: Sql, stream: string, ids: readonly string[], ownerId: string, fencingToken: string): Promise<number> {
  const result = await sql`
    UPDATE events.outbox_event SET published_at = now()
    WHERE id = ANY(${`{${ids.join(',')}}`}::bigint[])
      AND published_at IS NULL
      AND EXISTS (
        SELECT 1 FROM events.stream_lease
        WHERE stream_name = ${stream} AND role = 'publisher'
          AND owner_id = ${ownerId} AND fencing_token = ${fencingToken}::bigint
          AND lease_until > now())`;
  return result.count;
}

export interface LeaseHolder {
  ownerId: string;
  /** Seconds until the lease expires, on the database clock (negative: expired). */
  secondsLeft: number;
  fencingToken: string;
}

/** Who holds a lease now, for the "waiting for expiry" log line. */
export async function leaseHolder(sql: Sql, stream: string, role: string): Promise<LeaseHolder | null> {
  const [row] = await sql<{ owner_id: string; seconds_left: number; fencing_token: string }[]>`
    SELECT owner_id, extract(epoch FROM lease_until - now())::float8 AS seconds_left, fencing_token::text
    FROM events.stream_lease WHERE stream_name = ${stream} AND role = ${role}`;
  return row ? { ownerId: row.owner_id, secondsLeft: Number(row.seconds_left), fencingToken: row.fencing_token } : null;
}

export interface QueueStat {
  stream: string;
  queued: number;
  oldestAgeSeconds: number;
}

/** Unpublished rows and the age of the oldest, per stream (for /metrics). */
export async function queueStats(sql: Sql): Promise<QueueStat[]> {
  const rows = await sql<{ stream_name: string; queued: string; oldest_age: number }[]>`
    SELECT stream_name, count(*)::text AS queued, extract(epoch FROM now() - min(created_at))::float8 AS oldest_age
    FROM events.outbox_event WHERE published_at IS NULL GROUP BY stream_name`;
  return rows.map((r) => ({ stream: r.stream_name, queued: Number(r.queued), oldestAgeSeconds: Number(r.oldest_age) }));
}

/**
 * Deletes up to `limit` published rows older than `retentionMs` (oldest
 * first, served by `outbox_event_published_at_idx`). Small batches keep each
 * transaction short; call again while it returns `limit`.
 */
export async function prunePublishedBatch(sql: Sql, retentionMs: number, limit: number): Promise<number> {
  const result = await sql`
    DELETE FROM events.outbox_event WHERE id IN (
      SELECT id FROM events.outbox_event
      WHERE published_at IS NOT NULL
        AND published_at < now() - make_interval(secs => ${retentionMs}::float8 / 1000)
      ORDER BY published_at
      LIMIT ${limit})`;
  return result.count;
}

/**
 * Identity of the connected database, stamped on every Redis stream the
 * publisher writes, because outbox ids and fencing tokens only compare within
 * one database. `<system_identifier>/<database oid>`: the oid differs between
 * databases of one server (also for one dropped and re-created under the same
 * name, or cloned from a template); the system identifier (set by initdb, kept
 * by physical replicas, so a failover keeps it) differs between servers. A
 * role that may not call `pg_control_system()` (revoked by some managed
 * services) gets `unknown-server/<oid>`: two servers whose databases share an
 * oid then look alike, which is no worse than before identities existed.
 * Privilege is checked first: the permission error would come at plan start,
 * even inside an untaken CASE branch.
 */
export async function databaseIdentity(sql: Sql): Promise<string> {
  const [database] = await sql<{ oid: string; may_read_control: boolean }[]>`
    SELECT oid::text, has_function_privilege('pg_catalog.pg_control_system()', 'EXECUTE') AS may_read_control
    FROM pg_database WHERE datname = current_database()`;
  if (!database) throw new Error('current_database() is missing from pg_database');
  if (!database.may_read_control) return `unknown-server/${database.oid}`;
  const [control] = await sql<{ system_identifier: string }[]>`SELECT system_identifier::text FROM pg_control_system()`;
  return `${control!.system_identifier}/${database.oid}`;
}
