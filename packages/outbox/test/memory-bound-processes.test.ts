/**
 * Issue 14, item 2: memory is bounded by bytes, not only by entry count.
 * 300 events of 250 KiB (under enqueue's 256 KiB cap) go through the built
 * events-publisher and events-consumer processes with their default flags;
 * the peak resident set of each (VmHWM of /proc/<pid>/status, which the
 * kernel keeps as a high-water mark, so no sampling can miss a spike) must
 * stay under the memory limit of its Kubernetes manifest, and every event is
 * handled exactly once.
 *
 * Worst case on purpose: the whole backlog is in the outbox before the
 * publisher starts, and in Redis before a fresh consumer starts.
 *
 * Needs the apps built (turbo.json makes this package's test task depend on
 * their build). Linux only (/proc).
 */
import fs from 'node:fs';
import path from 'node:path';
import type { RedisClient } from '@petcover/service-kit';
import { enqueueMany } from '../src';
import {
  createTestDatabase,
  createTestRedis,
  freePort,
  killSpawnedApps,
  spawnBuiltApp,
  testRedisUrl,
  uniqueGroupName,
  uniqueRedisPrefix,
  uniqueStreamName,
  waitFor,
  type TestDatabase,
} from '../src/testing';

const ROOT = path.join(__dirname, '..', '..', '..');
const CONSUMER_MODULE = path.join(__dirname, 'fixtures', 'memory-consumer-module.ts');

const EVENTS = 300;
const PAYLOAD_BYTES = 250 * 1024;
/** Bounds a hang, not the machine's speed: a loaded machine moves 75 MB in well under this. */
const PHASE_DEADLINE_MS = 240_000;

jest.setTimeout(3 * PHASE_DEADLINE_MS);

/** `limits: { ..., memory: 384Mi }` of the app's container in infra/k8s/base/<app>.yaml, in bytes. */
function manifestMemoryLimit(app: string): number {
  const yaml = fs.readFileSync(path.join(ROOT, 'infra', 'k8s', 'base', `${app}.yaml`), 'utf8');
  const match = /limits:\s*\{[^}]*memory:\s*(\d+)(Mi|Gi)\b/.exec(yaml);
  if (!match) throw new Error(`no memory limit found in infra/k8s/base/${app}.yaml`);
  return Number(match[1]) * (match[2] === 'Gi' ? 1024 ** 3 : 1024 ** 2);
}

/** Peak resident set of a live process, in bytes (VmHWM). */
function peakRss(pid: number): number {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const match = /^VmHWM:\s+(\d+) kB$/m.exec(status);
  if (!match) throw new Error(`no VmHWM in /proc/${pid}/status`);
  return Number(match[1]) * 1024;
}

let testDb: TestDatabase;
let redis: RedisClient;
const keyPrefix = uniqueRedisPrefix();

beforeAll(async () => {
  testDb = await createTestDatabase();
  redis = createTestRedis();
  await testDb.sql`CREATE TABLE test_effect (id bigserial PRIMARY KEY, event_id uuid NOT NULL, seq int NOT NULL, blob_length int NOT NULL)`;
});
afterAll(async () => {
  killSpawnedApps();
  const keys = await redis.keys(`${keyPrefix}*`);
  if (keys.length > 0) await redis.del(...keys);
  redis.disconnect();
  await testDb.drop();
});

test(`${EVENTS} events of 250 KiB: publisher and a fresh consumer stay under their manifests' memory limits; each event handled once`, async () => {
  const stream = uniqueStreamName();
  const group = uniqueGroupName();
  // The blob fills the payload up to 250 KiB of JSON.
  const blob = 'x'.repeat(PAYLOAD_BYTES - 64);
  for (let start = 0; start < EVENTS; start += 20) {
    await testDb.db.transaction((tx) =>
      enqueueMany(tx, Array.from({ length: 20 }, (_, i) => ({ stream, type: 'LargeEventSent', partitionKey: `key-${(start + i) % 7}`, payload: { seq: start + i, blob } }))),
    );
  }
  const env = { DATABASE_URL: testDb.url, REDIS_URL: testRedisUrl(), REDIS_KEY_PREFIX: keyPrefix };

  // LOG_LEVEL warn: the output is kept for a failure message only.
  const appEnv = async () => ({ ...env, LOG_LEVEL: 'warn', HEALTH_PORT: String(await freePort()) });
  const publisher = spawnBuiltApp('publisher', [], await appEnv());
  await waitFor(
    async () => {
      const [row] = await testDb.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM events.outbox_event WHERE stream_name = ${stream} AND published_at IS NULL`;
      return row!.n === 0;
    },
    { timeoutMs: PHASE_DEADLINE_MS, intervalMs: 250, description: `the publisher publishes all ${EVENTS} rows\n${publisher.output()}` },
  );
  const publisherPeak = peakRss(publisher.child.pid!);

  const consumer = spawnBuiltApp('consumer', ['--group', group, '--module', CONSUMER_MODULE], { ...(await appEnv()), FIXTURE_STREAM: stream });
  await waitFor(
    async () => {
      const [row] = await testDb.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM test_effect`;
      return row!.n >= EVENTS;
    },
    { timeoutMs: PHASE_DEADLINE_MS, intervalMs: 250, description: `the consumer handles all ${EVENTS} events\n${consumer.output()}` },
  );
  const consumerPeak = peakRss(consumer.child.pid!);
  expect(await consumer.stop()).toBe(0);
  expect(await publisher.stop()).toBe(0);

  const [effects] = await testDb.sql<{ n: number; distinct_events: number; full: number }[]>`
    SELECT count(*)::int AS n, count(DISTINCT event_id)::int AS distinct_events,
           count(*) FILTER (WHERE blob_length = ${blob.length})::int AS full
    FROM test_effect`;
  expect(effects).toEqual({ n: EVENTS, distinct_events: EVENTS, full: EVENTS });

  const mb = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(0)} MiB`;
  // Printed for the record (the "before": a fresh consumer peaked at 427 MB).
  process.stdout.write(`peak RSS: publisher ${mb(publisherPeak)}, consumer ${mb(consumerPeak)}\n`);
  expect({ app: 'events-publisher', peak: publisherPeak, under: publisherPeak < manifestMemoryLimit('events-publisher') }).toEqual(
    expect.objectContaining({ under: true }),
  );
  expect({ app: 'events-consumer', peak: consumerPeak, under: consumerPeak < manifestMemoryLimit('events-consumer') }).toEqual(
    expect.objectContaining({ under: true }),
  );
});
