/**
 * The pipeline on a real local Redis Cluster (3 masters + 3 replicas):
 * 10,000 events over several streams and partitions exactly once and in
 * order; `events status` and readiness on a cluster; a master SIGKILLed
 * mid-run (its replica promoted) loses, doubles and reorders nothing.
 *
 * Publisher and consumer run in this process with cluster clients made by
 * the apps' factory; effects are recorded in the handled-order log and
 * checked with verifyPipeline, as the chaos run does.
 */
import { createRedisClient, scanKeys, type RedisClient } from '@petcover/service-kit';
import pino from 'pino';
import { Registry } from 'prom-client';
import { z } from 'zod';
import {
  createConsumer,
  createHandlerRegistry,
  createPublisher,
  enqueueMany,
  redisCheck,
  type EventsStatus,
  type HandledEvent,
  type HandlerContext,
  type OutboxEventInput,
} from '../src';
import { ensureHandledLogTable, handledRecordOf, recordHandled, verifyPipeline, type VerifyReport } from '../src/verify';
import { runEventsCli } from '../src/cli/events';
import {
  createTestDatabase,
  createTestRedis,
  deleteKeysWithPrefix,
  startRedisCluster,
  uniqueGroupName,
  uniqueRedisPrefix,
  uniqueStreamName,
  waitFor,
  type DedicatedRedisCluster,
  type TestDatabase,
} from '../src/testing';

// Generous: CI runs every package's tests at once on 2 cores; these bound a hang, not speed.
jest.setTimeout(480_000);

const logger = pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' });
let cluster: DedicatedRedisCluster;
let testDb: TestDatabase;
let redis: RedisClient;
/** Stops what a test started: publisher, consumer, then their Redis clients. */
const stops: Array<() => Promise<void>> = [];

beforeAll(async () => {
  [cluster, testDb] = await Promise.all([startRedisCluster(), createTestDatabase({ poolSize: 20 })]);
  redis = createTestRedis(cluster.connection);
  await ensureHandledLogTable(testDb.sql);
});
afterEach(async () => {
  await Promise.all(stops.splice(0).map((stop) => stop()));
});
afterAll(async () => {
  redis?.disconnect();
  await Promise.all([cluster?.destroy(), testDb?.drop()]);
});

const payloadSchema = z.object({ seq: z.number().int() });

interface Scenario {
  /** Before its first event: verify counts only this scenario's events. */
  since: Date;
  prefix: string;
  group: string;
  streams: Array<{ name: string; partitions: number }>;
}

function scenario(partitions: number[]): Scenario {
  return {
    since: new Date(Date.now() - 1_000),
    prefix: uniqueRedisPrefix(),
    group: uniqueGroupName('cluster'),
    streams: partitions.map((count, i) => ({ name: uniqueStreamName(`s${i}`), partitions: count })),
  };
}

/** `count` events spread round-robin over the streams, 25 partition keys each, `seq` rising per key. */
function events(s: Scenario, from: number, count: number): OutboxEventInput[] {
  return Array.from({ length: count }, (_, n) => {
    const i = from + n;
    const stream = s.streams[i % s.streams.length]!;
    return { stream: stream.name, type: 'ClusterChecked', partitionKey: `key-${Math.floor(i / s.streams.length) % 25}`, payload: { seq: i } };
  });
}

async function enqueue(s: Scenario, from: number, count: number): Promise<void> {
  for (let start = from; start < from + count; start += 1_000) {
    const batch = events(s, start, Math.min(1_000, from + count - start));
    await testDb.db.transaction((tx) => enqueueMany(tx, batch));
  }
}

/** Each run of events is one INSERT into the handled-order log, in the consumer's transaction. */
function registryFor(): ReturnType<typeof createHandlerRegistry> {
  const record = (event: HandledEvent<{ seq: number }>, ctx: HandlerContext) => handledRecordOf(event, ctx, event.payload.seq);
  return createHandlerRegistry().register('ClusterChecked', {
    schema: payloadSchema,
    handle: async (event, ctx) => recordHandled(ctx.tx, record(event, ctx)),
    handleBatch: async (batch, ctx) => recordHandled(ctx.tx, batch.map((event) => record(event, ctx))),
  });
}

/** A publisher and a consumer, each on its own cluster client (as in their processes). */
function startPipeline(s: Scenario): void {
  const partitions = Object.fromEntries(s.streams.map((st) => [st.name, st.partitions]));
  const publisherRedis = createRedisClient(cluster.connection, { maxRetriesPerRequest: 1 });
  const consumerRedis = createRedisClient(cluster.connection, { maxRetriesPerRequest: 3 });
  for (const client of [publisherRedis, consumerRedis]) client.on('error', () => undefined);
  const publisher = createPublisher({
    sql: testDb.sql,
    redis: publisherRedis,
    logger,
    registry: new Registry(),
    keyPrefix: s.prefix,
    partitions,
    batchSize: 500,
    pollIntervalMs: 200,
    leaseTtlMs: 5_000,
  });
  const consumer = createConsumer({
    db: testDb.db,
    sql: testDb.sql,
    redis: consumerRedis,
    registry: registryFor(),
    streams: s.streams,
    group: s.group,
    keyPrefix: s.prefix,
    concurrency: 8,
    batchSize: 200,
    blockMs: 200,
    leaseTtlMs: 5_000,
    logger,
  });
  stops.push(async () => {
    await Promise.all([publisher.stop(), consumer.stop()]);
    publisherRedis.disconnect();
    consumerRedis.disconnect();
  });
  void publisher.start();
  consumer.start();
}

async function verify(s: Scenario): Promise<VerifyReport> {
  return verifyPipeline(testDb.sql, null, { since: s.since, subscriptions: s.streams.map((st) => ({ group: s.group, stream: st.name })), exampleLimit: 5 });
}

async function waitDrained(s: Scenario, total: number, timeoutMs: number): Promise<VerifyReport> {
  return waitFor(
    async () => {
      const report = await verify(s);
      return report.events === total && report.unpublished === 0 && report.missing === 0 ? report : null;
    },
    { timeoutMs, intervalMs: 250, description: `${total} events published and handled` },
  );
}

test('10,000 events over 4 streams (2 with 4 partitions) are handled exactly once, in order per key, across the 3 masters', async () => {
  const s = scenario([4, 4, 1, 1]);
  await enqueue(s, 0, 10_000);
  startPipeline(s);

  const report = await waitDrained(s, 10_000, 300_000);
  expect({ events: report.events, missing: report.missing, doubled: report.doubled, outOfOrder: report.outOfOrder }).toEqual({
    events: 10_000,
    missing: 0,
    doubled: 0,
    outOfOrder: 0,
  });

  // The 10 partition streams really are spread over the masters.
  const keysPerMaster: number[] = [];
  for await (const { node, keys } of scanKeys(redis, `${s.prefix}stream:*`, { type: 'stream' })) {
    keysPerMaster[Number(node.options.port)] = (keysPerMaster[Number(node.options.port)] ?? 0) + keys.length;
  }
  expect(Object.keys(keysPerMaster).length).toBe(3);

  // events status on the cluster: every partition found (scanned on every master), nothing wrong.
  let stdout = '';
  const code = await runEventsCli(['status', '--json'], {
    env: { DATABASE_URL: testDb.url, ...cluster.env, REDIS_KEY_PREFIX: s.prefix },
    stdout: (text) => (stdout += text),
    stderr: () => undefined,
  });
  const status = JSON.parse(stdout) as EventsStatus;
  const mine = status.streams.filter((st) => s.streams.some((d) => d.name === st.stream));
  expect({ code, redis: status.redis.ok, problems: status.problems.filter((p) => mine.some((m) => m.stream === p.stream)) }).toEqual({
    code: expect.any(Number),
    redis: true,
    problems: [],
  });
  const byName = (a: { stream: string }, b: { stream: string }) => a.stream.localeCompare(b.stream);
  expect(
    mine
      .map((st) => ({ stream: st.stream, partitions: st.redis?.length, entries: st.redis?.reduce((n, p) => n + p.length, 0), publisherLeaseExpired: st.publisherLease?.expired }))
      .sort(byName),
  ).toEqual(s.streams.map((d) => ({ stream: d.name, partitions: d.partitions, entries: 2_500, publisherLeaseExpired: false })).sort(byName));
  for (const st of mine) expect(st.groups.find((g) => g.group === s.group)).toMatchObject({ lag: 0, pending: 0 });

  // Stopped first: a running consumer would re-create its groups (MKSTREAM) and membership key.
  await Promise.all(stops.splice(0).map((stop) => stop()));
  await deleteKeysWithPrefix(redis, s.prefix);
  const left: string[] = [];
  for await (const { keys } of scanKeys(redis, `*${s.prefix}*`)) left.push(...keys);
  expect(left).toEqual([]);
});

test('readiness: a cluster client is ready when cluster_state is ok; a single-node client pointed at a cluster node is not', async () => {
  await expect(redisCheck(redis)()).resolves.toBeUndefined();
  const single = createRedisClient({ url: cluster.url, cluster: false }, { maxRetriesPerRequest: 1 });
  try {
    await waitFor(() => single.status === 'ready', { description: 'single-node client connected' });
    await expect(redisCheck(single)()).rejects.toThrow('REDIS_URL is a Redis Cluster node: set REDIS_CLUSTER=1');
  } finally {
    single.disconnect();
  }
});

test('a master SIGKILLed mid-run: its replica is promoted and nothing is lost, doubled or reordered', async () => {
  const s = scenario([4, 1, 1]);
  const total = 4_000;
  await enqueue(s, 0, 1_000);
  startPipeline(s);

  // The producer keeps committing while the master dies and the cluster fails over.
  let produced = 1_000;
  const producer = (async () => {
    while (produced < total) {
      await enqueue(s, produced, 50);
      produced += 50;
      await new Promise((resolve) => setTimeout(resolve, 15)); // pacing: about 2,000 events/s at most
    }
  })();

  await waitFor(async () => (await verify(s)).processed >= 800, {
    timeoutMs: 60_000,
    description: '800 events handled before the kill',
  });
  // Kill the master of the busiest partition stream.
  const slot = Number(await redis.call('CLUSTER', 'KEYSLOT', `${s.prefix}${s.streams[0]!.name}:p0`));
  const { killed, promoted } = await cluster.killMaster({ slot });
  expect(promoted).not.toBe(killed);
  await producer;
  // Back as a replica, so the tests after this one find every master with a replica to promote.
  await cluster.restartNode(killed);

  const report = await waitDrained(s, total, 300_000);
  expect({ events: report.events, missing: report.missing, doubled: report.doubled, outOfOrder: report.outOfOrder }).toEqual({
    events: total,
    missing: 0,
    doubled: 0,
    outOfOrder: 0,
  });
});

test('a master frozen mid-run (SIGSTOP: its sockets stay open and silent): the pipeline goes on with its promoted replica, nothing lost, doubled or reordered', async () => {
  const s = scenario([2]);
  await enqueue(s, 0, 200);
  // Clients without a socket timeout: the publisher's and consumer's own bounds on every Redis call are what is tested.
  startPipeline(s);
  await waitDrained(s, 200, 60_000);

  // Frozen while the partition's worker waits in a blocking read on it: that read gets no answer and no error, ever.
  const slot = Number(await redis.call('CLUSTER', 'KEYSLOT', `${s.prefix}${s.streams[0]!.name}:p0`));
  const { frozen, promoted, thaw } = await cluster.freezeMaster({ slot });
  try {
    expect(promoted).not.toBe(frozen);
    await enqueue(s, 200, 200);
    const report = await waitDrained(s, 400, 120_000);
    expect({ missing: report.missing, doubled: report.doubled, outOfOrder: report.outOfOrder }).toEqual({ missing: 0, doubled: 0, outOfOrder: 0 });
  } finally {
    await thaw();
  }
  // Thawed, the old master learns it is a replica now: what it held back changes nothing.
  await enqueue(s, 400, 100);
  const after = await waitDrained(s, 500, 60_000);
  expect({ missing: after.missing, doubled: after.doubled, outOfOrder: after.outOfOrder }).toEqual({ missing: 0, doubled: 0, outOfOrder: 0 });
});
