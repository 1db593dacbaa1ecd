/**
 * `pg_ctl stop -m fast` while the publisher drains, 30 times in a row (issue
 * 12, item 4): every connection of the process gets `57P01 terminating
 * connection due to administrator command` at whatever await it is in, the
 * overlapped published_at UPDATE included, and half of the stops come while
 * the pool reconnects (postgres.js fetches array types on a fresh connection
 * from a socket handler and dropped that promise: its rejection ended the
 * process, see patches/postgres@3.4.7.patch). The process must never exit,
 * and once Postgres stays up every row is in Redis exactly once, in id order.
 */
import { connectDatabase, createDatabaseIfMissing, outboxMigrations, runMigrations, withDatabaseName, type DatabaseHandle } from '@petcover/outbox';
import {
  createTestRedis,
  startDedicatedPostgres,
  testRedisUrl,
  trackedRedisPrefixes,
  uniqueStreamName,
  waitFor,
  type DedicatedPostgres,
} from '@petcover/outbox/testing';
import type { RedisClient } from '@petcover/service-kit';
import { expectExactlyOnceInOrder, fillOutbox, spawnPublisher, unpublishedCount, type PublisherProcess } from './spawn-publisher';

const RESTARTS = 30;
const prefixes = trackedRedisPrefixes();
let server: DedicatedPostgres;
let db: DatabaseHandle;
let url: string;
let redis: RedisClient;
let publisher: PublisherProcess | undefined;

beforeAll(async () => {
  server = await startDedicatedPostgres();
  url = withDatabaseName(server.url, 'petcover_fast_stop');
  await createDatabaseIfMissing(url);
  await runMigrations(url, [outboxMigrations]);
  db = connectDatabase(url, { max: 2 });
  redis = createTestRedis();
});
afterAll(async () => {
  if (publisher) {
    publisher.child.kill('SIGKILL');
    await publisher.exited;
  }
  await prefixes.deleteAll(redis);
  redis.disconnect();
  await db.close(1).catch(() => undefined);
  await server.destroy();
});

test(`Postgres stopped with -m fast mid-drain ${RESTARTS} times: the publisher never exits and loses nothing`, async () => {
  const prefix = prefixes.next();
  const stream = uniqueStreamName('faststop');
  // Small batches: a drain is almost always between a select, an append and an overlapped UPDATE.
  publisher = await spawnPublisher({ databaseUrl: url, redisUrl: testRedisUrl(), keyPrefix: prefix, args: ['--poll-interval', '0.2', '--lease-ttl', '3', '--batch-size', '20'] });
  const p = publisher;
  let exitCode: number | null | undefined;
  void p.exited.then((code) => (exitCode = code));
  let total = 0;
  for (let round = 0; round < RESTARTS; round++) {
    await fillOutbox(db, stream, 100);
    total += 100;
    if (round % 2 === 0) {
      await waitFor(async () => (await publishedSince(stream)) > 0, { timeoutMs: 30_000, description: `round ${round}: publishing under way` });
    } else {
      // Right after a start, while the pool reconnects: postgres.js' type fetch on a fresh
      // connection used to reject unhandled when the server went away during it.
      await new Promise((resolve) => setTimeout(resolve, 50 + ((round * 37) % 250)));
    }
    await server.stop();
    await server.start();
    if (exitCode !== undefined) throw new Error(`publisher exited with ${exitCode} after restart ${round + 1}: ${tail(p)}`);
  }
  await waitFor(async () => (await unpublishedCount(db, [stream])) === 0, { timeoutMs: 120_000, description: `all rows published; last log lines:\n${tail(p)}` });
  expect(exitCode).toBeUndefined();
  expect(await expectExactlyOnceInOrder(db, redis, stream, `${prefix}${stream}`)).toBe(total);
  expect(p.lines.filter((l) => String(l.msg).includes('unhandled rejection'))).toEqual([]);
  expect(await p.stop()).toBe(0);
}, 600_000);

let lastPublished = 0;
/** Rows published since the previous call: the drain is moving. */
async function publishedSince(stream: string): Promise<number> {
  const [row] = await db.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM events.outbox_event WHERE stream_name = ${stream} AND published_at IS NOT NULL`;
  const delta = row!.n - lastPublished;
  if (delta > 0) lastPublished = row!.n;
  return delta;
}

function tail(p: PublisherProcess): string {
  return p.lines.slice(-8).map((l) => JSON.stringify(l)).join('\n');
}
