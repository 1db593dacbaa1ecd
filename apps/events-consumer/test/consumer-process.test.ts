/**
 * events-consumer as a real process (built dist/, run `pnpm build` first):
 * SIGKILL mid-handler, SIGTERM with entries in flight, health endpoints, and
 * start-up errors.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Redis from 'ioredis';
import { partitionStreamName, redisStreamKey } from '@petcover/outbox';
import type { RedisClient } from '@petcover/service-kit';
import {
  appendTestEvents,
  createTestDatabase,
  createTestRedis,
  trackedRedisPrefixes,
  freePort,
  startDedicatedRedis,
  testRedisUrl,
  testStreamEvent,
  uniqueGroupName,
  uniqueStreamName,
  waitFor,
  type TestDatabase,
} from '@petcover/outbox/testing';

const MAIN = path.join(__dirname, '..', 'dist', 'main.js');
/**
 * Every wait bounds a hang, not the machine's speed: conditions are polled
 * and met in well under a second on an idle machine, but a shared 2-core box
 * at load 10+ can take tens of seconds to start a process and settle a few
 * entries. A test that times out here found a hang.
 */
const HANG_MS = 120_000;

jest.setTimeout(4 * HANG_MS);
const FIXTURE = path.join(__dirname, 'fixtures', 'recording-module.ts');

let testDb: TestDatabase;
let redis: RedisClient;
const children: ChildProcess[] = [];
const prefixes = trackedRedisPrefixes();

const usePrefix = prefixes.next;

beforeAll(async () => {
  testDb = await createTestDatabase();
  redis = createTestRedis();
  await testDb.sql`CREATE TABLE test_effect (
    id bigserial PRIMARY KEY, group_name text NOT NULL, event_id uuid NOT NULL, seq int NOT NULL, pid int NOT NULL)`;
});
afterEach(() => {
  for (const child of children.splice(0)) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
});
afterAll(async () => {
  await prefixes.deleteAll(redis);
  redis.disconnect();
  await testDb.drop();
});

interface RunningConsumer {
  child: ChildProcess;
  output(): string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  healthPort: number;
}

async function spawnConsumer(args: string[], env: Record<string, string>): Promise<RunningConsumer> {
  const healthPort = await freePort();
  const child = spawn(process.execPath, [MAIN, ...args], {
    env: { PATH: process.env.PATH ?? '', DATABASE_URL: testDb.url, REDIS_URL: testRedisUrl(), HEALTH_PORT: String(healthPort), LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.push(child);
  let output = '';
  child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );
  return { child, output: () => output, exited, healthPort };
}

function startArgs(group: string, extra: string[] = []): string[] {
  return ['start', '--module', FIXTURE, '--group', group, '--lease-ttl', '2', '--block', '200', '--log-level', 'info', ...extra];
}

const effects = (group: string) =>
  testDb.sql<{ event_id: string; seq: number; pid: number }[]>`SELECT event_id::text, seq, pid FROM test_effect WHERE group_name = ${group} ORDER BY id`;

async function consumersOf(key: string, group: string): Promise<{ name: string; pending: number }[]> {
  const rows = (await redis.call('XINFO', 'CONSUMERS', key, group)) as unknown[][];
  return rows.map((r) => ({ name: String(r[1]), pending: Number(r[3]) }));
}

describe('events-consumer process', () => {
  test('SIGKILL in the middle of a handler: another replica reclaims the entry and the effect happens exactly once', async () => {
    const stream = uniqueStreamName();
    const prefix = usePrefix();
    const group = uniqueGroupName();
    const key = `${prefix}${stream}`;
    const marker = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'petcover-consumer-')), 'blocked');
    const events = [1, 2, 3, 4].map((seq) => testStreamEvent({ type: 'Recorded', payload: { seq } }));
    await appendTestEvents(redis, key, events);

    const fixtureEnv = { FIXTURE_STREAM: stream, REDIS_KEY_PREFIX: prefix };
    const a = await spawnConsumer(startArgs(group, ['--batch-size', '1']), { ...fixtureEnv, FIXTURE_BLOCK_SEQ: '2', FIXTURE_MARKER: marker });
    await waitFor(() => fs.existsSync(marker), { timeoutMs: HANG_MS, description: `replica A blocked in the handler of seq 2\n${a.output()}` });
    const b = await spawnConsumer(startArgs(group, ['--batch-size', '1']), fixtureEnv);
    // B is idle while A holds the partition lease.
    expect((await effects(group)).map((r) => r.seq)).toEqual([1]);

    a.child.kill('SIGKILL');
    expect(await a.exited).toEqual({ code: null, signal: 'SIGKILL' });
    const rows = await waitFor(async () => {
      const found = await effects(group);
      return found.length >= 4 ? found : null;
    }, { timeoutMs: HANG_MS, description: `replica B handles what A left\n${b.output()}` });
    expect(rows.map((r) => r.seq)).toEqual([1, 2, 3, 4]);
    expect(rows[0]!.pid).toBe(a.child.pid);
    expect(rows.slice(1).every((r) => r.pid === b.child.pid)).toBe(true);
    await waitFor(async () => (await consumersOf(key, group)).every((c) => c.pending === 0), { timeoutMs: HANG_MS, description: 'nothing pending' });
    expect(b.output()).toContain('reclaimed entries left pending by a previous owner');
    b.child.kill('SIGTERM');
    expect((await b.exited).code).toBe(0);
  });

  test('a partition wedged in a call no deadline can end is given up by the watchdog; the second replica takes over and handles everything', async () => {
    const stream = uniqueStreamName();
    const prefix = usePrefix();
    const group = uniqueGroupName();
    const key = `${prefix}${stream}`;
    const marker = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'petcover-consumer-')), 'wedged');
    await appendTestEvents(redis, key, [1, 2, 3, 4].map((seq) => testStreamEvent({ type: 'Recorded', payload: { seq } })));
    const fixtureEnv = { FIXTURE_STREAM: stream, REDIS_KEY_PREFIX: prefix };
    // Deadline 2 s + lease TTL 2 s: the watchdog gives the partition up ~4 s after the last progress.
    // Attempts are plenty so a slow machine (a healthy handler past 2 s) cannot dead-letter anything.
    const args = startArgs(group, ['--batch-size', '1', '--handler-timeout', '2', '--max-attempts', '50']);
    const a = await spawnConsumer(args, { ...fixtureEnv, FIXTURE_WEDGE_SEQ: '2', FIXTURE_MARKER: marker });
    await waitFor(() => fs.existsSync(marker), { timeoutMs: HANG_MS, description: `replica A wedged in the handler of seq 2\n${a.output()}` });
    const b = await spawnConsumer(args, fixtureEnv);
    const rows = await waitFor(async () => {
      const found = await effects(group);
      return found.length >= 4 ? found : null;
    }, { timeoutMs: HANG_MS, description: `replica B takes over from the wedged A\n${a.output()}\n${b.output()}` });
    expect(rows.map((r) => r.seq)).toEqual([1, 2, 3, 4]);
    expect(rows[0]!.pid).toBe(a.child.pid);
    expect(rows.slice(1).every((r) => r.pid === b.child.pid)).toBe(true);
    expect(a.output()).toContain('partition made no progress for longer than the handler deadline plus the lease TTL');
    // A is alive (not restarted, not crashed): only its partition was given up.
    expect(a.child.exitCode).toBeNull();
    const metrics = await (await fetch(`http://127.0.0.1:${a.healthPort}/metrics`)).text();
    // At least once: on a slow machine B may not bid within A's cool-down, A re-takes the partition and wedges again.
    expect(Number(/petcover_consumer_watchdog_releases_total\{[^}]*\} (\d+)/.exec(metrics)?.[1])).toBeGreaterThanOrEqual(1);
  });

  test('SIGTERM with entries in flight: exits 0, nothing pending for it, leases released; the rest is handled once later', async () => {
    const stream = uniqueStreamName();
    const prefix = usePrefix();
    const group = uniqueGroupName();
    const key = redisStreamKey(partitionStreamName(stream, 0, 2), prefix);
    const events = Array.from({ length: 40 }, (_, seq) => testStreamEvent({ type: 'Recorded', partitionKey: 'k', payload: { seq } }));
    // 40 × 250 ms: the first consumer needs 10 s for them all, far more than the few health requests
    // before its SIGTERM take even on a loaded machine, so entries are in flight when it stops.
    const fixtureEnv = { FIXTURE_STREAM: stream, FIXTURE_PARTITIONS: '2', REDIS_KEY_PREFIX: prefix, FIXTURE_SLOW_MS: '250' };
    const first = await spawnConsumer(startArgs(group, ['--batch-size', '5']), fixtureEnv);
    await appendTestEvents(redis, key, events);
    await waitFor(async () => (await effects(group)).length >= 3, { timeoutMs: HANG_MS, description: `first effects\n${first.output()}` });

    // Health endpoints of a running consumer.
    const base = `http://127.0.0.1:${first.healthPort}`;
    expect((await fetch(`${base}/healthz`)).status).toBe(200);
    const ready = await fetch(`${base}/readyz`);
    expect(await ready.json()).toMatchObject({ status: 'ok', checks: { db: { ok: true }, redis: { ok: true }, migrations: { ok: true } } });
    // /readyz runs on a connection of its own (issue 13), not on the handlers' pool.
    const [own] = await testDb.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'events-consumer-readiness'`;
    expect(own?.n).toBe(1);
    const metrics = await (await fetch(`${base}/metrics`)).text();
    expect(metrics).toMatch(/petcover_consumer_handled_total\{[^}]*event_type="Recorded"[^}]*\} \d+/);
    expect(metrics).toContain('petcover_consumer_handler_seconds_bucket');

    first.child.kill('SIGTERM');
    expect(await first.exited).toEqual({ code: 0, signal: null });
    const handledBefore = (await effects(group)).length;
    expect(handledBefore).toBeLessThan(events.length);
    expect(await consumersOf(key, group)).toEqual([expect.objectContaining({ pending: 0 })]);
    const [leases] = await testDb.sql`SELECT count(*)::int AS n FROM events.stream_lease WHERE role = ${`consumer:${group}`}`;
    expect(leases!.n).toBe(0);

    const second = await spawnConsumer(startArgs(group), { ...fixtureEnv, FIXTURE_SLOW_MS: '0' });
    const rows = await waitFor(async () => {
      const found = await effects(group);
      return found.length >= events.length ? found : null;
    }, { timeoutMs: HANG_MS, description: `the rest handled\n${second.output()}` });
    expect(rows.map((r) => r.seq)).toEqual(events.map((_, seq) => seq));
    second.child.kill('SIGTERM');
    expect((await second.exited).code).toBe(0);
  });

  test('Redis outage: /readyz 503 while down, logged once, then it reconnects, recreates its group and goes on', async () => {
    const dedicated = await startDedicatedRedis();
    const client = new Redis(dedicated.url, { maxRetriesPerRequest: 1 });
    client.on('error', () => undefined);
    try {
      const stream = uniqueStreamName();
      const group = uniqueGroupName();
      const consumer = await spawnConsumer(startArgs(group), { FIXTURE_STREAM: stream, REDIS_URL: dedicated.url });
      const readyz = async () => {
        const response = await fetch(`http://127.0.0.1:${consumer.healthPort}/readyz`);
        return { status: response.status, body: (await response.json()) as { checks: Record<string, { ok: boolean }> } };
      };
      await waitFor(async () => (await readyz()).status === 200, { timeoutMs: HANG_MS, description: `ready\n${consumer.output()}` });
      await appendTestEvents(client, stream, [testStreamEvent({ type: 'Recorded', payload: { seq: 1 } })]);
      await waitFor(async () => (await effects(group)).length === 1, { timeoutMs: HANG_MS, description: 'first event handled' });

      await dedicated.stop();
      const down = await waitFor(async () => {
        const answer = await readyz();
        return answer.status === 503 ? answer : null;
      }, { timeoutMs: HANG_MS, description: 'readyz 503 while redis is down' });
      expect(down.body.checks.redis!.ok).toBe(false);
      expect(down.body.checks.db!.ok).toBe(true);
      await waitFor(() => consumer.output().includes('redis unreachable'), { timeoutMs: HANG_MS, description: 'outage logged' });

      await dedicated.start();
      await waitFor(async () => (await client.ping()) === 'PONG', { timeoutMs: HANG_MS, description: 'client reconnected' });
      await appendTestEvents(client, stream, [2, 3].map((seq) => testStreamEvent({ type: 'Recorded', payload: { seq } })));
      const rows = await waitFor(async () => {
        const found = await effects(group);
        return found.length === 3 ? found : null;
      }, { timeoutMs: HANG_MS, description: `events after the restart handled\n${consumer.output()}` });
      expect(rows.map((r) => r.seq)).toEqual([1, 2, 3]);
      await waitFor(async () => (await readyz()).status === 200, { timeoutMs: HANG_MS, description: 'ready again' });
      await waitFor(() => consumer.output().includes('redis reachable again'), { timeoutMs: HANG_MS, description: 'recovery logged' });
      expect(consumer.output().split('redis unreachable').length - 1).toBe(1);
      consumer.child.kill('SIGTERM');
      expect((await consumer.exited).code).toBe(0);
    } finally {
      client.disconnect();
      await dedicated.destroy();
    }
  });

  test('start-up errors exit at once with a one-line reason', async () => {
    const usage = await spawnConsumer(['start', '--concurrency', 'many'], {});
    expect((await usage.exited).code).toBe(64);
    expect(usage.output()).toContain('--concurrency must be a positive integer (got "many")');

    const strict = await spawnConsumer(['start', '--module', FIXTURE], { CI_STRICT: '1', DATABASE_URL: '', FIXTURE_STREAM: uniqueStreamName() });
    expect((await strict.exited).code).toBe(78);
    expect(strict.output()).toContain('DATABASE_URL must be set when NODE_ENV=production or CI_STRICT=1');

    const missing = await spawnConsumer(['start', '--module', './no/such/module.js'], {});
    expect((await missing.exited).code).toBe(78);
    expect(missing.output()).toMatch(/cannot load consumer module .*no\/such\/module\.js/);

    const invalid = await spawnConsumer(['start', '--module', FIXTURE], { FIXTURE_STREAM: 'not-a-stream' });
    expect((await invalid.exited).code).toBe(78);
    expect(invalid.output()).toContain('stream:<context>:<name>');
  });
});
