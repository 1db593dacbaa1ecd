/**
 * Faults stay where they happen (issue 12, item 3): a stream whose Redis key
 * has the wrong type (WRONGTYPE), or whose meta hash makes the append script
 * fail, is logged once with its stream and cause, counted, backed off alone
 * and named by `events status` with a fix; every other stream keeps its lease
 * and keeps flowing. Once the key is fixed the stream resumes by itself.
 */
import type { RedisClient } from '@petcover/service-kit';
import { Registry } from 'prom-client';
import { createPublisher, type EventsStatus, type Publisher } from '../src/index';
import { streamMetaKey } from '../src/streams';
import { runEventsCli } from '../src/cli/events';
import { createTestDatabase, createTestRedis, testRedisUrl, trackedRedisPrefixes, uniqueStreamName, waitFor, type TestDatabase } from '../src/testing/index';
import { capturingLogger, expectIdOrder, fillOutbox, readStream, unpublishedCount } from './publisher-helpers';

let db: TestDatabase;
let redis: RedisClient;
let publisher: Publisher | undefined;
const prefixes = trackedRedisPrefixes();

beforeAll(async () => {
  db = await createTestDatabase();
  redis = createTestRedis();
});
afterAll(async () => {
  await publisher?.stop();
  await prefixes.deleteAll(redis);
  await db.drop();
  redis.disconnect();
});

async function status(stream: string, keyPrefix: string): Promise<{ code: number; report: EventsStatus }> {
  let stdout = '';
  const code = await runEventsCli(['status', '--stream', stream, '--json'], {
    env: { DATABASE_URL: db.url, REDIS_URL: testRedisUrl(), REDIS_KEY_PREFIX: keyPrefix },
    stdout: (t) => (stdout += t),
    stderr: () => undefined,
  });
  return { code, report: JSON.parse(stdout) as EventsStatus };
}

test('a WRONGTYPE stream key and a broken meta hash stop only their own streams; the healthy one keeps its lease and flows', async () => {
  const prefix = prefixes.next();
  const [wrongType, brokenMeta, healthy] = [uniqueStreamName('wrongtype'), uniqueStreamName('brokenmeta'), uniqueStreamName('healthy')];
  // Something else owns these keys: a plain string where the stream should be, and where its meta hash should be.
  await redis.set(`${prefix}${wrongType}`, 'not a stream');
  await redis.set(streamMetaKey(`${prefix}${brokenMeta}`), 'not a hash');
  for (const stream of [wrongType, brokenMeta, healthy]) await fillOutbox(db, stream, 20);
  const { logger, lines } = capturingLogger();
  const registry = new Registry();
  publisher = createPublisher({ sql: db.sql, redis, logger, registry, keyPrefix: prefix, pollIntervalMs: 100, leaseTtlMs: 2_000 });
  void publisher.start();

  await waitFor(async () => (await unpublishedCount(db, healthy)) === 0, { description: 'the healthy stream drained' });
  await fillOutbox(db, healthy, 20);
  await waitFor(async () => (await unpublishedCount(db, healthy)) === 0, { description: 'the healthy stream keeps flowing' });
  expectIdOrder(await readStream(redis, `${prefix}${healthy}`));
  expect(await redis.xlen(`${prefix}${healthy}`)).toBe(40);
  // Each faulty stream keeps its lease (no other replica would do better on the same Redis) and its rows:
  // never dropped (a drop logs "stopped draining stream" with its reason) and held. The lease round may
  // reach a stream after the healthy one has drained twice on a loaded machine, hence a wait, not a snapshot.
  const held = await waitFor(() => {
    const streams = publisher!.heldStreams().sort();
    return streams.length === 3 ? streams : null;
  }, { description: 'all three streams leased' });
  expect(held).toEqual([brokenMeta, healthy, wrongType].sort());
  expect(lines.filter((l) => l.msg === 'stopped draining stream').map((l) => ({ stream: l.stream, reason: l.reason }))).toEqual([]);
  expect(await unpublishedCount(db, wrongType)).toBe(20);
  expect(await unpublishedCount(db, brokenMeta)).toBe(20);

  // Counted by cause, logged once per stream (not once per retry), named by status with a fix.
  const faults = await waitFor(async () => {
    const metric = (await registry.getMetricsAsJSON()).find((m) => m.name === 'petcover_publisher_stream_faults_total');
    const values = (metric?.values ?? []) as Array<{ value: number; labels: Record<string, string> }>;
    const byStream = new Map(values.map((v) => [v.labels.stream, v]));
    return (byStream.get(wrongType)?.value ?? 0) >= 2 && (byStream.get(brokenMeta)?.value ?? 0) >= 2 ? byStream : null;
  }, { description: 'both faults counted, retried with backoff' });
  expect(faults.get(wrongType)!.labels.cause).toBe('WRONGTYPE');
  expect(faults.get(brokenMeta)!.labels.cause).toBe('WRONGTYPE');
  for (const stream of [wrongType, brokenMeta]) {
    const logged = lines.filter((l) => l.stream === stream && String(l.msg).startsWith('drain failed'));
    expect(logged).toHaveLength(1);
    expect(JSON.stringify(logged[0]!.err)).toContain('WRONGTYPE');
  }
  const wrongTypeStatus = await waitFor(async () => {
    const result = await status(wrongType, prefix);
    return result.report.problems.some((p) => p.kind === 'publisher_stream_fault') ? result : null;
  }, { description: 'status names the fault' });
  expect(wrongTypeStatus.code).toBe(1);
  expect(wrongTypeStatus.report.problems).toContainEqual(
    expect.objectContaining({ kind: 'publisher_stream_fault', stream: wrongType, message: expect.stringContaining('WRONGTYPE'), fix: expect.stringContaining('is not a stream') }),
  );
  expect((await status(healthy, prefix)).code).toBe(0);

  // The fix: move the foreign keys away. Both streams resume by themselves, in order, and status clears.
  await redis.rename(`${prefix}${wrongType}`, `${prefix}moved-away`);
  await redis.del(streamMetaKey(`${prefix}${brokenMeta}`));
  await waitFor(async () => (await unpublishedCount(db, wrongType)) + (await unpublishedCount(db, brokenMeta)) === 0, { timeoutMs: 20_000, description: 'faulty streams resume' });
  for (const stream of [wrongType, brokenMeta]) {
    const entries = await readStream(redis, `${prefix}${stream}`);
    expect(entries).toHaveLength(20);
    expectIdOrder(entries);
    await waitFor(async () => (await status(stream, prefix)).code === 0, { description: `status healthy again for ${stream}` });
  }
  expect(lines.filter((l) => String(l.msg) === 'drain recovered').map((l) => l.stream).sort()).toEqual([brokenMeta, wrongType].sort());
});
