/**
 * A fresh database (`petcover_bench_<random>`, outbox migrations + the bench
 * tables) and a fresh Redis key space for one run, removed afterwards.
 */
import { randomBytes } from 'node:crypto';
import os from 'node:os';
import { createRedisClient, type RedisClient, type RedisConnection } from '@petcover/service-kit';
import postgres from 'postgres';
import { PRODUCER_SEQUENCE } from './producer-scripts/producer-sequence';
import { connectDatabase, deleteKeysWithPrefix, outboxMigrations, runMigrations, withDatabaseName, type DatabaseHandle } from '@petcover/outbox';

export interface BenchEnvironment {
  /** Random id of this run; names the database and the Redis key space. */
  runId: string;
  databaseUrl: string;
  /** Where Redis is (REDIS_URL, REDIS_CLUSTER, REDIS_CLUSTER_SEEDS). */
  redisConnection: RedisConnection;
  db: DatabaseHandle;
  redis: RedisClient;
  /** A Redis key prefix of its own for one scenario, under the run's key space. */
  redisPrefix(scenario: string): string;
  /**
   * Empties the outbox, leases, inbox and bench tables, and deletes the run's
   * Redis keys, so the next scenario starts from the same state. Call only
   * while no publisher or consumer runs.
   */
  reset(): Promise<void>;
  /** Drops the database and every Redis key of the run. Idempotent. */
  destroy(): Promise<void>;
}

/**
 * Tables of the benchmark itself. `domain_row` is what a producer writes next
 * to its event; `handled` what a handler writes in its transaction. Both
 * record `clock_timestamp()`, so latency is measured on the database clock.
 * `outbox_shape` has the columns and indexes of events.outbox_event, for the
 * machine-limit INSERT measurements. The sequence numbers the pgbench
 * producers' transactions (producer-scripts/producer-sequence.ts).
 */
const BENCH_SCHEMA_SQL = `
CREATE SCHEMA bench;
CREATE TABLE bench.domain_row (
  seq bigint PRIMARY KEY,
  scheduled_at timestamptz,
  written_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE TABLE bench.handled (
  seq bigint NOT NULL,
  handled_at timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE TABLE bench.outbox_shape (LIKE events.outbox_event INCLUDING DEFAULTS INCLUDING INDEXES INCLUDING CONSTRAINTS);
CREATE SEQUENCE ${PRODUCER_SEQUENCE};
`;

/**
 * libpq and postgres.js default the user to the OS user; node-postgres (the
 * peers' driver) needs it spelled out. Same user, written in the URL.
 */
export function withExplicitUser(url: string): string {
  const parsed = new URL(url);
  if (!parsed.username) parsed.username = process.env.PGUSER || os.userInfo().username;
  return parsed.toString();
}

export async function createBenchEnvironment(baseDatabaseUrl: string, redisConnection: RedisConnection): Promise<BenchEnvironment> {
  const runId = randomBytes(4).toString('hex');
  const databaseName = `petcover_bench_${runId}`;
  const admin = postgres(withDatabaseName(baseDatabaseUrl, 'postgres'), { max: 1, onnotice: () => undefined });
  try {
    await admin.unsafe(`CREATE DATABASE "${databaseName}"`);
  } finally {
    await admin.end({ timeout: 5 });
  }
  const databaseUrl = withExplicitUser(withDatabaseName(baseDatabaseUrl, databaseName));
  await runMigrations(databaseUrl, [outboxMigrations]);
  const db = connectDatabase(databaseUrl, { max: 4, applicationName: 'petcover-bench' });
  await db.sql.unsafe(BENCH_SCHEMA_SQL);
  const redis = createRedisClient(redisConnection, { maxRetriesPerRequest: 3 });
  const keySpace = `bench:${runId}:`;

  // Streams and the publisher's `{stream}:meta|dedupe` keys alike.
  const deleteRedisKeys = () => deleteKeysWithPrefix(redis, keySpace);

  let destroyed: Promise<void> | undefined;
  return {
    runId,
    databaseUrl,
    redisConnection,
    db,
    redis,
    redisPrefix: (scenario) => `${keySpace}${scenario}:`,
    async reset() {
      await db.sql.unsafe(`
        TRUNCATE events.outbox_event, events.stream_lease, events.processed_event, events.dead_letter,
                 bench.domain_row, bench.handled, bench.outbox_shape;
        DROP SCHEMA IF EXISTS graphile_worker CASCADE;
        DROP SCHEMA IF EXISTS pgboss CASCADE;
        DROP SCHEMA IF EXISTS bullmq CASCADE;
        ALTER SEQUENCE ${PRODUCER_SEQUENCE} RESTART;`);
      await deleteRedisKeys();
      // Dead tuples of the previous scenario would otherwise slow this one.
      await db.sql.unsafe('VACUUM ANALYZE');
    },
    destroy() {
      destroyed ??= (async () => {
        const failures: unknown[] = [];
        await deleteRedisKeys().catch((e) => failures.push(e));
        redis.disconnect();
        await db.close().catch((e) => failures.push(e));
        const drop = postgres(withDatabaseName(baseDatabaseUrl, 'postgres'), { max: 1, onnotice: () => undefined });
        await drop.unsafe(`DROP DATABASE IF EXISTS "${databaseName}" WITH (FORCE)`).catch((e) => failures.push(e));
        await drop.end({ timeout: 5 });
        if (failures.length > 0) throw failures[0];
      })();
      return destroyed;
    },
  };
}
