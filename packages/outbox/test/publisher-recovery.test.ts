/**
 * Redis data loss (issue 8, item 2): a dedicated redis-server is wiped
 * (FLUSHALL, or a restart without persistence) after events were published;
 * the publisher notices its meta keys are gone and re-appends the rows it
 * published within the recovery window, in id order. Consumers dedupe by
 * event_id, so this trades a bounded re-delivery for no loss.
 */
import Redis from 'ioredis';
import { Registry } from 'prom-client';
import { createPublisher, partitionStreamName, type Publisher } from '../src/index';
import { createTestDatabase, startDedicatedRedis, uniqueStreamName, waitFor, type DedicatedRedis, type TestDatabase } from '../src/testing/index';
import { capturingLogger, expectIdOrder, fillOutbox, readStream, unpublishedCount } from './publisher-helpers';

let db: TestDatabase;
let server: DedicatedRedis;
let redis: Redis;
const running: Publisher[] = [];

beforeAll(async () => {
  db = await createTestDatabase();
  server = await startDedicatedRedis();
  redis = new Redis(server.url, { maxRetriesPerRequest: 1 });
});
afterEach(async () => {
  await Promise.all(running.splice(0).map((p) => p.stop()));
});
afterAll(async () => {
  redis.disconnect();
  await server.destroy();
  await db.drop();
});

function startPublisher(partitions: Record<string, number> = {}) {
  const { logger, lines } = capturingLogger();
  const registry = new Registry();
  const publisher = createPublisher({ sql: db.sql, redis, logger, registry, partitions, pollIntervalMs: 200, leaseTtlMs: 3_000 });
  running.push(publisher);
  void publisher.start();
  return { publisher, lines };
}

async function outboxIds(stream: string): Promise<bigint[]> {
  const rows = await db.sql<{ id: string }[]>`SELECT id::text FROM events.outbox_event WHERE stream_name = ${stream} ORDER BY outbox_event.id`;
  return rows.map((r) => BigInt(r.id));
}

test('FLUSHALL while running: rows published within the window re-appear, once each, in id order; older ones do not', async () => {
  const plain = uniqueStreamName('plain');
  const split = uniqueStreamName('split');
  const { lines } = startPublisher({ [split]: 2 });
  await fillOutbox(db, plain, 100);
  await fillOutbox(db, split, 100);
  await waitFor(async () => (await unpublishedCount(db)) === 0, { description: 'first rows published' });
  // These 100 were published "an hour ago": outside the 15 min recovery window.
  await db.sql`UPDATE events.outbox_event SET published_at = now() - interval '1 hour' WHERE stream_name = ${plain}`;
  const old = await outboxIds(plain);
  await fillOutbox(db, plain, 50);
  await waitFor(async () => (await unpublishedCount(db)) === 0, { description: 'recent rows published' });

  await redis.flushall();
  const recent = (await outboxIds(plain)).filter((id) => !old.includes(id));
  await waitFor(async () => (await redis.xlen(plain)) === 50, { timeoutMs: 10_000, description: 'recent rows of the plain stream re-appended' });
  const replayed = await readStream(redis, plain);
  expectIdOrder(replayed);
  expect(replayed.map((e) => e.outboxId)).toEqual(recent);

  await waitFor(async () => (await redis.xlen(partitionStreamName(split, 0, 2))) + (await redis.xlen(partitionStreamName(split, 1, 2))) === 100, {
    description: 'both partitions of the split stream re-appended',
  });
  const splitIds: bigint[] = [];
  for (let p = 0; p < 2; p++) {
    const entries = await readStream(redis, partitionStreamName(split, p, 2));
    expectIdOrder(entries);
    splitIds.push(...entries.map((e) => e.outboxId));
  }
  expect(splitIds.sort((a, b) => (a < b ? -1 : 1))).toEqual(await outboxIds(split));
  expect(lines.some((l) => l.stream === plain && String(l.msg).startsWith('Redis had lost entries'))).toBe(true);

  // New events after the recovery go out once, after the re-appended ones.
  await fillOutbox(db, plain, 10);
  await waitFor(async () => (await redis.xlen(plain)) === 60, { description: 'new rows after recovery' });
  expectIdOrder(await readStream(redis, plain));
});

test('Redis restarted empty while no publisher ran: the next publisher re-appends the recent rows on taking the lease', async () => {
  const stream = uniqueStreamName('offline');
  const first = startPublisher();
  await fillOutbox(db, stream, 40);
  await waitFor(async () => (await unpublishedCount(db, stream)) === 0, { description: 'published' });
  await first.publisher.stop();

  await server.restart(); // no persistence: everything is gone
  await fillOutbox(db, stream, 5);
  startPublisher();
  await waitFor(async () => (await redis.xlen(stream).catch(() => 0)) === 45, { timeoutMs: 15_000, description: 'all 45 rows in Redis' });
  const entries = await readStream(redis, stream);
  expectIdOrder(entries);
  expect(entries.map((e) => e.outboxId)).toEqual(await outboxIds(stream));
});
