/**
 * Readiness checks every app runs behind `/readyz`: Postgres answers, Redis
 * answers PING, migrations are at head. Each throws a one-line reason.
 */
import type Redis from 'ioredis';
import type { Sql } from './db';
import { migrationStatus, type MigrationSet } from './migrations';

export function postgresCheck(sql: Sql): () => Promise<void> {
  return async () => {
    await sql`SELECT 1`;
  };
}

export function redisCheck(redis: Redis): () => Promise<void> {
  return async () => {
    if (redis.status !== 'ready') throw new Error(`redis connection is ${redis.status}`);
    const answer = await redis.ping();
    if (answer !== 'PONG') throw new Error(`PING answered ${answer}`);
  };
}

export function migrationsCheck(sql: Sql, sets: readonly MigrationSet[]): () => Promise<void> {
  return async () => {
    const behind = (await migrationStatus(sql, sets)).filter((s) => !s.atHead);
    if (behind.length > 0) {
      throw new Error(`migrations not at head: ${behind.map((s) => s.set).join(', ')} (run pnpm db:migrate)`);
    }
  };
}
