/**
 * Partitions stuck on an entry whose dead letter Postgres refused even in
 * its minimal form (issue 14). The consumer records them in Redis, where
 * `events status` reads them (it cannot ask the consumer process), and
 * clears the record as soon as the partition moves again.
 *
 * Key: `<prefix>petcover:consumer-stuck:<group>`, a hash: field = partition
 * stream, value = JSON {entryId, cause, ownerId, since}.
 */
import type { RedisClient } from '@petcover/service-kit';

export interface StuckPartition {
  partitionStream: string;
  entryId: string;
  cause: string;
  ownerId: string;
  /** ISO time of the first report of this entry. */
  since: string;
}

export function stuckPartitionsKey(keyPrefix: string, group: string): string {
  return `${keyPrefix}petcover:consumer-stuck:${group}`;
}

export async function reportStuckPartition(redis: RedisClient, key: string, stuck: StuckPartition): Promise<void> {
  const { partitionStream, ...value } = stuck;
  await redis.hset(key, partitionStream, JSON.stringify(value));
}

export async function clearStuckPartition(redis: RedisClient, key: string, partitionStream: string): Promise<void> {
  await redis.hdel(key, partitionStream);
}

/** Every stuck partition of `group` (read-only; for `events status`). */
export async function readStuckPartitions(redis: RedisClient, keyPrefix: string, group: string): Promise<StuckPartition[]> {
  const all = await redis.hgetall(stuckPartitionsKey(keyPrefix, group));
  const result: StuckPartition[] = [];
  for (const [partitionStream, json] of Object.entries(all)) {
    try {
      result.push({ partitionStream, ...(JSON.parse(json) as Omit<StuckPartition, 'partitionStream'>) });
    } catch {
      result.push({ partitionStream, entryId: '?', cause: `unreadable record: ${json.slice(0, 200)}`, ownerId: '?', since: '' });
    }
  }
  return result;
}
