/**
 * A Postgres call of the drain that never answers (docs/notes/2026-11-30/pg-stranded.md).
 *
 * A frozen backend (SIGSTOP, a paused VM) keeps its socket open, so the
 * client waits without an error; postgres.js has also stranded queries across
 * a server restart. Unbounded, the drain waited for good while the lease
 * keeper, on other connections, kept renewing the stream's lease: the stream
 * was never published again, and nothing said so. Each Postgres step of the
 * drain is now bounded (postgresAnswerMs): past it the step fails, is
 * counted and logged, and the drain re-syncs and goes on, on other
 * connections.
 *
 * The fault is real: the drain's select is caught waiting on a table lock
 * (taken by the test), its backend is found in pg_stat_activity by the
 * publisher pool's application_name and the select's text, and SIGSTOPped;
 * then the lock is released. No test step sleeps: every wait is a deadline.
 */
import type { RedisClient } from '@petcover/service-kit';
import postgres from 'postgres';
import { Registry } from 'prom-client';
import { connectDatabase, type DatabaseHandle } from '../src/db';
import { createPublisher, type Publisher } from '../src/index';
import { createTestDatabase, createTestRedis, trackedRedisPrefixes, uniqueStreamName, waitFor, type TestDatabase } from '../src/testing/index';
import { capturingLogger, expectIdOrder, fillOutbox, readStream, unpublishedCount } from './publisher-helpers';

const APPLICATION_NAME = 'petcover-test-publisher-bounds';

let db: TestDatabase;
let redis: RedisClient;
let publisherDb: DatabaseHandle;
let publisher: Publisher | undefined;
let frozenPid: number | undefined;
const prefixes = trackedRedisPrefixes();

beforeAll(async () => {
  db = await createTestDatabase();
  redis = createTestRedis();
  publisherDb = connectDatabase(db.url, { max: 10, applicationName: APPLICATION_NAME });
});
afterAll(async () => {
  if (frozenPid !== undefined) process.kill(frozenPid, 'SIGCONT');
  await publisher?.stop();
  await publisherDb.close(1);
  await prefixes.deleteAll(redis);
  await db.drop();
  redis.disconnect();
});

test('the drain whose select never answers (its backend SIGSTOPped) gives it up after postgresAnswerMs and drains on other connections while the backend is still frozen; thawed, nothing is doubled or lost', async () => {
  const prefix = prefixes.next();
  const stream = uniqueStreamName('frozen-select');
  const key = `${prefix}${stream}`;
  await fillOutbox(db, stream, 20);
  const { logger, lines } = capturingLogger();
  const registry = new Registry();
  publisher = createPublisher({ sql: publisherDb.sql, redis, logger, registry, keyPrefix: prefix, pollIntervalMs: 100, leaseTtlMs: 3_000, postgresAnswerMs: 1_500 });
  void publisher.start();
  await waitFor(async () => (await unpublishedCount(db, stream)) === 0, { description: 'the first 20 events published' });

  // Hold the table so the drain's next select waits on the lock, then freeze the backend running it.
  const locker = postgres(db.url, { max: 1, onnotice: () => undefined });
  let unlock!: () => void;
  const unlocked = new Promise<void>((resolve) => (unlock = resolve));
  let locked = false;
  const holding = locker.begin(async (tx) => {
    await tx`LOCK TABLE events.outbox_event IN ACCESS EXCLUSIVE MODE`;
    locked = true;
    await unlocked;
  });
  try {
    await waitFor(() => locked, { description: 'the table lock' });
    frozenPid = await waitFor(
      async () => {
        const [row] = await db.sql<{ pid: number }[]>`
          SELECT pid FROM pg_stat_activity
          WHERE application_name = ${APPLICATION_NAME} AND wait_event_type = 'Lock' AND query LIKE '%running_bytes%'`;
        return row?.pid;
      },
      { description: "the drain's select waiting on the lock" },
    );
    process.kill(frozenPid, 'SIGSTOP');
  } finally {
    unlock();
    await holding;
    await locker.end({ timeout: 1 });
  }

  // The select stays unanswered for as long as its backend is frozen; the drain must go on without it.
  await fillOutbox(db, stream, 30);
  await waitFor(async () => (await unpublishedCount(db, stream)) === 0, { timeoutMs: 30_000, description: 'the 30 new events published while the backend is frozen' });
  const [frozen] = await db.sql<{ state: string }[]>`SELECT state FROM pg_stat_activity WHERE pid = ${frozenPid}`;
  expect(frozen?.state).toBe('active'); // still in the abandoned select
  const noAnswer = (await registry.getSingleMetric('petcover_publisher_postgres_no_answer_total')!.get()).values;
  expect(noAnswer).toEqual([expect.objectContaining({ labels: { stream, step: 'select' }, value: 1 })]);
  const said = lines.filter((l) => String((l.err as { message?: string } | undefined)?.message ?? '').includes(`Postgres select of stream ${stream}: no answer within 1500 ms`));
  expect(said).toHaveLength(1);
  expect(publisher.heldStreams()).toEqual([stream]);

  process.kill(frozenPid, 'SIGCONT');
  frozenPid = undefined;
  await fillOutbox(db, stream, 10);
  await waitFor(async () => (await unpublishedCount(db, stream)) === 0, { description: 'the last 10 events published after the thaw' });
  const entries = await readStream(redis, key);
  expectIdOrder(entries);
  expect(entries).toHaveLength(60);
  expect(new Set(entries.map((e) => e.eventId)).size).toBe(60);
}, 90_000);
