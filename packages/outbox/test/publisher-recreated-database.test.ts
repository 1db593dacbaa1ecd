/**
 * A re-created database on the same Redis: outbox ids restart at 1 and its
 * fencing tokens come from another lease table. Each database stamps its
 * identity on the stream; the first write from another database takes the
 * fence over, with a warning, and the entries the old database left are not
 * mistaken for rows of the new one (rows are matched by outbox id AND event
 * id) nor for Redis data loss.
 */
import type { RedisClient } from '@petcover/service-kit';
import { Registry } from 'prom-client';
import { createPublisher, type Publisher } from '../src';
import { databaseIdentity } from '../src/publisher/statements';
import { streamMetaKey } from '../src/streams';
import { createTestDatabase, createTestRedis, deleteKeysWithPrefix, uniqueRedisPrefix, uniqueStreamName, waitFor, type TestDatabase } from '../src/testing/index';
import { capturingLogger, expectIdOrder, fillOutbox, readStream, unpublishedCount } from './publisher-helpers';

let first: TestDatabase;
let second: TestDatabase;
let redis: RedisClient;
const prefix = uniqueRedisPrefix();

beforeAll(async () => {
  [first, second] = await Promise.all([createTestDatabase(), createTestDatabase()]);
  redis = createTestRedis();
});
afterAll(async () => {
  await deleteKeysWithPrefix(redis, prefix);
  await Promise.all([first.drop(), second.drop()]);
  redis.disconnect();
});

/** Runs one publisher on `db` until `stream` has no unpublished row, then stops it. */
async function publishAll(db: TestDatabase, stream: string) {
  const { logger, lines } = capturingLogger();
  const registry = new Registry();
  const publisher: Publisher = createPublisher({ sql: db.sql, redis, logger, registry, keyPrefix: prefix, pollIntervalMs: 200, leaseTtlMs: 3_000 });
  void publisher.start();
  try {
    await waitFor(async () => (await unpublishedCount(db, stream)) === 0, { timeoutMs: 15_000, description: 'every row published' });
  } finally {
    await publisher.stop();
  }
  const metric = async (name: string) => (await registry.getSingleMetric(name)?.get())?.values.find((v) => v.labels.stream === stream)?.value ?? 0;
  return {
    lines,
    resets: await metric('petcover_publisher_foreign_database_resets_total'),
    dataLoss: await metric('petcover_publisher_redis_data_loss_total'),
  };
}

async function eventIds(db: TestDatabase, stream: string, afterId = '0'): Promise<Array<{ id: bigint; eventId: string }>> {
  const rows = await db.sql<{ id: string; event_id: string }[]>`
    SELECT id::text, event_id::text FROM events.outbox_event WHERE stream_name = ${stream} AND id > ${afterId}::bigint ORDER BY outbox_event.id`;
  return rows.map((r) => ({ id: BigInt(r.id), eventId: r.event_id }));
}

test('databases on one server have different identities, each stable', async () => {
  const [a, b, again] = await Promise.all([databaseIdentity(first.sql), databaseIdentity(second.sql), databaseIdentity(first.sql)]);
  expect(a).toMatch(/^\d+\/\d+$/); // system_identifier/oid (the test role may read pg_control_system)
  expect(b).not.toBe(a);
  expect(again).toBe(a);
});

test('a second database with ids restarting at 1 publishes every event to the same stream once, in order; the first one again after it', async () => {
  const stream = uniqueStreamName('recreated');
  const key = `${prefix}${stream}`;
  await fillOutbox(first, stream, 30);
  const firstRun = await publishAll(first, stream);
  expect(firstRun.resets).toBe(0);
  const fromFirst = await eventIds(first, stream);
  expect((await readStream(redis, key)).map((e) => e.eventId)).toEqual(fromFirst.map((r) => r.eventId));

  // The old database's publisher left a far higher token (a clock ahead): it must not block the new database.
  await redis.hset(streamMetaKey(key), 'fence', String(Date.now() + 10 * 365 * 24 * 3_600_000));
  await fillOutbox(second, stream, 20);
  const fromSecond = await eventIds(second, stream);
  expect(fromSecond.some((r) => fromFirst.some((f) => f.id === r.id))).toBe(true); // the ids collide: the bug's premise
  const secondRun = await publishAll(second, stream);
  const afterSecond = await readStream(redis, key);
  expect(afterSecond.slice(fromFirst.length).map((e) => e.eventId)).toEqual(fromSecond.map((r) => r.eventId));
  expectIdOrder(afterSecond.slice(fromFirst.length));
  expect(secondRun.resets).toBe(1);
  expect(secondRun.dataLoss).toBe(0); // another database is not Redis data loss: nothing re-published
  expect(secondRun.lines.filter((l) => String(l.msg).startsWith(`Redis stream ${key} was last written from another database (`))).toHaveLength(1);
  expect(secondRun.lines.some((l) => String(l.msg).startsWith('Redis had lost entries'))).toBe(false);
  expect(secondRun.lines.some((l) => String(l.msg).startsWith('Redis held entries not yet marked published'))).toBe(false);

  // Back to the first database: its new rows go out once, after everything else.
  await fillOutbox(first, stream, 10);
  const newInFirst = await eventIds(first, stream, String(fromFirst[fromFirst.length - 1]!.id));
  const thirdRun = await publishAll(first, stream);
  const all = await readStream(redis, key);
  expect(all.map((e) => e.eventId)).toEqual([...fromFirst, ...fromSecond, ...newInFirst].map((r) => r.eventId));
  expect(thirdRun.resets).toBe(1);
  expect(await redis.hget(streamMetaKey(key), 'db')).toBe(await databaseIdentity(first.sql));
});
