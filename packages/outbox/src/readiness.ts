/**
 * Readiness checks every app runs behind `/readyz`: Postgres answers, Redis
 * answers PING (a cluster: CLUSTER INFO says ok), migrations are at head.
 * Each throws a one-line reason. `connectReadiness` gives them connections
 * of their own.
 */
import { assertRedisReady, createRedisClient, type ReadinessCheck, type RedisClient, type RedisConnection } from '@petcover/service-kit';
import { connectDatabase, type Sql } from './db';
import { migrationStatus, type MigrationSet } from './migrations';

export function postgresCheck(sql: Sql): () => Promise<void> {
  return async () => {
    await sql`SELECT 1`;
  };
}

/** Redis answers PING; a cluster also reports cluster_state:ok (every slot served). */
export function redisCheck(redis: RedisClient): () => Promise<void> {
  return () => assertRedisReady(redis);
}

export function migrationsCheck(sql: Sql, sets: readonly MigrationSet[]): () => Promise<void> {
  return async () => {
    const behind = (await migrationStatus(sql, sets)).filter((s) => !s.atHead);
    if (behind.length > 0) {
      throw new Error(`migrations not at head: ${behind.map((s) => s.set).join(', ')} (run pnpm db:migrate)`);
    }
  };
}

export interface ReadinessConnections {
  /** `db`, `redis` and `migrations`, each on the connections below. */
  checks: { db: ReadinessCheck; redis: ReadinessCheck; migrations: ReadinessCheck };
  /** Closes the Postgres connection and the Redis client. Idempotent. */
  close(): Promise<void>;
}

/**
 * The readiness checks on connections of their own: one Postgres connection
 * (application_name `<name>-readiness`) and one Redis client (CLIENT SETNAME
 * `<name>-readiness`), apart from the app's work pool and Redis client. So a
 * pool that work has exhausted or blocked (long handlers, a lock, a storm of
 * requests) neither queues the probe nor makes a live process look dead,
 * and readiness still says what it should about Postgres and Redis
 * themselves. Redis commands fail at once while it is down (no offline
 * queue); the app's own client logs the outage, so this one stays quiet.
 */
export function connectReadiness(options: { name: string; databaseUrl: string; redis: RedisConnection; migrations: readonly MigrationSet[] }): ReadinessConnections {
  const connectionName = `${options.name}-readiness`;
  const database = connectDatabase(options.databaseUrl, { max: 1, applicationName: connectionName });
  const redis = createRedisClient(options.redis, { maxRetriesPerRequest: 1, enableOfflineQueue: false, connectionName });
  redis.on('error', () => undefined);
  let closing: Promise<void> | undefined;
  return {
    checks: { db: postgresCheck(database.sql), redis: redisCheck(redis), migrations: migrationsCheck(database.sql, options.migrations) },
    close() {
      closing ??= Promise.allSettled([database.close(1), Promise.resolve(redis.disconnect())]).then(() => undefined);
      return closing;
    },
  };
}
