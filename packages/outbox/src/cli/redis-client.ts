/**
 * The `events` command's Redis client: one attempt, no reconnect loop, no
 * queue, so a command against an unreachable Redis answers within seconds
 * instead of waiting (the commands report Redis as unreachable and go on).
 */
import { createRedisClient, REDIS_SOCKET_TIMEOUT_MS, type RedisClient, type RedisConnection } from '@petcover/service-kit';

/**
 * Not connected yet (lazy): call `connect()` and treat a rejection as "Redis
 * unreachable". Never prints its own errors: they surface through connect()
 * and the first command.
 */
export function connectCliRedis(connection: RedisConnection): RedisClient {
  const redis = createRedisClient(connection, {
    lazyConnect: true,
    connectTimeout: 2_000,
    maxRetriesPerRequest: 0,
    enableOfflineQueue: false,
    retryStrategy: () => null,
    socketTimeoutMs: REDIS_SOCKET_TIMEOUT_MS,
  });
  redis.on('error', () => undefined);
  return redis;
}
