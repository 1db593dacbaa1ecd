/**
 * What the consumer records in Redis about partitions it cannot move, for
 * `events status` to read (it cannot ask the consumer process) — issue 14:
 *
 * - stuck: an entry whose dead letter Postgres refused even in its minimal
 *   form. Key `<prefix>petcover:consumer-stuck:<group>`, a hash: field =
 *   partition stream, value = JSON {entryId, cause, ownerId, since}. Cleared
 *   as soon as the partition moves again.
 * - faulty: the group cannot be created on the partition's key (WRONGTYPE:
 *   something else wrote a non-stream value there). Key
 *   `<prefix>petcover:consumer-faults:<group>`, a hash: field = partition
 *   stream, value = JSON {redisKey, cause, message, ownerId, since}. Cleared
 *   once the group is created there.
 *
 * Each record lives under a key of its own (not the partition's hash slot):
 * the partition's key is the broken one.
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

export interface PartitionFault {
  partitionStream: string;
  redisKey: string;
  /** Short cause, as in the partition error metric (`wrong_key_type`...). */
  cause: string;
  /** The Redis error reply. */
  message: string;
  ownerId: string;
  /** ISO time of the first failure. */
  since: string;
}

const STUCK_KEY_PART = 'petcover:consumer-stuck:';
const FAULTS_KEY_PART = 'petcover:consumer-faults:';

export function stuckPartitionsKey(keyPrefix: string, group: string): string {
  return `${keyPrefix}${STUCK_KEY_PART}${group}`;
}

export function partitionFaultsKey(keyPrefix: string, group: string): string {
  return `${keyPrefix}${FAULTS_KEY_PART}${group}`;
}

async function writeRecord(redis: RedisClient, key: string, record: { partitionStream: string }): Promise<void> {
  const { partitionStream, ...value } = record;
  await redis.hset(key, partitionStream, JSON.stringify(value));
}

/** Every record of one hash; a record that is not JSON is returned through `unreadable`, so status still names it. */
async function readRecords<T extends { partitionStream: string }>(redis: RedisClient, key: string, unreadable: (partitionStream: string, text: string) => T): Promise<T[]> {
  const all = await redis.hgetall(key);
  return Object.entries(all).map(([partitionStream, json]) => {
    try {
      return { partitionStream, ...(JSON.parse(json) as Omit<T, 'partitionStream'>) } as T;
    } catch {
      return unreadable(partitionStream, `unreadable record: ${json.slice(0, 200)}`);
    }
  });
}

export async function reportStuckPartition(redis: RedisClient, key: string, stuck: StuckPartition): Promise<void> {
  await writeRecord(redis, key, stuck);
}

export async function clearStuckPartition(redis: RedisClient, key: string, partitionStream: string): Promise<void> {
  await redis.hdel(key, partitionStream);
}

/** Every stuck partition of `group` (read-only; for `events status`). */
export async function readStuckPartitions(redis: RedisClient, keyPrefix: string, group: string): Promise<StuckPartition[]> {
  return readRecords<StuckPartition>(redis, stuckPartitionsKey(keyPrefix, group), (partitionStream, cause) => ({ partitionStream, entryId: '?', cause, ownerId: '?', since: '' }));
}

export async function reportPartitionFault(redis: RedisClient, key: string, fault: PartitionFault): Promise<void> {
  await writeRecord(redis, key, fault);
}

export async function clearPartitionFault(redis: RedisClient, key: string, partitionStream: string): Promise<void> {
  await redis.hdel(key, partitionStream);
}

/** Every faulty partition of `group` (read-only; for `events status`). */
export async function readPartitionFaults(redis: RedisClient, keyPrefix: string, group: string): Promise<PartitionFault[]> {
  return readRecords<PartitionFault>(redis, partitionFaultsKey(keyPrefix, group), (partitionStream, message) => ({
    partitionStream,
    redisKey: '?',
    cause: 'error',
    message,
    ownerId: '?',
    since: '',
  }));
}
