/**
 * `events outbox replay` is exact (issue 12, item 2): by time or by outbox-id
 * range, every run re-delivers the rows it names, in outbox-id order, whether
 * or not they were appended before; when the replay lands after newer events
 * of the same key the command says so, and `events status` reports no false
 * problem afterwards. Bad ranges are usage errors that change nothing.
 */
import type { RedisClient } from '@petcover/service-kit';
import { Registry } from 'prom-client';
import { createPublisher, type Publisher } from '../src/index';
import { runEventsCli } from '../src/cli/events';
import { createTestDatabase, createTestRedis, testRedisUrl, trackedRedisPrefixes, uniqueStreamName, waitFor, type TestDatabase } from '../src/testing/index';
import { capturingLogger, fillOutbox, readStream, unpublishedCount } from './publisher-helpers';

let db: TestDatabase;
let redis: RedisClient;
let publisher: Publisher;
const prefixes = trackedRedisPrefixes();
const prefix = prefixes.next();

beforeAll(async () => {
  db = await createTestDatabase();
  redis = createTestRedis();
  publisher = createPublisher({ sql: db.sql, redis, logger: capturingLogger().logger, registry: new Registry(), keyPrefix: prefix, pollIntervalMs: 100, leaseTtlMs: 2_000 });
  void publisher.start();
});
afterAll(async () => {
  await publisher.stop();
  await prefixes.deleteAll(redis);
  await db.drop();
  redis.disconnect();
});

async function cli(argv: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const code = await runEventsCli(argv, {
    env: { DATABASE_URL: db.url, REDIS_URL: testRedisUrl(), REDIS_KEY_PREFIX: prefix },
    stdout: (t) => (out += t),
    stderr: (t) => (err += t),
  });
  return { code, out, err };
}

async function ids(stream: string): Promise<string[]> {
  const rows = await db.sql<{ id: string }[]>`SELECT id::text FROM events.outbox_event WHERE stream_name = ${stream} ORDER BY outbox_event.id`;
  return rows.map((r) => r.id);
}

test('an id-range replay re-delivers every time, in id order, says which keys it lands behind, and leaves status healthy', async () => {
  const stream = uniqueStreamName('replay');
  await fillOutbox(db, stream, 6, 3); // keys key-0, key-1, key-2, twice each
  await waitFor(async () => (await unpublishedCount(db, stream)) === 0, { description: 'published' });
  const all = await ids(stream);

  for (const round of [1, 2]) {
    const replay = await cli(['outbox', 'replay', '--stream', stream, '--from-id', all[0]!, '--to-id', all[1]!]);
    expect(replay.code).toBe(0);
    expect(replay.out).toContain(`2 row(s) of ${stream} (outbox ids ${all[0]}..${all[1]}) marked unpublished`);
    expect(replay.out).toContain('note: 2 partition key(s) already have newer events published (key-0, key-1)');
    await waitFor(async () => (await redis.xlen(`${prefix}${stream}`)) === 6 + 2 * round, { description: `replay ${round} appended` });
  }
  const entries = await readStream(redis, `${prefix}${stream}`);
  expect(entries.map((e) => String(e.outboxId))).toEqual([...all, all[0], all[1], all[0], all[1]]);
  await waitFor(async () => (await unpublishedCount(db, stream)) === 0, { description: 'replayed rows marked again' });
  const status = await cli(['status', '--stream', stream, '--json']);
  expect(JSON.parse(status.out).problems).toEqual([]);
  expect(status.code).toBe(0);

  // By time: everything published in the last hour, again once each, in id order.
  const byTime = await cli(['outbox', 'replay', '--stream', stream, '--since', '1h']);
  expect(byTime.out).toContain(`6 row(s) of ${stream}`);
  expect(byTime.out).not.toContain('note:'); // the newest row of every key is replayed too
  await waitFor(async () => (await redis.xlen(`${prefix}${stream}`)) === 16, { description: 'time-range replay appended' });
  expect((await readStream(redis, `${prefix}${stream}`)).slice(10).map((e) => String(e.outboxId))).toEqual(all);
});

test.each([
  [['--from-id', '5', '--since', '1h'], 'not both'],
  [['--from-id', '9', '--to-id', '3'], '--to-id must not be below --from-id'],
  [['--to-id', '3'], '--to-id needs --from-id'],
  [['--from-id', 'abc'], '--from-id must be an outbox id'],
])('outbox replay %j is a usage error (exit 2) that changes nothing', async (args, message) => {
  const stream = uniqueStreamName('badreplay');
  const result = await cli(['outbox', 'replay', '--stream', stream, ...args]);
  expect(result.code).toBe(2);
  expect(result.err).toContain(message);
});
