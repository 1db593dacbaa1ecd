/**
 * Readiness on connections of its own (issue 13, item 5): with every
 * connection of an app's work pool stuck behind a lock and its work Redis
 * client stuck in a blocking command, checks on the work connections cannot
 * answer, while `connectReadiness` (what the api, events-publisher and
 * events-consumer run behind /readyz) still reports ready. Real Postgres and
 * Redis; the app processes' wiring is checked in their own process tests.
 */
import postgres from 'postgres';
import { runReadinessChecks } from '@petcover/service-kit';
import { connectReadiness, migrationsCheck, outboxMigrations, postgresCheck, redisCheck } from '../src';
import { createTestDatabase, createTestRedis, randomSuffix, testRedisConnection, waitFor, type TestDatabase } from '../src/testing';

const POOL_SIZE = 2;
let database: TestDatabase;

beforeAll(async () => {
  database = await createTestDatabase({ migrations: [outboxMigrations], poolSize: POOL_SIZE });
});
afterAll(async () => {
  await database?.drop();
});

test('readiness answers on its own connections while the work pool and the work Redis client are blocked', async () => {
  const blocker = postgres(database.url, { max: 1, onnotice: () => undefined });
  const monitor = postgres(database.url, { max: 1, onnotice: () => undefined });
  const workRedis = createTestRedis();
  const readiness = connectReadiness({ name: 'readiness-test', databaseUrl: database.url, redis: testRedisConnection(), migrations: [outboxMigrations] });
  const blockingKey = `readiness-test:${randomSuffix()}`;
  let releaseLock!: () => void;
  const lockReleased = new Promise<void>((resolve) => (releaseLock = resolve));
  try {
    // Work that holds every pooled connection: queries waiting on a table lock.
    let locked!: () => void;
    const lockTaken = new Promise<void>((resolve) => (locked = resolve));
    const lockHeld = blocker.begin(async (tx) => {
      await tx`LOCK TABLE events.outbox_event IN ACCESS EXCLUSIVE MODE`;
      locked();
      await lockReleased;
    });
    await lockTaken;
    const stuckWork = Array.from({ length: POOL_SIZE }, () => database.sql`SELECT count(*) FROM events.outbox_event`.execute());
    await waitFor(
      async () => {
        const [row] = await monitor`SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`;
        return row?.n === POOL_SIZE;
      },
      { timeoutMs: 30_000, intervalMs: 100, description: 'every pooled connection waiting on the lock' },
    );
    // And a work Redis client busy with a blocking command (its next commands queue behind it).
    const stuckRedis = workRedis.blpop(blockingKey, 0);

    const onWorkConnections = await runReadinessChecks({
      db: postgresCheck(database.sql),
      redis: redisCheck(workRedis),
      migrations: migrationsCheck(database.sql, [outboxMigrations]),
    });
    expect(onWorkConnections.status).toBe('fail');
    expect(onWorkConnections.checks.db).toMatchObject({ ok: false, detail: expect.stringContaining('no answer within') });
    expect(onWorkConnections.checks.redis).toMatchObject({ ok: false, detail: expect.stringContaining('no answer within') });

    // Each check is bounded to 1 s; on a loaded machine one may miss it once, so wait for a pass.
    const own = await waitFor(
      async () => {
        const report = await runReadinessChecks(readiness.checks);
        return report.status === 'ok' ? report : undefined;
      },
      { timeoutMs: 15_000, intervalMs: 200, description: 'readiness on its own connections ok while the work is blocked' },
    );
    expect(Object.keys(own.checks).sort()).toEqual(['db', 'migrations', 'redis']);
    // Still blocked: the report above did not come from the work connections.
    const [waiting] = await monitor`SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`;
    expect(waiting?.n).toBe(POOL_SIZE);
    const [mine] = await monitor`SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'readiness-test-readiness'`;
    expect(mine?.n).toBe(1);

    releaseLock();
    await lockHeld;
    await Promise.all(stuckWork);
    const unblock = createTestRedis();
    await unblock.lpush(blockingKey, 'done');
    unblock.disconnect();
    await stuckRedis;
  } finally {
    releaseLock();
    await readiness.close();
    await readiness.close();
    workRedis.disconnect();
    await blocker.end({ timeout: 1 });
    await monitor.end({ timeout: 1 });
  }
});
