/**
 * Redis and Postgres go away mid-run (dedicated servers on random ports, so
 * the shared ones are untouched): /readyz answers 503, the publisher backs
 * off and logs once, and on their return it resumes with no loss, no
 * duplicate and ids in order.
 */
import Redis from 'ioredis';
import type { RedisClient } from '@petcover/service-kit';
import { connectDatabase, createDatabaseIfMissing, outboxMigrations, runMigrations, withDatabaseName, type DatabaseHandle } from '@petcover/outbox';
import {
  createTestDatabase,
  createTestRedis,
  trackedRedisPrefixes,
  startDedicatedPostgres,
  startDedicatedRedis,
  testRedisUrl,
 
  uniqueStreamName,
  waitFor,
  type DedicatedPostgres,
  type DedicatedRedis,
  type TestDatabase,
} from '@petcover/outbox/testing';
import { expectExactlyOnceInOrder, fillOutbox, readyStatus, spawnPublisher, unpublishedCount, type PublisherProcess } from './spawn-publisher';

const processes: PublisherProcess[] = [];
const prefixes = trackedRedisPrefixes();
const uniqueRedisPrefix = prefixes.next;
afterEach(async () => {
  for (const p of processes.splice(0)) {
    p.child.kill('SIGKILL');
    await p.exited;
  }
});

describe('Redis restarts (with AOF, as recommended) mid-run', () => {
  let db: TestDatabase;
  let server: DedicatedRedis;
  let redis: Redis;
  beforeAll(async () => {
    db = await createTestDatabase();
    server = await startDedicatedRedis({ appendOnly: true });
    redis = new Redis(server.url, { maxRetriesPerRequest: 1 });
  });
  afterAll(async () => {
    redis.disconnect();
    await server.destroy();
    await db.drop();
  });

  test('/readyz 503 while it is down, then 200; no loss, no duplicate, order intact', async () => {
    const prefix = uniqueRedisPrefix();
    const stream = uniqueStreamName('redis');
    const p = await spawnPublisher({ databaseUrl: db.url, redisUrl: server.url, keyPrefix: prefix, args: ['--poll-interval', '0.2', '--lease-ttl', '5', '--batch-size', '20'] });
    processes.push(p);
    await waitFor(async () => (await readyStatus(p.healthPort)) === 200, { description: 'ready' });
    // /readyz runs on connections of its own (issue 13): one Postgres session and one Redis client, apart from the work pool.
    const [own] = await db.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'events-publisher-readiness'`;
    expect(own?.n).toBe(1);
    const clients = String(await redis.client('LIST')).split('\n');
    expect(clients.filter((line) => / name=events-publisher-readiness /.test(line))).toHaveLength(1);
    await fillOutbox(db, stream, 1_000);
    await waitFor(async () => (await unpublishedCount(db, [stream])) < 900, { description: 'publishing under way' });

    await server.stop();
    await waitFor(async () => (await readyStatus(p.healthPort)) === 503, { description: '/readyz 503 while Redis is down' });
    const body = (await (await fetch(`http://127.0.0.1:${p.healthPort}/readyz`)).json()) as { checks: { redis: { ok: boolean }; db: { ok: boolean } } };
    expect(body.checks.redis.ok).toBe(false);
    expect(body.checks.db.ok).toBe(true);
    await fillOutbox(db, stream, 200);
    // ioredis reports an outage only once a reconnect attempt fails; a quick
    // publisher could otherwise see Redis back before ever failing to reach it.
    await waitFor(() => p.lines.some((l) => l.msg === 'redis unreachable; retrying in the background'), { description: 'outage logged' });
    await server.start();

    await waitFor(async () => (await readyStatus(p.healthPort)) === 200, { timeoutMs: 15_000, description: '/readyz 200 again' });
    await waitFor(async () => (await unpublishedCount(db, [stream])) === 0, { timeoutMs: 20_000, description: 'all rows published' });
    expect(await expectExactlyOnceInOrder(db, redis, stream, `${prefix}${stream}`)).toBe(1_200);
    // One line per state change, not one per retry.
    expect(p.lines.filter((l) => l.msg === 'redis unreachable; retrying in the background')).toHaveLength(1);
    expect(p.lines.filter((l) => l.msg === 'redis reachable again')).toHaveLength(1);
    expect(await p.stop()).toBe(0);
  });
});

describe('Postgres restarts mid-run', () => {
  let server: DedicatedPostgres;
  let db: DatabaseHandle;
  let url: string;
  let redis: RedisClient;
  beforeAll(async () => {
    server = await startDedicatedPostgres();
    url = withDatabaseName(server.url, 'petcover_publisher');
    await createDatabaseIfMissing(url);
    await runMigrations(url, [outboxMigrations]);
    db = connectDatabase(url, { max: 3 });
    redis = createTestRedis();
  });
  afterAll(async () => {
    await prefixes.deleteAll(redis);
    redis.disconnect();
    await db.close(1).catch(() => undefined);
    await server.destroy();
  });

  test('/readyz 503 while it is down, then 200; no loss, no duplicate, order intact', async () => {
    const prefix = uniqueRedisPrefix();
    const stream = uniqueStreamName('pg');
    await fillOutbox(db, stream, 1_500);
    const p = await spawnPublisher({ databaseUrl: url, redisUrl: testRedisUrl(), keyPrefix: prefix, args: ['--poll-interval', '0.2', '--lease-ttl', '5', '--batch-size', '20'] });
    processes.push(p);
    await waitFor(async () => (await unpublishedCount(db, [stream])) < 1_400, { description: 'publishing under way' });

    await server.stop();
    await waitFor(async () => (await readyStatus(p.healthPort)) === 503, { description: '/readyz 503 while Postgres is down' });
    await server.start();
    await waitFor(async () => (await readyStatus(p.healthPort)) === 200, { timeoutMs: 15_000, description: '/readyz 200 again' });
    await fillOutbox(db, stream, 100);

    await waitFor(async () => (await unpublishedCount(db, [stream])) === 0, { timeoutMs: 30_000, description: 'all rows published' });
    expect(await expectExactlyOnceInOrder(db, redis, stream, `${prefix}${stream}`)).toBe(1_600);
    expect(p.lines.filter((l) => String(l.msg).endsWith('recovered')).length).toBeGreaterThan(0);
    expect(await p.stop()).toBe(0);
  });
});
