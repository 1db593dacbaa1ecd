/**
 * Read-only inspection of the Redis side for `events status`: partition
 * streams, their consumer groups, lag, pending entries and consumers.
 * Ages are computed on the Redis clock (`TIME`), since entry ids carry it.
 */
import { scanKeys, type RedisClient } from '@petcover/service-kit';
import { entryIdMs } from '../entry-id';
import { escapeRedisGlob, partitionStreamOfKey, redisStreamKeyPattern } from '../streams';
import { partitionFaultsKey, stuckPartitionsKey } from '../consumer/stuck-partitions';


/** One field of an entry's flat [field, value, ...] list. */
function entryField(fields: string[], name: string): string | null {
  for (let i = 0; i + 1 < fields.length; i += 2) if (fields[i] === name) return fields[i + 1] as string;
  return null;
}

/**
 * When an entry reached the stream, at the latest: the time in its id when
 * Redis generated it, bounded by the event's `created_at` (so an explicit,
 * non-time id scheme still yields a sensible age).
 */
function appendedAtMs(id: string, fields: string[]): number {
  const createdMs = Date.parse(entryField(fields, 'created_at') ?? '');
  const idMs = entryIdMs(id);
  return Number.isNaN(createdMs) ? idMs : Math.max(idMs, createdMs);
}

export async function redisNowMs(redis: RedisClient): Promise<number> {
  const [seconds, micros] = await redis.time();
  return Number(seconds) * 1000 + Math.floor(Number(micros) / 1000);
}

/**
 * Partition stream names (without the key prefix) of every Redis stream key
 * under `keyPrefix` that looks like an outbox stream, on every master of a
 * cluster. SCAN, never KEYS, so a busy production Redis is not blocked.
 */
export async function scanStreamKeys(redis: RedisClient, keyPrefix: string): Promise<string[]> {
  const found = new Set<string>();
  for await (const { keys } of scanKeys(redis, redisStreamKeyPattern(keyPrefix), { type: 'stream' })) {
    for (const key of keys) {
      const name = partitionStreamOfKey(key, keyPrefix);
      if (name) found.add(name);
    }
  }
  return [...found].sort();
}

/**
 * Groups that have a record of the consumer for `events status` (faulty or
 * stuck partitions) under `keyPrefix`, found by SCAN on every master.
 */
export async function scanConsumerRecordGroups(redis: RedisClient, keyPrefix: string): Promise<string[]> {
  const found = new Set<string>();
  for (const probe of [partitionFaultsKey(keyPrefix, '*'), stuckPartitionsKey(keyPrefix, '*')]) {
    const head = probe.slice(0, -1);
    for await (const { keys } of scanKeys(redis, `${escapeRedisGlob(head)}*`, { type: 'hash' })) {
      for (const key of keys) found.add(key.slice(head.length));
    }
  }
  return [...found].sort();
}

export interface RedisConsumerInfo {
  name: string;
  pending: number;
  /** Seconds since the consumer last read or acknowledged (XINFO CONSUMERS `idle`). */
  idleSeconds: number;
}

export interface RedisGroupInfo {
  name: string;
  /** Entries not yet delivered to the group; null when Redis cannot tell (see lagFromRange). */
  lag: number | null;
  pending: number;
  lastDeliveredId: string;
  oldestPendingIdleSeconds: number | null;
  /** Age of the oldest entry not yet delivered to the group, by its id's timestamp. */
  oldestUndeliveredAgeSeconds: number | null;
  consumers: RedisConsumerInfo[];
}

export interface RedisStreamInfo {
  key: string;
  exists: boolean;
  length: number;
  /** Newest id ever appended (survives trimming); null when the key is missing. */
  lastGeneratedId: string | null;
  /** `outbox_id` field of the newest entry still in the stream; null when empty. */
  lastOutboxId: string | null;
  groups: RedisGroupInfo[];
}

/** ioredis returns XINFO replies as flat [field, value, ...] arrays. */
function fieldsOf(reply: unknown): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  const flat = reply as unknown[];
  for (let i = 0; i + 1 < flat.length; i += 2) out[String(flat[i])] = flat[i + 1];
  return out;
}

const LAG_COUNT_CAP = 100_000;

/**
 * XINFO GROUPS answers a nil lag after entries were deleted or trimmed past
 * the group's position; count the undelivered entries instead (capped).
 */
async function lagFromRange(redis: RedisClient, key: string, lastDeliveredId: string): Promise<number> {
  const entries = (await redis.xrange(key, `(${lastDeliveredId}`, '+', 'COUNT', LAG_COUNT_CAP)) as unknown[];
  return entries.length;
}

/** Everything `events status` shows about one partition stream key. */
export async function inspectStream(redis: RedisClient, key: string, nowMs: number): Promise<RedisStreamInfo> {
  if ((await redis.exists(key)) === 0) {
    return { key, exists: false, length: 0, lastGeneratedId: null, lastOutboxId: null, groups: [] };
  }
  const info = fieldsOf(await redis.xinfo('STREAM', key));
  const lastGeneratedId = String(info['last-generated-id']);
  const length = Number(info.length);
  const [newest] = (await redis.xrevrange(key, '+', '-', 'COUNT', 1)) as [string, string[]][];
  const lastOutboxId = newest ? entryField(newest[1], 'outbox_id') : null;
  const groups: RedisGroupInfo[] = [];
  for (const rawGroup of (await redis.xinfo('GROUPS', key)) as unknown[]) {
    const group = fieldsOf(rawGroup);
    const name = String(group.name);
    const lastDeliveredId = String(group['last-delivered-id']);
    const pending = Number(group.pending);
    const lag = group.lag === null || group.lag === undefined ? await lagFromRange(redis, key, lastDeliveredId) : Number(group.lag);
    let oldestPendingIdleSeconds: number | null = null;
    if (pending > 0) {
      const [oldest] = (await redis.xpending(key, name, '-', '+', 1)) as [string, string, number, number][];
      if (oldest) oldestPendingIdleSeconds = Number(oldest[2]) / 1000;
    }
    let oldestUndeliveredAgeSeconds: number | null = null;
    if (lag > 0) {
      const [next] = (await redis.xrange(key, `(${lastDeliveredId}`, '+', 'COUNT', 1)) as [string, string[]][];
      if (next) oldestUndeliveredAgeSeconds = Math.max(0, (nowMs - appendedAtMs(next[0], next[1])) / 1000);
    }
    const consumers = ((await redis.xinfo('CONSUMERS', key, name)) as unknown[]).map((raw) => {
      const consumer = fieldsOf(raw);
      return { name: String(consumer.name), pending: Number(consumer.pending), idleSeconds: Number(consumer.idle) / 1000 };
    });
    groups.push({ name, lag, pending, lastDeliveredId, oldestPendingIdleSeconds, oldestUndeliveredAgeSeconds, consumers });
  }
  return {
    key,
    exists: true,
    length,
    lastGeneratedId,
    lastOutboxId,
    groups,
  };
}
