/**
 * Redis losing data, end to end with the real publisher and consumer on a
 * dedicated Redis server:
 * - Redis restarted without persistence (everything gone, including entries
 *   published but not yet read): the publisher notices and re-appends every
 *   row recorded after what Redis holds, consumers dedupe, and verify proves
 *   every event was handled exactly once and in order.
 * - One entry deleted behind the pipeline's back (no recovery can notice it):
 *   verify reports exactly that event missing — it can fail.
 */
import Redis from 'ioredis';
import pino from 'pino';
import { Registry } from 'prom-client';
import { z } from 'zod';
import {
  createConsumer,
  createHandlerRegistry,
  createPublisher,
  enqueueMany,
  partitionFor,
  partitionStreamName,
  redisStreamKey,
  type Consumer,
  type Publisher,
} from '../src';
import { ensureHandledLogTable, handledRecordOf, recordHandled, verifyPipeline } from '../src/verify';
import {
  createTestDatabase,
  startDedicatedRedis,
  uniqueGroupName,
  uniqueRedisPrefix,
  uniqueStreamName,
  waitFor,
  type DedicatedRedis,
  type TestDatabase,
} from '../src/testing';

const PARTITIONS = 2;
const logger = pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' });

let testDb: TestDatabase;
let server: DedicatedRedis;
const clients: Redis[] = [];
const running: Array<Consumer | Publisher> = [];

beforeAll(async () => {
  testDb = await createTestDatabase({ poolSize: 20 });
  await ensureHandledLogTable(testDb.sql);
  server = await startDedicatedRedis();
});
afterEach(async () => {
  await Promise.all(running.splice(0).map((c) => c.stop()));
});
afterAll(async () => {
  for (const client of clients) client.disconnect();
  await server.destroy();
  await testDb.drop();
});

/** A client per component, as separate processes would have. */
function redisClient(): Redis {
  const client = new Redis(server.url, { maxRetriesPerRequest: null });
  client.on('error', () => undefined); // reconnects by itself while the server restarts
  clients.push(client);
  return client;
}

interface Pipeline {
  stream: string;
  group: string;
  keyPrefix: string;
  partitions: Record<string, number>;
}

function newPipeline(): Pipeline {
  const stream = uniqueStreamName('loss');
  return { stream, group: uniqueGroupName(), keyPrefix: uniqueRedisPrefix(), partitions: { [stream]: PARTITIONS } };
}

function startPublisher(p: Pipeline): Publisher {
  const publisher = createPublisher({
    sql: testDb.sql,
    redis: redisClient(),
    logger,
    registry: new Registry(),
    partitions: p.partitions,
    keyPrefix: p.keyPrefix,
    pollIntervalMs: 200,
    leaseTtlMs: 2_000,
  });
  running.push(publisher);
  void publisher.start();
  return publisher;
}

function startConsumer(p: Pipeline): Consumer {
  const registry = createHandlerRegistry().register('Happened', {
    schema: z.object({ seq: z.number().int() }),
    async handle(event, ctx) {
      await recordHandled(ctx.tx, handledRecordOf(event, ctx, event.payload.seq));
    },
  });
  const consumer = createConsumer({
    db: testDb.db,
    sql: testDb.sql,
    redis: redisClient(),
    registry,
    logger,
    streams: [{ name: p.stream, partitions: PARTITIONS }],
    group: p.group,
    keyPrefix: p.keyPrefix,
    blockMs: 200,
    leaseTtlMs: 2_000,
    retryBaseDelayMs: 10,
    retryMaxDelayMs: 50,
  });
  running.push(consumer);
  consumer.start();
  return consumer;
}

let nextSeq = 0;
async function produce(p: Pipeline, count: number): Promise<void> {
  const events = Array.from({ length: count }, () => {
    nextSeq++;
    return { stream: p.stream, type: 'Happened', partitionKey: `key-${nextSeq % 7}`, payload: { seq: nextSeq } };
  });
  await testDb.db.transaction((tx) => enqueueMany(tx, events));
}

const verify = (p: Pipeline) => verifyPipeline(testDb.sql, null, { subscriptions: [{ group: p.group, stream: p.stream }] });

async function count(sqlText: 'unpublished' | 'handled', p: Pipeline): Promise<number> {
  const [row] =
    sqlText === 'unpublished'
      ? await testDb.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM events.outbox_event WHERE stream_name = ${p.stream} AND published_at IS NULL`
      : await testDb.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM chaos.handled WHERE group_name = ${p.group}`;
  return row?.n ?? -1;
}

async function streamLength(p: Pipeline): Promise<number> {
  const probe = redisClient();
  let total = 0;
  for (let partition = 0; partition < PARTITIONS; partition++) {
    total += await probe.xlen(redisStreamKey(partitionStreamName(p.stream, partition, PARTITIONS), p.keyPrefix));
  }
  return total;
}

describe('Redis data loss', () => {
  test('a Redis restart without persistence loses nothing: every event handled exactly once, in order', async () => {
    const p = newPipeline();
    startPublisher(p);
    const firstConsumer = startConsumer(p);
    await produce(p, 150);
    await waitFor(async () => (await count('handled', p)) === 150, { timeoutMs: 30_000, description: '150 events handled' });

    // Published but not yet read when Redis dies: only the publisher's recovery can bring these back.
    await firstConsumer.stop();
    await produce(p, 150);
    await waitFor(async () => (await count('unpublished', p)) === 0, { timeoutMs: 30_000, description: 'all 300 published' });
    expect(await streamLength(p)).toBeGreaterThanOrEqual(150);

    // A key nobody else writes tells that the restart really lost everything. (dbsize() would race
    // the publisher, which may already have re-appended by the time a fresh client connects.)
    const marker = `${p.keyPrefix}restart-marker`;
    await redisClient().set(marker, '1');
    await server.restart();
    expect(await redisClient().exists(marker)).toBe(0);

    // The stream stays idle: the publisher must notice the loss without a new append.
    startConsumer(p);
    await waitFor(async () => (await count('handled', p)) === 300, { timeoutMs: 45_000, description: 'the 150 lost entries handled after recovery' });
    await produce(p, 50);
    await waitFor(async () => (await verify(p)).missing === 0, { timeoutMs: 30_000, description: 'all 350 handled' });

    const report = await verify(p);
    expect(report).toMatchObject({ ok: true, events: 350, expected: 350, processed: 350, missing: 0, doubled: 0, outOfOrder: 0, handledLogChecked: true });
    // Exactly once: the re-published first 150 were deduplicated, not applied again.
    expect(await count('handled', p)).toBe(350);
  });

  test('control: with its record erased (recovery disabled) the publisher cannot know what Redis lost, and verify reports it missing', async () => {
    const p = newPipeline();
    startPublisher(p);
    await produce(p, 60);
    await waitFor(async () => (await count('unpublished', p)) === 0, { timeoutMs: 30_000, description: 'all 60 published' });
    await Promise.all(running.splice(0).map((c) => c.stop()));
    await server.restart();
    // What recovery reads: the entry ids recorded with the rows and the partitions' positions.
    await testDb.sql`UPDATE events.outbox_event SET redis_entry_id = NULL WHERE stream_name = ${p.stream}`;
    await testDb.sql`DELETE FROM events.redis_stream_position WHERE stream_name = ${p.stream}`;
    startPublisher(p);
    startConsumer(p);
    await produce(p, 10);
    await waitFor(async () => (await count('handled', p)) === 10, { timeoutMs: 30_000, description: 'the 10 new events handled' });
    expect(await verify(p)).toMatchObject({ ok: false, missing: 60, doubled: 0, outOfOrder: 0 });
  });

  test('an entry deleted from the stream before consumers read it is reported missing by verify', async () => {
    const p = newPipeline();
    startPublisher(p);
    await produce(p, 40);
    await waitFor(async () => (await count('unpublished', p)) === 0, { timeoutMs: 30_000, description: 'all 40 published' });

    const [victim] = await testDb.sql<{ event_id: string; partition_key: string; id: string }[]>`
      SELECT event_id, partition_key, id::text FROM events.outbox_event WHERE stream_name = ${p.stream} ORDER BY id OFFSET 17 LIMIT 1`;
    const key = redisStreamKey(partitionStreamName(p.stream, partitionFor(victim!.partition_key, PARTITIONS), PARTITIONS), p.keyPrefix);
    const probe = redisClient();
    const entry = (await probe.xrange(key, '-', '+')).find(([, fields]) => fields[fields.indexOf('event_id') + 1] === victim!.event_id);
    expect(entry).toBeDefined();
    expect(await probe.xdel(key, entry![0])).toBe(1);

    startConsumer(p);
    await waitFor(async () => (await count('handled', p)) === 39, { timeoutMs: 30_000, description: 'the 39 remaining entries handled' });
    const report = await verify(p);
    expect(report).toMatchObject({ ok: false, missing: 1, doubled: 0, outOfOrder: 0, processed: 39 });
    expect(report.examples.missing).toEqual([expect.objectContaining({ eventId: victim!.event_id, outboxId: victim!.id, published: true })]);
  });
});
