/**
 * The "diagnosing silence" table of docs/runbook.md, built for real: the
 * built events-publisher / events-consumer apps are spawned, killed and
 * misconfigured, a dedicated Redis is restarted empty, and `events status
 * --json` must name the cause and exit 1; applying the runbook's fix must
 * bring it back to exit 0.
 *
 * Needs the apps built (`pnpm build`; turbo.json makes this package's test
 * task depend on their build).
 *
 * Every spawned app is awaited on /readyz before the test times anything it
 * must do: on a loaded machine a start (a consumer loading its TypeScript
 * module through tsx) took longer than the 15–20 s deadlines that were meant
 * for the work, and those cases failed. Deadlines now bound a hang (60 s)
 * and every wait is on a condition.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import Redis from 'ioredis';
import { enqueueMany, type EventsStatus } from '../src';
import { runEventsCli } from '../src/cli/events';
import {
  createTestDatabase,
  freePort,
  startDedicatedRedis,
  waitForReady,
  testRedisUrl,
  uniqueGroupName,
  uniqueRedisPrefix,
  uniqueStreamName,
  waitFor,
  type DedicatedRedis,
  type TestDatabase,
} from '../src/testing';

const PUBLISHER_MAIN = path.join(__dirname, '..', '..', '..', 'apps', 'events-publisher', 'dist', 'main.js');
const CONSUMER_MAIN = path.join(__dirname, '..', '..', '..', 'apps', 'events-consumer', 'dist', 'main.js');
const CONSUMER_MODULE = path.join(__dirname, 'fixtures', 'runbook-consumer-module.ts');

interface AppProcess {
  child: ChildProcess;
  output: () => string;
  exited: Promise<number | null>;
}

interface AppEnv {
  databaseUrl: string;
  redisUrl: string;
  keyPrefix: string;
}

async function spawnPublisher(env: AppEnv, args: string[] = []): Promise<AppProcess> {
  return spawnApp(PUBLISHER_MAIN, ['--poll-interval', '0.2', '--lease-ttl', '3', ...args], env);
}

/** events-consumer running the fixture module on `stream` for `group`. */
async function spawnConsumer(env: AppEnv, stream: string, group: string, fixture: Record<string, string> = {}): Promise<AppProcess> {
  return spawnApp(CONSUMER_MAIN, ['--group', group, '--module', CONSUMER_MODULE], env, { FIXTURE_STREAM: stream, ...fixture });
}

/** Spawns a built app and resolves once it answers /readyz (it fails at once if the app exits). */
async function spawnApp(main: string, args: string[], env: AppEnv, extraEnv: Record<string, string> = {}): Promise<AppProcess> {
  const healthPort = await freePort();
  const child = spawn(process.execPath, [main, 'start', ...args], {
    env: {
      PATH: process.env.PATH,
      DATABASE_URL: env.databaseUrl,
      REDIS_URL: env.redisUrl,
      REDIS_KEY_PREFIX: env.keyPrefix,
      HEALTH_PORT: String(healthPort),
      ...extraEnv,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  running.add(child);
  await waitForReady(healthPort, {
    name: path.basename(path.dirname(path.dirname(main))),
    exited: () => (child.exitCode !== null || child.signalCode !== null ? output.slice(-2000) : undefined),
  });
  return { child, output: () => output, exited };
}

/** Bounds a hang of the pipeline on a loaded machine; every wait below ends as soon as its condition holds. */
const WORK_TIMEOUT_MS = 60_000;
// App starts (each up to APP_READY_TIMEOUT_MS) plus several waits per test.
jest.setTimeout(300_000);

const running = new Set<ChildProcess>();
async function stop(app: AppProcess, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  if (app.child.exitCode === null && app.child.signalCode === null) app.child.kill(signal);
  await app.exited;
  running.delete(app.child);
}

let testDb: TestDatabase;
let otherDb: TestDatabase;
let dedicatedRedis: DedicatedRedis;
let sharedRedis: Redis;
const keyPrefix = uniqueRedisPrefix();

beforeAll(async () => {
  [testDb, otherDb, dedicatedRedis] = await Promise.all([createTestDatabase(), createTestDatabase(), startDedicatedRedis()]);
  sharedRedis = new Redis(testRedisUrl(), { maxRetriesPerRequest: 1 });
});
afterAll(async () => {
  for (const child of running) child.kill('SIGKILL');
  const keys = await sharedRedis.keys(`*${keyPrefix}*`);
  if (keys.length > 0) await sharedRedis.del(...keys);
  sharedRedis.disconnect();
  await Promise.all([testDb.drop(), otherDb.drop(), dedicatedRedis.destroy()]);
});

async function enqueueRows(stream: string, count: number, payload: Record<string, unknown> = {}): Promise<string[]> {
  return testDb.db.transaction(async (tx) => {
    const events = await enqueueMany(
      tx,
      Array.from({ length: count }, (_, i) => ({ stream, type: 'RunbookTested', partitionKey: `key-${i % 3}`, payload: { i, ...payload } })),
    );
    return events.map((e) => e.eventId);
  });
}

async function processedBy(group: string, eventIds: string[], db: TestDatabase = testDb): Promise<number> {
  const [row] = await db.sql<{ n: number }[]>`
    SELECT count(*)::int AS n FROM events.processed_event WHERE group_name = ${group} AND event_id::text IN ${db.sql(eventIds)}`;
  return row!.n;
}

/** Makes queued rows look a minute old, past the diagnosis' grace period, instead of waiting for it. */
async function ageQueuedRows(stream: string): Promise<void> {
  await testDb.sql`UPDATE events.outbox_event SET created_at = created_at - interval '1 minute'
                   WHERE stream_name = ${stream} AND published_at IS NULL`;
}

async function status(stream: string, redisUrl = testRedisUrl()): Promise<{ code: number; report: EventsStatus }> {
  let stdout = '';
  const code = await runEventsCli(['status', '--stream', stream, '--json'], {
    env: { DATABASE_URL: testDb.url, REDIS_URL: redisUrl, REDIS_KEY_PREFIX: keyPrefix },
    stdout: (t) => (stdout += t),
    stderr: () => undefined,
  });
  return { code, report: JSON.parse(stdout) as EventsStatus };
}

async function cli(argv: string[], redisUrl = testRedisUrl()): Promise<number> {
  return runEventsCli(argv, {
    env: { DATABASE_URL: testDb.url, REDIS_URL: redisUrl, REDIS_KEY_PREFIX: keyPrefix },
    stdout: () => undefined,
    stderr: () => undefined,
  });
}

async function unpublished(stream: string): Promise<number> {
  const [row] = await testDb.sql<{ n: number }[]>`
    SELECT count(*)::int AS n FROM events.outbox_event WHERE stream_name = ${stream} AND published_at IS NULL`;
  return row!.n;
}

describe('runbook: diagnosing silence', () => {
  test('stale lease: publisher SIGKILLed while rows are queued → publisher_stopped_renewing naming it; lease release + a new publisher drains', async () => {
    const stream = uniqueStreamName();
    const env = { databaseUrl: testDb.url, redisUrl: testRedisUrl(), keyPrefix };
    const first = await spawnPublisher(env);
    await enqueueRows(stream, 3);
    await waitFor(async () => (await unpublished(stream)) === 0 && (await sharedRedis.xlen(`${keyPrefix}${stream}`)) === 3, {
      timeoutMs: WORK_TIMEOUT_MS,
      description: 'first publisher relays 3 rows',
    });
    const [lease] = await testDb.sql<{ owner_id: string }[]>`
      SELECT owner_id FROM events.stream_lease WHERE stream_name = ${stream} AND role = 'publisher'`;
    expect(lease).toBeDefined();

    await stop(first, 'SIGKILL');
    await enqueueRows(stream, 5);
    await ageQueuedRows(stream);

    const { code, report } = await waitFor(
      async () => {
        const result = await status(stream);
        return result.report.problems.some((p) => p.kind === 'publisher_stopped_renewing') ? result : null;
      },
      { timeoutMs: WORK_TIMEOUT_MS, description: 'status names the publisher that stopped renewing' },
    );
    expect(code).toBe(1);
    expect(report.streams[0]!.outbox.unpublished).toBe(5);
    expect(report.streams[0]!.publisherLease).toMatchObject({ ownerId: lease!.owner_id, ownerRenewing: false });
    expect(report.problems).toEqual([
      expect.objectContaining({ kind: 'publisher_stopped_renewing', stream, message: expect.stringContaining(lease!.owner_id) }),
    ]);

    // The runbook's fix: release the lease, start a publisher.
    expect(await cli(['lease', 'release', '--stream', stream, '--role', 'publisher'])).toBe(0);
    const second = await spawnPublisher(env);
    try {
      const healthy = await waitFor(async () => ((await status(stream)).code === 0 ? (await status(stream)).report : null), {
        timeoutMs: WORK_TIMEOUT_MS,
        description: 'status healthy after the fix',
      });
      expect(healthy.streams[0]).toMatchObject({ outbox: { unpublished: 0 }, redis: [{ length: 8 }] });
      expect(healthy.streams[0]!.publisherLease!.ownerId).not.toBe(lease!.owner_id);
    } finally {
      await stop(second);
    }
  });

  test('wrong DATABASE_URL (split database): the publisher runs against another database → no_publisher_lease', async () => {
    const stream = uniqueStreamName();
    const elsewhere = await spawnPublisher({ databaseUrl: otherDb.url, redisUrl: testRedisUrl(), keyPrefix });
    try {
      await enqueueRows(stream, 4);
      await ageQueuedRows(stream);
      // The misplaced publisher is up (it leases streams of its own database, never ours).
      await waitFor(() => elsewhere.output().includes('events-publisher started'), {
        timeoutMs: WORK_TIMEOUT_MS,
        description: 'the misplaced publisher started',
      });
      const { code, report } = await status(stream);
      expect(code).toBe(1);
      expect(report.problems).toEqual([
        expect.objectContaining({ kind: 'no_publisher_lease', stream, fix: expect.stringContaining('DATABASE_URL') }),
      ]);
      expect(report.streams[0]).toMatchObject({ outbox: { unpublished: 4 }, publisherLease: null });
    } finally {
      await stop(elsewhere);
    }
  });

  test('wrong REDIS_URL: the publisher appends to another Redis → redis_stream_missing; rows are marked published', async () => {
    const stream = uniqueStreamName();
    const publisher = await spawnPublisher({ databaseUrl: testDb.url, redisUrl: dedicatedRedis.url, keyPrefix });
    try {
      await enqueueRows(stream, 3);
      await waitFor(async () => (await unpublished(stream)) === 0, { timeoutMs: WORK_TIMEOUT_MS, description: 'rows marked published' });
      const { code, report } = await status(stream);
      expect(code).toBe(1);
      expect(report.streams[0]!.redis).toEqual([expect.objectContaining({ exists: false })]);
      expect(report.problems).toEqual([expect.objectContaining({ kind: 'redis_stream_missing', stream, fix: expect.stringContaining('REDIS_URL') })]);
      // Seen from the Redis the publisher really uses, all is well.
      expect((await status(stream, dedicatedRedis.url)).code).toBe(0);
    } finally {
      await stop(publisher);
    }
  });

  test('Redis restarted without persistence → redis_stream_missing; a publisher re-appends exactly what Postgres recorded, no replay needed', async () => {
    const stream = uniqueStreamName();
    const env = { databaseUrl: testDb.url, redisUrl: dedicatedRedis.url, keyPrefix };
    const publisher = await spawnPublisher(env);
    await enqueueRows(stream, 6);
    await waitFor(async () => (await unpublished(stream)) === 0, { timeoutMs: WORK_TIMEOUT_MS, description: 'rows published' });
    await stop(publisher);
    expect((await status(stream, dedicatedRedis.url)).code).toBe(0);

    await dedicatedRedis.restart();
    const { code, report } = await status(stream, dedicatedRedis.url);
    expect(code).toBe(1);
    expect(report.problems).toEqual([expect.objectContaining({ kind: 'redis_stream_missing', stream })]);
    expect(report.problems[0]!.fix).toContain('re-appends exactly the missing rows by itself');

    const again = await spawnPublisher(env);
    try {
      const healthy = await waitFor(
        async () => {
          const result = await status(stream, dedicatedRedis.url);
          return result.code === 0 ? result.report : null;
        },
        { timeoutMs: WORK_TIMEOUT_MS, description: 'status healthy after the publisher re-appended' },
      );
      expect(healthy.streams[0]!.redis).toEqual([expect.objectContaining({ exists: true, length: 6 })]);
      expect(again.output()).toContain('Redis is behind what Postgres recorded');
    } finally {
      await stop(again);
    }
  });

  test('split database: a consumer on another database → group_consuming_elsewhere; its effects land there', async () => {
    const stream = uniqueStreamName();
    const group = uniqueGroupName('elsewhere');
    const env = { databaseUrl: testDb.url, redisUrl: testRedisUrl(), keyPrefix };
    const publisher = await spawnPublisher(env);
    const consumer = await spawnConsumer({ ...env, databaseUrl: otherDb.url }, stream, group, { FIXTURE_ACCEPT_ALL: '1' });
    try {
      const eventIds = await enqueueRows(stream, 3, { ok: true });
      await waitFor(async () => (await processedBy(group, eventIds, otherDb)) === 3, {
        timeoutMs: WORK_TIMEOUT_MS,
        description: `the misplaced consumer handles the events in the other database (output: ${consumer.output().slice(0, 300)})`,
      });
      const { code, report } = await status(stream);
      expect(code).toBe(1);
      expect(report.problems).toEqual([
        expect.objectContaining({ kind: 'group_consuming_elsewhere', stream, group, fix: expect.stringContaining('DATABASE_URL') }),
      ]);
      expect(report.streams[0]!.groups[0]).toMatchObject({ group, lag: 0, partitions: [{ lease: null }] });
      expect(await processedBy(group, eventIds)).toBe(0);
    } finally {
      await Promise.all([stop(consumer), stop(publisher)]);
    }
  });

  test('dead letters piling up → dead_letters per group and type; after the handler fix, `events dlq replay --all` gets them handled', async () => {
    const stream = uniqueStreamName();
    const group = uniqueGroupName('dlq');
    const env = { databaseUrl: testDb.url, redisUrl: testRedisUrl(), keyPrefix };
    const publisher = await spawnPublisher(env);
    let consumer = await spawnConsumer(env, stream, group);
    try {
      const good = await enqueueRows(stream, 1, { ok: true });
      const bad = await enqueueRows(stream, 2, { ok: false });
      await waitFor(async () => (await processedBy(group, good)) === 1, { timeoutMs: WORK_TIMEOUT_MS, description: 'the good event handled' });
      await waitFor(
        async () => {
          const [row] = await testDb.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM events.dead_letter WHERE group_name = ${group}`;
          return row!.n === 2;
        },
        { timeoutMs: WORK_TIMEOUT_MS, description: `two dead letters (output: ${consumer.output().slice(0, 300)})` },
      );
      const { code, report } = await status(stream);
      expect(code).toBe(1);
      expect(report.problems).toEqual([
        expect.objectContaining({ kind: 'dead_letters', group, message: `2 dead letter(s) in group ${group}: RunbookTested x2` }),
      ]);

      // The runbook's fix: deploy the fixed handler, then replay the group's dead letters.
      await stop(consumer);
      consumer = await spawnConsumer(env, stream, group, { FIXTURE_ACCEPT_ALL: '1' });
      expect(await cli(['dlq', 'replay', '--all', '--group', group])).toBe(0);
      await waitFor(async () => (await processedBy(group, bad)) === 2, { timeoutMs: WORK_TIMEOUT_MS, description: 'replayed events handled' });
      const after = await waitFor(
        async () => {
          const result = await status(stream);
          return result.code === 0 ? result.report : null;
        },
        { timeoutMs: WORK_TIMEOUT_MS, description: 'status healthy after the replay' },
      );
      expect(after.streams[0]!.deadLetters).toEqual([]);
      expect(await cli(['dlq', 'replay', '--all', '--group', group])).toBe(0);
    } finally {
      await Promise.all([stop(consumer), stop(publisher)]);
    }
  });
});
