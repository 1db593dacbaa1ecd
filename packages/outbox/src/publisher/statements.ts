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
 * Published rows of one stream, id > `afterId`, whose recorded Redis entry id
 * is newer than `after` (ms, seq), bounded like the drain: what a Redis found
 * behind must get back (requeueRows puts them back in the queue). Rows published before entry ids were recorded (null)
 * cannot be told apart and are not returned. A scan of the stream's published
 * rows in id order (no index serves it: it runs only after Redis lost data,
 * and an index on the entry id would cost every mark an index insert).
 */
export async function selectRecordedAfter(sql: Sql, stream: string, after: { ms: bigint; seq: bigint }, afterId: string, bounds: BatchBounds): Promise<DrainBatch> {
  return byteBounded(
    sql,
    bounds,
    sql`WHERE stream_name = ${stream} AND id > ${afterId}::bigint
      AND published_at IS NOT NULL AND redis_entry_id IS NOT NULL
      AND (split_part(redis_entry_id, '-', 1)::bigint, split_part(redis_entry_id, '-', 2)::bigint) > (${String(after.ms)}::bigint, ${String(after.seq)}::bigint)`,
  );
}

/**
 * SQL: the first `bounds.rows` rows matching `where` in id order, rendered
 * as text once (the OFFSET 0 keeps the planner from inlining the subquery
 * and rendering payloads twice; the sizes are taken from that text one level
 * up, where `octet_length(payload::text)` beside `payload::text` rendered each
 * payload a second time: 1-2 ms more executor time per 500 rows); a running
 * sum of their sizes keeps the prefix that fits in `bounds.bytes` (the first
 * row always). `candidates`
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
        SELECT r.*, octet_length(r.payload) + octet_length(r.headers) AS row_bytes
        FROM (
          SELECT id, event_id, event_type, partition_key, payload::text AS payload, headers::text AS headers,
                 to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS created_at,
                 jsonb_typeof(payload) = 'object' AS is_object
          FROM events.outbox_event ${where}
          ORDER BY id LIMIT ${bounds.rows} OFFSET 0
        ) r
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
 * SQL fragment: the stream's publisher lease row when `ownerId` holds it with
 * `fencingToken` and it has not expired (database clock). Every write of the
 * record is fenced by it.
 */
function heldLease(sql: Sql, stream: string, ownerId: string, fencingToken: string): ReturnType<Sql> {
  return sql`
    SELECT 1 FROM events.stream_lease
    WHERE stream_name = ${stream} AND role = 'publisher'
      AND owner_id = ${ownerId} AND fencing_token = ${fencingToken}::bigint
      AND lease_until > now()`;
}

/** Rows to record with the Redis entries they went to, and each partition's new last entry. */
export interface EntryRecord {
  /** Outbox ids, event ids and Redis entry ids, index-aligned. */
  ids: readonly string[];
  eventIds: readonly string[];
  entryIds: readonly string[];
  /** Per partition stream written: its Redis key, last entry id and that entry's outbox id. */
  heads: ReadonlyArray<{ redisKey: string; lastEntryId: string; lastOutboxId: string }>;
}

/**
 * Marks rows published and records where each went (its Redis entry id), and
 * moves each written partition's position to its last entry, in ONE statement
 * fenced in SQL: nothing changes unless `ownerId` still holds the stream's
 * publisher lease with `fencingToken` and the lease has not expired (database
 * clock). A row is matched by outbox id AND event id, so entries read back
 * from Redis never mark another database's row. Only unpublished rows are
 * marked (the drain, and entries found ahead of Postgres). Clears the
 * partitions' recorded fault. Returns whether the lease held and the number
 * of rows updated.
 *
 * The arrays go in through scalar subqueries so that no plan sees their
 * length: every plan, the first five custom ones of a connection as well as
 * the generic one after them, then expects a few rows and probes a unique
 * index per row. Given the length of a literal array (500-1,000) and the
 * statistics of an outbox analyzed while its backlog was small (or empty, as
 * in the bench), the custom plans hashed the batch against every
 * unpublished row found through `outbox_event_unpublished_idx` — the whole
 * backlog, 100-250 ms per batch of 500 at a 200,000-row backlog, against
 * 10-20 ms for the probes (docs/notes/2026-11-30/i20-relay-profile.md).
 */
export async function recordEntries(sql: Sql, stream: string, ownerId: string, fencingToken: string, record: EntryRecord): Promise<{ leaseHeld: boolean; updated: number }> {
  const [row] = await sql<{ lease_held: boolean; updated: number }[]>`
    WITH lease AS (${heldLease(sql, stream, ownerId, fencingToken)}),
    marked AS (
      UPDATE events.outbox_event o
      SET published_at = COALESCE(o.published_at, now()), redis_entry_id = m.entry_id
      FROM unnest((SELECT ${textArray(record.ids)}::bigint[]), (SELECT ${textArray(record.eventIds)}::uuid[]), (SELECT ${textArray(record.entryIds)}::text[])) AS m(id, event_id, entry_id)
      WHERE o.id = m.id AND o.event_id = m.event_id
        AND o.published_at IS NULL
        AND EXISTS (SELECT 1 FROM lease)
      RETURNING 1),
    heads AS (
      INSERT INTO events.redis_stream_position AS p (redis_key, stream_name, last_entry_id, last_outbox_id)
      SELECT h.redis_key, ${stream}, h.last_entry_id, h.last_outbox_id
      FROM unnest(${textArray(record.heads.map((h) => h.redisKey))}::text[], ${textArray(record.heads.map((h) => h.lastEntryId))}::text[],
                  ${textArray(record.heads.map((h) => h.lastOutboxId))}::bigint[]) AS h(redis_key, last_entry_id, last_outbox_id)
      WHERE EXISTS (SELECT 1 FROM lease)
      ON CONFLICT (redis_key) DO UPDATE
        SET stream_name = excluded.stream_name, last_entry_id = excluded.last_entry_id, last_outbox_id = excluded.last_outbox_id,
            fault = NULL, fault_since = NULL, updated_at = now())
    SELECT EXISTS (SELECT 1 FROM lease) AS lease_held, (SELECT count(*)::int FROM marked) AS updated`;
  return { leaseHeld: Boolean(row?.lease_held), updated: Number(row?.updated ?? 0) };
}

/**
 * Puts published rows that Redis lost back in the queue: `published_at` and
 * the recorded entry id set back to NULL, so the drain appends them again,
 * in outbox-id order, before any newer row. Rows are matched by outbox id AND
 * event id, and nothing changes unless `ownerId` holds the stream's lease with
 * `fencingToken` (database clock), as in recordEntries. Returns whether the
 * lease held and the number of rows queued again. The arrays go in through
 * scalar subqueries for the reason recordEntries gives: with their length in
 * view and stale statistics, the plans scanned the whole outbox per batch.
 */
export async function requeueRows(
  sql: Sql,
  stream: string,
  ownerId: string,
  fencingToken: string,
  rows: { ids: readonly string[]; eventIds: readonly string[] },
): Promise<{ leaseHeld: boolean; updated: number }> {
  const [row] = await sql<{ lease_held: boolean; updated: number }[]>`
    WITH lease AS (${heldLease(sql, stream, ownerId, fencingToken)}),
    requeued AS (
      UPDATE events.outbox_event o SET published_at = NULL, redis_entry_id = NULL
      FROM unnest((SELECT ${textArray(rows.ids)}::bigint[]), (SELECT ${textArray(rows.eventIds)}::uuid[])) AS m(id, event_id)
      WHERE o.id = m.id AND o.event_id = m.event_id AND o.stream_name = ${stream}
        AND o.published_at IS NOT NULL
        AND EXISTS (SELECT 1 FROM lease)
      RETURNING 1)
    SELECT EXISTS (SELECT 1 FROM lease) AS lease_held, (SELECT count(*)::int FROM requeued) AS updated`;
  return { leaseHeld: Boolean(row?.lease_held), updated: Number(row?.updated ?? 0) };
}

/**
 * Records that a partition stream ends at `lastEntryId` (Redis's own last
 * entry, after the rows it lost were queued again), fenced like
 * recordEntries. Returns whether the lease held.
 */
export async function recordPosition(sql: Sql, stream: string, ownerId: string, fencingToken: string, redisKey: string, lastEntryId: string): Promise<boolean> {
  const [row] = await sql<{ lease_held: boolean }[]>`
    WITH lease AS (${heldLease(sql, stream, ownerId, fencingToken)}),
    moved AS (
      INSERT INTO events.redis_stream_position AS p (redis_key, stream_name, last_entry_id, last_outbox_id)
      SELECT ${redisKey}, ${stream}, ${lastEntryId}, NULL WHERE EXISTS (SELECT 1 FROM lease)
      ON CONFLICT (redis_key) DO UPDATE
        SET last_entry_id = excluded.last_entry_id, last_outbox_id = NULL, updated_at = now())
    SELECT EXISTS (SELECT 1 FROM lease) AS lease_held`;
  return Boolean(row?.lease_held);
}

/** A Postgres array literal of plain values (ids, uuids, entry ids, stream keys: no quotes or commas). */
function textArray(values: readonly string[]): string {
  return `{${values.map((v) => `"${v.replace(/["\\]/g, '\\$&')}"`).join(',')}}`;
}

export interface RecordedPosition {
  redisKey: string;
  lastEntryId: string | null;
  trimmedBelow: string | null;
}

/** What Postgres recorded for each of these partition keys (absent: nothing yet). */
export async function readPositions(sql: Sql, redisKeys: readonly string[]): Promise<Map<string, RecordedPosition>> {
  const rows = await sql<{ redis_key: string; last_entry_id: string | null; trimmed_below: string | null }[]>`
    SELECT redis_key, last_entry_id, trimmed_below FROM events.redis_stream_position
    WHERE redis_key = ANY(${textArray(redisKeys)}::text[])`;
  return new Map(rows.map((r) => [r.redis_key, { redisKey: r.redis_key, lastEntryId: r.last_entry_id, trimmedBelow: r.trimmed_below }]));
}

/** Every partition stream with a recorded last entry: what the lease keeper checks for idle streams Redis lost. */
export async function recordedPositions(sql: Sql): Promise<Array<{ stream: string; redisKey: string; lastEntryId: string }>> {
  const rows = await sql<{ stream_name: string; redis_key: string; last_entry_id: string }[]>`
    SELECT stream_name, redis_key, last_entry_id FROM events.redis_stream_position WHERE last_entry_id IS NOT NULL`;
  return rows.map((r) => ({ stream: r.stream_name, redisKey: r.redis_key, lastEntryId: r.last_entry_id }));
}

/** After a trim: entries below `minId` are gone by design, so recovery never re-appends them. */
export async function recordTrim(sql: Sql, stream: string, redisKey: string, minId: string): Promise<void> {
  await sql`
    INSERT INTO events.redis_stream_position (redis_key, stream_name, trimmed_below) VALUES (${redisKey}, ${stream}, ${minId})
    ON CONFLICT (redis_key) DO UPDATE SET trimmed_below = excluded.trimmed_below, updated_at = now()`;
}

/**
 * Records (or, with `fault` null, clears) the Redis error one partition
 * stream fails with, so `events status` can name it. `fault_since` keeps the
 * first time of an ongoing fault.
 */
export async function recordFault(sql: Sql, stream: string, redisKey: string, fault: string | null): Promise<void> {
  await sql`
    INSERT INTO events.redis_stream_position AS p (redis_key, stream_name, fault, fault_since)
    VALUES (${redisKey}, ${stream}, ${fault}, CASE WHEN ${fault}::text IS NULL THEN NULL ELSE now() END)
    ON CONFLICT (redis_key) DO UPDATE
      SET fault = excluded.fault,
          fault_since = CASE WHEN excluded.fault IS NULL THEN NULL ELSE COALESCE(p.fault_since, now()) END,
          updated_at = now()`;
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

/** What one prune window held and did (see pruneWindow). */
export interface PruneWindow {
  /** Rows the window held: `rows`, or fewer when the table ends inside it. */
  examined: number;
  deleted: number;
  /** The window's highest id (null when it held no row): the next window starts above it. */
  lastId: string | null;
  /**
   * The window held a row created at or after the cutoff. No row above it can
   * be due yet (see prunePublishedRows in maintenance.ts for why).
   */
  reachedRecent: boolean;
}

/**
 * One window of the retention prune, in one statement (one short
 * transaction): the `rows` lowest ids >= `fromId` (a primary-key range scan,
 * so gaps left by earlier prunes cost nothing), of which the rows published
 * before the cutoff (`now() - retentionMs`, database clock) are deleted.
 * Unpublished rows and rows published after the cutoff stay. The cutoff is
 * also checked on the deleted row itself, not only on the window's snapshot:
 * a row a concurrent replay or recovery just put back in the queue
 * (published_at set to NULL) is re-checked on its newest version and kept.
 * Idempotent; concurrent callers only compete for the same rows.
 *
 * Needs no index on published_at: that index cost every mark-published
 * UPDATE one more index insert per row (migration 0004 dropped it).
 */
export async function pruneWindow(sql: Sql, fromId: string, retentionMs: number, rows: number): Promise<PruneWindow> {
  const [row] = await sql<{ examined: number; deleted: number; last_id: string | null; reached_recent: boolean }[]>`
    WITH cutoff AS (SELECT now() - make_interval(secs => ${retentionMs}::float8 / 1000) AS at),
    win AS MATERIALIZED (
      SELECT id, created_at, published_at FROM events.outbox_event
      WHERE id >= ${fromId}::bigint ORDER BY id LIMIT ${rows}),
    deleted AS (
      DELETE FROM events.outbox_event o USING win, cutoff
      WHERE o.id = win.id AND win.published_at < cutoff.at AND o.published_at < cutoff.at
      RETURNING 1)
    SELECT (SELECT count(*) FROM win)::int AS examined,
           (SELECT count(*) FROM deleted)::int AS deleted,
           (SELECT max(id) FROM win)::text AS last_id,
           EXISTS (SELECT 1 FROM win, cutoff WHERE win.created_at >= cutoff.at) AS reached_recent`;
  return {
    examined: Number(row?.examined ?? 0),
    deleted: Number(row?.deleted ?? 0),
    lastId: row?.last_id ?? null,
    reachedRecent: Boolean(row?.reached_recent),
  };
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
