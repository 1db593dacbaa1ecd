/**
 * The read-only SQL behind `events status`. Every age is computed on the
 * database clock (`now()`), never against the caller's clock.
 */
import type { Sql } from '../db';

export interface OutboxStreamRow {
  stream_name: string;
  unpublished: string;
  oldest_unpublished_age_s: string | null;
  last_published_ms: string | null;
  last_published_age_s: string | null;
  last_published_id: string | null;
}

/**
 * Per stream: unpublished count, age of the oldest unpublished row, time of the
 * newest publication.
 * Params: stream (optional filter). Result: one row per stream that has rows.
 * Cost: one pass over the outbox (published rows are pruned after the
 * retention window, so the table stays bounded); fine for an on-call command,
 * not for a hot loop.
 */
export async function selectOutboxStreams(sql: Sql, stream?: string): Promise<OutboxStreamRow[]> {
  return sql<OutboxStreamRow[]>`
    SELECT stream_name,
           count(*) FILTER (WHERE published_at IS NULL)::text AS unpublished,
           extract(epoch FROM now() - min(created_at) FILTER (WHERE published_at IS NULL))::text AS oldest_unpublished_age_s,
           (extract(epoch FROM max(published_at)) * 1000)::bigint::text AS last_published_ms,
           extract(epoch FROM now() - max(published_at))::text AS last_published_age_s,
           max(id) FILTER (WHERE published_at IS NOT NULL)::text AS last_published_id
    FROM events.outbox_event
    WHERE ${stream === undefined ? sql`true` : sql`stream_name = ${stream}`}
    GROUP BY stream_name
    ORDER BY stream_name`;
}

export interface LeaseRow {
  stream_name: string;
  role: string;
  owner_id: string;
  fencing_token: string;
  lease_until_ms: string;
  renewed_at_ms: string;
  expired: boolean;
  seconds_since_renewal: string;
  /** lease_until - now(): negative once expired. */
  expires_in_s: string;
  /** lease_until - renewed_at: the TTL the owner asked for at its last renewal. */
  granted_ttl_s: string;
}

/**
 * Every lease row (publisher, maintenance, consumer:<group>), with expiry and
 * renewal ages on the database clock.
 * Result: one row per (stream_name, role).
 */
export async function selectLeases(sql: Sql): Promise<LeaseRow[]> {
  return sql<LeaseRow[]>`
    SELECT stream_name, role, owner_id, fencing_token::text,
           (extract(epoch FROM lease_until) * 1000)::bigint::text AS lease_until_ms,
           (extract(epoch FROM renewed_at) * 1000)::bigint::text AS renewed_at_ms,
           lease_until < now() AS expired,
           extract(epoch FROM now() - renewed_at)::text AS seconds_since_renewal,
           extract(epoch FROM lease_until - now())::text AS expires_in_s,
           extract(epoch FROM lease_until - renewed_at)::text AS granted_ttl_s
    FROM events.stream_lease
    ORDER BY stream_name, role`;
}

export interface DeadLetterCountRow {
  group_name: string;
  stream_name: string;
  event_type: string | null;
  count: string;
  oldest_dead_lettered_ms: string;
}

/** Dead letters still `dead` (not replayed or discarded), per group, stream and type. */
export async function selectDeadLetterCounts(sql: Sql): Promise<DeadLetterCountRow[]> {
  return sql<DeadLetterCountRow[]>`
    SELECT group_name, stream_name, event_type, count(*)::text AS count,
           (extract(epoch FROM min(dead_lettered_at)) * 1000)::bigint::text AS oldest_dead_lettered_ms
    FROM events.dead_letter
    WHERE status = 'dead'
    GROUP BY group_name, stream_name, event_type
    ORDER BY group_name, stream_name, event_type`;
}

export interface ParkingSummaryRow {
  group_name: string;
  stream_name: string;
  keys: number;
  halted: number;
  parked_events: number;
  /** now() - the earliest next_attempt_at of a retrying key: negative while none is due yet; null when every key is halted. */
  most_overdue_s: number | null;
}

/**
 * Parked keys per group and partition stream, counted in full (the status
 * lists at most 50 keys), with how overdue the earliest retry is.
 * Params: stream (optional: a logical stream, all its partitions). Call only
 * when events.parked_key exists (an older schema has no parking).
 * Cost: one pass over parked_key and, per partition, a count on parked_event's
 * (group, stream, key) index; both tables hold only what is parked now.
 */
export async function selectParkingSummaries(sql: Sql, stream?: string): Promise<ParkingSummaryRow[]> {
  return sql<ParkingSummaryRow[]>`
    SELECT k.group_name, k.stream_name, count(*)::int AS keys, count(*) FILTER (WHERE k.halted_at IS NOT NULL)::int AS halted,
           (SELECT count(*)::int FROM events.parked_event e WHERE e.group_name = k.group_name AND e.stream_name = k.stream_name) AS parked_events,
           extract(epoch FROM now() - min(k.next_attempt_at) FILTER (WHERE k.halted_at IS NULL))::float8 AS most_overdue_s
    FROM events.parked_key k
    WHERE ${stream === undefined ? sql`true` : sql`(k.stream_name = ${stream} OR k.stream_name LIKE ${`${stream}:p%`})`}
    GROUP BY k.group_name, k.stream_name
    ORDER BY k.group_name, k.stream_name`;
}

export interface RedisPositionRow {
  redis_key: string;
  last_entry_id: string | null;
  fault: string | null;
  fault_since_ms: string | null;
}

/**
 * What the publisher recorded per Redis partition stream: its last entry,
 * and the Redis error it fails with now. Empty before the migration that
 * added the table (an older schema still gets the rest of the status).
 */
export async function selectRedisPositions(sql: Sql): Promise<RedisPositionRow[]> {
  const [table] = await sql<{ present: boolean }[]>`SELECT to_regclass('events.redis_stream_position') IS NOT NULL AS present`;
  if (!table?.present) return [];
  return sql<RedisPositionRow[]>`
    SELECT redis_key, last_entry_id, fault, (extract(epoch FROM fault_since) * 1000)::bigint::text AS fault_since_ms
    FROM events.redis_stream_position`;
}

/** True when the `events` tables exist: false means a wrong DATABASE_URL or no migrations. */
export async function eventsSchemaExists(sql: Sql): Promise<boolean> {
  const [row] = await sql<{ present: boolean }[]>`SELECT to_regclass('events.outbox_event') IS NOT NULL AS present`;
  return row?.present ?? false;
}

/** The database clock, ISO-8601, so every age in a report has one origin. */
export async function selectDatabaseNow(sql: Sql): Promise<{ now: string; database: string }> {
  const [row] = await sql<{ now_ms: string; database: string }[]>`
    SELECT (extract(epoch FROM now()) * 1000)::bigint::text AS now_ms, current_database() AS database`;
  return { now: new Date(Number(row!.now_ms)).toISOString(), database: row!.database };
}
