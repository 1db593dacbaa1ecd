/**
 * Event lookup (`events lookup`, the console's Event lookup page, and
 * `GET /v1/admin/events/lookup`): find events by event id, outbox id, Redis
 * entry id or partition key, and follow each one's journey — outbox row, its
 * Redis entry, then per consumer group: waiting, delivered, handled, or dead.
 * Read-only. Works on what is still there: published rows are pruned after
 * the retention window and Redis trims acknowledged entries.
 */
import type { RedisClient } from '@petcover/service-kit';
import type { Sql } from '../db';
import { parsePartitionStreamName, partitionCount, partitionFor, partitionStreamName, redisStreamKey, type StreamPartitions } from '../streams';
import { scanStreamKeys } from './redis-inspect';

export type LookupQueryKind = 'event_id' | 'outbox_id' | 'redis_entry_id' | 'partition_key';

export interface GroupStep {
  group: string;
  /**
   * `dead`: dead-lettered (see deadLetter); `handled`: its effect committed
   * (processed_event); `delivered`: read by the group, not settled yet, or
   * parked behind its failing key (events.parked_event: not run yet);
   * `waiting`: in the stream, not read by the group yet.
   */
  state: 'waiting' | 'delivered' | 'handled' | 'dead';
  handledAt: string | null;
  deadLetter: { id: string; status: string; attempts: number; errorMessage: string; deadLetteredAt: string } | null;
}

export interface EventJourney {
  outboxId: string;
  eventId: string;
  stream: string;
  partitionKey: string;
  type: string;
  payload: unknown;
  headers: Record<string, string>;
  createdAt: string;
  publishedAt: string | null;
  /** Partition stream the event belongs in. */
  partitionStream: string;
  /** The Redis entry that carries it; null when not (or no longer) in Redis, or Redis is unreachable. */
  redisEntryId: string | null;
  groups: GroupStep[];
}

export interface LookupResult {
  query: string;
  /** How the query was read; null when it matched nothing. */
  matchedAs: LookupQueryKind | null;
  /** Oldest first. For a partition key: that entity's events in order (at most `limit`). */
  events: EventJourney[];
  /** Set when Redis could not be read: journeys then stop at the outbox. */
  redisError?: string;
}

export interface LookupOptions {
  sql: Sql;
  redis: RedisClient;
  keyPrefix?: string;
  partitions?: StreamPartitions;
  /** Events shown for a partition key; default 50. */
  limit?: number;
}

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;
const OUTBOX_ID = /^\d{1,18}$/;
const ENTRY_ID = /^\d{1,15}-\d{1,18}$/;
/** Entries searched around an event's publication time to find its Redis entry. */
const ENTRY_SEARCH_COUNT = 2_000;

interface OutboxDbRow {
  id: string;
  event_id: string;
  stream_name: string;
  partition_key: string;
  event_type: string;
  payload: unknown;
  headers: Record<string, string> | null;
  created_ms: string;
  published_ms: string | null;
}

async function selectOutbox(sql: Sql, where: 'event_id' | 'id' | 'partition_key', value: string, limit: number): Promise<OutboxDbRow[]> {
  const condition =
    where === 'event_id' ? sql`event_id = ${value}::uuid` : where === 'id' ? sql`id = ${value}::bigint` : sql`partition_key = ${value}`;
  return sql<OutboxDbRow[]>`
    SELECT id::text, event_id::text, stream_name, partition_key, event_type, payload, headers,
           (extract(epoch FROM created_at) * 1000)::bigint::text AS created_ms,
           (extract(epoch FROM published_at) * 1000)::bigint::text AS published_ms
    FROM events.outbox_event WHERE ${condition}
    ORDER BY id DESC LIMIT ${limit}`;
}

/** The outbox id an entry carries, when a stream of this prefix holds an entry with that id. */
async function outboxIdOfEntry(redis: RedisClient, keyPrefix: string, entryId: string): Promise<string | null> {
  for (const partitionStream of await scanStreamKeys(redis, keyPrefix)) {
    const [entry] = (await redis.xrange(redisStreamKey(partitionStream, keyPrefix), entryId, entryId)) as [string, string[]][];
    if (!entry) continue;
    const fields = entry[1];
    for (let i = 0; i + 1 < fields.length; i += 2) if (fields[i] === 'outbox_id') return fields[i + 1] as string;
  }
  return null;
}

/**
 * Looks `query` up as an event id (uuid), an outbox id (digits), a Redis
 * entry id (`<ms>-<seq>`) and, failing those, a partition key.
 */
export async function lookupEvents(options: LookupOptions, rawQuery: string): Promise<LookupResult> {
  const query = rawQuery.trim();
  const { sql } = options;
  const keyPrefix = options.keyPrefix ?? '';
  const limit = Math.min(Math.max(1, options.limit ?? 50), 500);
  const result: LookupResult = { query, matchedAs: null, events: [] };
  if (query === '' || query.length > 500) return result;

  let rows: OutboxDbRow[] = [];
  if (UUID.test(query)) {
    rows = await selectOutbox(sql, 'event_id', query, 1);
    if (rows.length > 0) result.matchedAs = 'event_id';
  }
  if (rows.length === 0 && OUTBOX_ID.test(query)) {
    rows = await selectOutbox(sql, 'id', query, 1);
    if (rows.length > 0) result.matchedAs = 'outbox_id';
  }
  if (rows.length === 0 && ENTRY_ID.test(query)) {
    try {
      const outboxId = await outboxIdOfEntry(options.redis, keyPrefix, query);
      if (outboxId) rows = await selectOutbox(sql, 'id', outboxId, 1);
      if (rows.length > 0) result.matchedAs = 'redis_entry_id';
    } catch (error) {
      result.redisError = (error as Error).message;
    }
  }
  if (rows.length === 0) {
    rows = await selectOutbox(sql, 'partition_key', query, limit);
    if (rows.length > 0) result.matchedAs = 'partition_key';
  }
  rows.reverse();

  const groupsByStream = new Map<string, Set<string>>();
  for (const row of rows) {
    const journey = await journeyOf(options, row, groupsByStream).catch((error: unknown) => {
      result.redisError ??= (error as Error).message;
      return journeyOf({ ...options, redis: null }, row, groupsByStream);
    });
    result.events.push(journey);
  }
  return result;
}

async function journeyOf(
  options: Omit<LookupOptions, 'redis'> & { redis: RedisClient | null },
  row: OutboxDbRow,
  groupsByStream: Map<string, Set<string>>,
): Promise<EventJourney> {
  const { sql, redis } = options;
  const keyPrefix = options.keyPrefix ?? '';
  let count = partitionCount(row.stream_name, options.partitions);
  if (redis && count === 1) {
    // Not configured here: infer the partition count from the Redis keys of the stream.
    for (const name of await scanStreamKeys(redis, keyPrefix)) {
      const parsed = parsePartitionStreamName(name);
      if (parsed?.stream === row.stream_name && parsed.partition !== null) count = Math.max(count, parsed.partition + 1);
    }
  }
  const partitionStream = partitionStreamName(row.stream_name, partitionFor(row.partition_key, count), count);
  const key = redisStreamKey(partitionStream, keyPrefix);

  let redisEntryId: string | null = null;
  const lastDelivered = new Map<string, string>();
  if (redis && row.published_ms !== null) {
    // Entries get ids from the Redis clock at append, right before published_at is set.
    const from = Math.max(0, Number(row.published_ms) - 60_000);
    const entries = (await redis.xrange(key, `${from}-0`, '+', 'COUNT', ENTRY_SEARCH_COUNT)) as [string, string[]][];
    for (const [id, fields] of entries) {
      for (let i = 0; i + 1 < fields.length; i += 2) {
        if (fields[i] === 'outbox_id' && fields[i + 1] === row.id) redisEntryId = id;
      }
      if (redisEntryId) break;
    }
  }
  if (redis) {
    if ((await redis.exists(key)) === 1) {
      for (const raw of (await redis.xinfo('GROUPS', key)) as unknown[][]) {
        const flat = raw.map(String);
        const name = flat[flat.indexOf('name') + 1] as string;
        lastDelivered.set(name, flat[flat.indexOf('last-delivered-id') + 1] as string);
      }
    }
  }

  const [handled, dead, parked] = await Promise.all([
    // A parked event's inbox row is written when it is parked: it is handled only once its parked row is gone.
    sql<{ group_name: string; processed_ms: string }[]>`
      SELECT p.group_name, (extract(epoch FROM p.processed_at) * 1000)::bigint::text AS processed_ms
      FROM events.processed_event p WHERE p.event_id = ${row.event_id}::uuid
        AND NOT EXISTS (SELECT 1 FROM events.parked_event pe WHERE pe.group_name = p.group_name AND pe.event_id = p.event_id)`,
    sql<{ id: string; group_name: string; status: string; attempts: number; error_message: string; dead_ms: string }[]>`
      SELECT id::text, group_name, status, attempts, error_message, (extract(epoch FROM dead_lettered_at) * 1000)::bigint::text AS dead_ms
      FROM events.dead_letter WHERE event_id = ${row.event_id}::uuid ORDER BY id DESC`,
    sql<{ group_name: string }[]>`SELECT group_name FROM events.parked_event WHERE event_id = ${row.event_id}::uuid`,
  ]);
  let known = groupsByStream.get(row.stream_name);
  if (!known) {
    const leased = await sql<{ role: string }[]>`
      SELECT DISTINCT role FROM events.stream_lease WHERE role LIKE 'consumer:%' AND (stream_name = ${row.stream_name} OR stream_name LIKE ${`${row.stream_name}:p%`})`;
    known = new Set(leased.map((l) => l.role.slice('consumer:'.length)));
    groupsByStream.set(row.stream_name, known);
  }
  const groups = new Set<string>([...known, ...lastDelivered.keys(), ...handled.map((h) => h.group_name), ...dead.map((d) => d.group_name), ...parked.map((p) => p.group_name)]);

  const steps: GroupStep[] = [...groups].sort().map((group) => {
    const letter = dead.find((d) => d.group_name === group);
    const processed = handled.find((h) => h.group_name === group);
    const iso = (ms: string) => new Date(Number(ms)).toISOString();
    if (letter && letter.status === 'dead') {
      return {
        group,
        state: 'dead',
        handledAt: null,
        deadLetter: { id: letter.id, status: letter.status, attempts: Number(letter.attempts), errorMessage: letter.error_message, deadLetteredAt: iso(letter.dead_ms) },
      };
    }
    const deadLetter = letter
      ? { id: letter.id, status: letter.status, attempts: Number(letter.attempts), errorMessage: letter.error_message, deadLetteredAt: iso(letter.dead_ms) }
      : null;
    // An inbox row written with the dead letter (same transaction) is not a success; one after it is the replay's.
    const handledAfterLetter = processed && (!letter || Number(processed.processed_ms) > Number(letter.dead_ms));
    if (processed && handledAfterLetter) return { group, state: 'handled', handledAt: iso(processed.processed_ms), deadLetter };
    const delivered = lastDelivered.get(group);
    const read = redisEntryId !== null && delivered !== undefined && compareEntryIds(redisEntryId, delivered) <= 0;
    const isParked = parked.some((p) => p.group_name === group);
    return { group, state: read || isParked ? 'delivered' : 'waiting', handledAt: null, deadLetter };
  });

  return {
    outboxId: row.id,
    eventId: row.event_id,
    stream: row.stream_name,
    partitionKey: row.partition_key,
    type: row.event_type,
    payload: row.payload,
    headers: row.headers ?? {},
    createdAt: new Date(Number(row.created_ms)).toISOString(),
    publishedAt: row.published_ms === null ? null : new Date(Number(row.published_ms)).toISOString(),
    partitionStream,
    redisEntryId,
    groups: steps,
  };
}

function compareEntryIds(a: string, b: string): number {
  const [am, as] = a.split('-').map(BigInt) as [bigint, bigint];
  const [bm, bs] = b.split('-').map(BigInt) as [bigint, bigint];
  return am === bm ? (as === bs ? 0 : as < bs ? -1 : 1) : am < bm ? -1 : 1;
}
