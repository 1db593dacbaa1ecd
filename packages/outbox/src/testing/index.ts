/**
 * Test kit (`@petcover/outbox/testing`). Each test file gets its own database,
 * cloned from a migrated template, and its own random stream names / Redis key
 * prefix, so files run in parallel and after a previous run left data behind.
 */
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { createRedisClient, DEFAULT_DATABASE_URL, DEFAULT_REDIS_URL, readRedisConnection, type RedisClient, type RedisConnection } from '@petcover/service-kit';
import postgres from 'postgres';
import { connectDatabase, withDatabaseName, type DatabaseHandle } from '../db';
import { outboxMigrations, runMigrations, type MigrationSet } from '../migrations';
import { deleteKeysWithPrefix } from '../publisher/redis-scripts';

export { APP_READY_TIMEOUT_MS, waitFor, waitForReady } from './wait';
export { BUILT_APP_MAINS, killSpawnedApps, requireBuiltFiles, spawnBuiltApp } from './built-apps';
export type { BuiltAppProcess } from './built-apps';
export { appendRawEntry, appendTestEvents, testStreamEvent } from './stream-events';
/** Removes what a test wrote under its uniqueRedisPrefix(), publisher meta/dedupe keys included. */
export { deleteKeysWithPrefix };

/**
 * Registers `ownerId` in events.relay_node as a live node whose session is
 * one of this pool's connections (alive while the pool is open), so leases a
 * test writes by hand are not reported as `lease_owner_dead`.
 */
export async function registerTestNode(sql: postgres.Sql, ownerId: string, role = 'publisher'): Promise<void> {
  await sql`
    INSERT INTO events.relay_node (owner_id, role, host, pid, version, heartbeat_ttl_ms, backend_pid, backend_started_at)
    SELECT ${ownerId}, ${role}, 'test-host', ${process.pid}, 'test', 3600000, pg_backend_pid(),
           (SELECT backend_start FROM pg_stat_activity WHERE pid = pg_backend_pid())
    ON CONFLICT (owner_id) DO UPDATE SET heartbeat_at = now()`;
}

/** Where tests find Postgres: TEST_DATABASE_URL, else DATABASE_URL, else the default. */
export function testDatabaseBaseUrl(): string {
  return process.env.TEST_DATABASE_URL || process.env.DATABASE_URL || DEFAULT_DATABASE_URL;
}

export function testRedisUrl(): string {
  return process.env.TEST_REDIS_URL || process.env.REDIS_URL || DEFAULT_REDIS_URL;
}

/** A short random lowercase suffix, e.g. for names of streams, groups, databases. */
export function randomSuffix(bytes = 4): string {
  return randomBytes(bytes).toString('hex');
}

/** A unique `stream:<context>:<name>` for one test. */
export function uniqueStreamName(name = 'events'): string {
  return `stream:t${randomSuffix()}:${name}`;
}

export function uniqueGroupName(name = 'group'): string {
  return `${name}-${randomSuffix()}`;
}

/** A unique Redis key prefix; pass it as `keyPrefix` to publisher and consumer. */
/**
 * A test file's Redis key prefixes: `next()` hands out a fresh one and
 * remembers it; `deleteAll(redis)` (in afterAll) removes every key written
 * under them, so runs leave Redis clean.
 */
export function trackedRedisPrefixes(): { next: () => string; deleteAll: (redis: RedisClient) => Promise<void> } {
  const used: string[] = [];
  return {
    next: () => {
      const prefix = uniqueRedisPrefix();
      used.push(prefix);
      return prefix;
    },
    deleteAll: async (redis) => {
      for (const prefix of used.splice(0)) await deleteKeysWithPrefix(redis, prefix);
    },
  };
}

export function uniqueRedisPrefix(): string {
  return `test:${randomSuffix()}:`;
}

/**
 * Prefix of every database a test creates: TEST_DATABASE_PREFIX, default
 * `petcover`, so several checkouts or CI jobs can share one Postgres server
 * and each clean up only its own (`DROP DATABASE` of `<prefix>_%`).
 * Lower-case letters, digits and `_`, at most 30 characters (names stay
 * under Postgres's 63-byte limit and need no quoting).
 */
export function testDatabasePrefix(): string {
  const prefix = process.env.TEST_DATABASE_PREFIX || 'petcover';
  if (!/^[a-z_][a-z0-9_]{0,29}$/.test(prefix)) {
    throw new Error(`TEST_DATABASE_PREFIX must be lower-case letters, digits and _ (at most 30, not starting with a digit); got ${JSON.stringify(prefix)}`);
  }
  return prefix;
}

/** A new, unique database name for a test: `<prefix>_<kind>_<time>_<random>`. */
export function testDatabaseName(kind: string): string {
  return `${testDatabasePrefix()}_${kind}_${Date.now().toString(36)}_${randomSuffix()}`;
}

export interface TestDatabase extends DatabaseHandle {
  url: string;
  name: string;
  /** Closes the pool and drops the database. */
  drop(): Promise<void>;
}

function templateName(sets: readonly MigrationSet[]): string {
  const hash = createHash('sha256');
  for (const set of sets) {
    hash.update(set.name);
    for (const file of listFiles(set.folder)) hash.update(file).update(fs.readFileSync(file));
  }
  return `${testDatabasePrefix()}_tpl_${hash.digest('hex').slice(0, 16)}`;
}

function listFiles(dir: string): string[] {
  return fs
    .readdirSync(dir, { withFileTypes: true })
    .flatMap((e) => (e.isDirectory() ? listFiles(path.join(dir, e.name)) : [path.join(dir, e.name)]))
    .sort();
}

const TEMPLATE_LOCK_KEY = 7_311_874_022;

/**
 * A fresh database with every migration of `sets` applied (default: the
 * outbox's). The migrated template is built once per distinct set of
 * migration files and reused by later files and runs.
 */
export async function createTestDatabase(options: { migrations?: readonly MigrationSet[]; poolSize?: number } = {}): Promise<TestDatabase> {
  const sets = options.migrations ?? [outboxMigrations];
  const baseUrl = testDatabaseBaseUrl();
  const admin = postgres(withDatabaseName(baseUrl, 'postgres'), { max: 1, onnotice: () => undefined });
  const template = templateName(sets);
  const name = testDatabaseName('test');
  try {
    await admin`SELECT pg_advisory_lock(${TEMPLATE_LOCK_KEY})`;
    try {
      const [exists] = await admin`SELECT 1 FROM pg_database WHERE datname = ${template} AND datistemplate`;
      if (!exists) {
        await admin.unsafe(`DROP DATABASE IF EXISTS "${template}" WITH (FORCE)`);
        await admin.unsafe(`CREATE DATABASE "${template}"`);
        await runMigrations(withDatabaseName(baseUrl, template), sets);
        await admin.unsafe(`ALTER DATABASE "${template}" WITH IS_TEMPLATE true ALLOW_CONNECTIONS false`);
      }
      await admin.unsafe(`CREATE DATABASE "${name}" TEMPLATE "${template}"`);
    } finally {
      await admin`SELECT pg_advisory_unlock(${TEMPLATE_LOCK_KEY})`;
    }
  } finally {
    await admin.end({ timeout: 5 });
  }
  const url = withDatabaseName(baseUrl, name);
  const handle = connectDatabase(url, { max: options.poolSize ?? 5, applicationName: 'petcover-test' });
  return {
    ...handle,
    url,
    name,
    async drop() {
      await handle.close();
      await dropTestDatabase(url);
    },
  };
}

export async function dropTestDatabase(url: string): Promise<void> {
  const name = new URL(url).pathname.slice(1);
  const admin = postgres(withDatabaseName(url, 'postgres'), { max: 1, onnotice: () => undefined });
  try {
    await admin.unsafe(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
  } finally {
    await admin.end({ timeout: 5 });
  }
}

/**
 * Where tests find Redis: testRedisUrl(), a cluster seed when REDIS_CLUSTER=1
 * (more seeds in REDIS_CLUSTER_SEEDS), as the apps read it.
 */
export function testRedisConnection(): RedisConnection {
  return readRedisConnection({ ...process.env, REDIS_URL: testRedisUrl() });
}

/** A Redis client for tests (default: testRedisConnection()), made by the apps' client factory. */
export function createTestRedis(connection: RedisConnection | string = testRedisConnection()): RedisClient {
  const target = typeof connection === 'string' ? { url: connection, cluster: false } : connection;
  return createRedisClient(target, { maxRetriesPerRequest: 1 });
}

export { freePort, startDedicatedPostgres, startDedicatedRedis } from './servers';
export type { DedicatedPostgres, DedicatedRedis } from './servers';
export { startRedisCluster } from './redis-cluster';
export type { ClusterNodeInfo, DedicatedRedisCluster, RedisClusterOptions } from './redis-cluster';
