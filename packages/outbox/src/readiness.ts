/**
 * Readiness checks every app runs behind `/readyz`: Postgres answers, Redis
 * answers PING (a cluster: CLUSTER INFO says ok), migrations are at head.
 * Each throws a one-line reason.
 */
import { assertRedisReady, type RedisClient } from '@petcover/service-kit';
import type { Sql } from './db';
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
