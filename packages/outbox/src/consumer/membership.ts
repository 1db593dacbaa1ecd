/**
 * Who is alive in a consumer group, so replicas can share partitions fairly.
 *
 * Why not count owners in events.stream_lease: a replica that holds no lease
 * yet is invisible there, so a replica holding every partition would never
 * give any up. Each replica instead heartbeats into a Redis sorted set
 * (member = owner id, score = expiry on the Redis clock).
 */
import type { RedisClient } from '@petcover/service-kit';

/**
 * KEYS[1]  sorted set of live members of one group
 * ARGV[1]  owner id of the caller
 * ARGV[2]  how long the heartbeat counts, in ms
 * Result   number of live members, the caller included.
 * Expiry is computed on the Redis clock (TIME), so replica clocks do not matter.
 */
const HEARTBEAT_SCRIPT = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl = tonumber(ARGV[2])
redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('PEXPIRE', KEYS[1], ttl * 2)
return redis.call('ZCARD', KEYS[1])
`;

export function membersKey(keyPrefix: string, group: string): string {
  return `${keyPrefix}petcover:consumer-members:${group}`;
}

/** Renews the caller's membership and returns how many members are alive. */
export async function heartbeatMembership(redis: RedisClient, key: string, ownerId: string, ttlMs: number): Promise<number> {
  return Number(await redis.eval(HEARTBEAT_SCRIPT, 1, key, ownerId, String(ttlMs)));
}

/** Leaves the group at once (graceful stop), so the others rebalance without waiting for expiry. */
export async function leaveMembership(redis: RedisClient, key: string, ownerId: string): Promise<void> {
  await redis.zrem(key, ownerId);
}
