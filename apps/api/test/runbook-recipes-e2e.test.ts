/**
 * The runbook's two repair recipes that need more than a restart, tried for
 * real with the three built apps (api, events-publisher, events-consumer of
 * the domain group) as processes, the `events` CLI and the api's commands:
 *
 * - Split database: the consumer ran against another database, so its
 *   effects (here: dead letters, the approval request being unknown there)
 *   landed there and the pet stays NOT_ENROLLED. Fix: give it the api's
 *   DATABASE_URL, restart it, `events outbox replay --stream <s> --since <t>`
 *   for each stream → ENROLLED, `events status` HEALTHY. No redis-cli step.
 * - Wrong REDIS_URL: the publisher appended to another Redis, rows are marked
 *   published there. Fix: give it the consumers' REDIS_URL and restart it; it
 *   re-appends what went elsewhere by itself (Redis ends before what Postgres
 *   recorded) → ENROLLED, each stream's entries in outbox-id order, once
 *   each, `events status` HEALTHY.
 *
 * Needs `pnpm build` (turbo's test task builds first).
 */
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { domainMigrations } from '@petcover/domain';
import { outboxMigrations, redisStreamKey } from '@petcover/outbox';
import {
  createTestDatabase,
  createTestRedis,
  deleteKeysWithPrefix,
  freePort,
  startDedicatedRedis,
  testRedisUrl,
  uniqueGroupName,
  uniqueRedisPrefix,
  waitFor,
  type DedicatedRedis,
  type TestDatabase,
} from '@petcover/outbox/testing';
import { RunningApps, type RunningApp } from './support/running-apps';
import { API_DIST, CONSUMER_MAIN, PUBLISHER_MAIN, REPO_ROOT, requireBuiltApps } from './support/built-files';

const EVENTS_CLI = path.join(REPO_ROOT, 'packages/outbox/dist/cli/events.js');
requireBuiltApps([EVENTS_CLI]);

const execFileAsync = promisify(execFile);
/** Bounds a hang of the pipeline on a loaded machine; the waits end as soon as their condition holds. */
const WORK_TIMEOUT_MS = 90_000;
// Five app starts (each bounded by APP_READY_TIMEOUT_MS) plus the enrollment chain twice.
jest.setTimeout(600_000);

interface CommandResult {
  code: number;
  stdout: string;
  stderr: string;
}

async function runNode(script: string, args: string[], env: NodeJS.ProcessEnv): Promise<CommandResult> {
  try {
    const { stdout, stderr } = await execFileAsync(process.execPath, [script, ...args], { env, maxBuffer: 16 * 1024 * 1024 });
    return { code: 0, stdout, stderr };
  } catch (error) {
    const failed = error as { code?: number; stdout?: string; stderr?: string };
    if (typeof failed.code !== 'number') throw error;
    return { code: failed.code, stdout: failed.stdout ?? '', stderr: failed.stderr ?? '' };
  }
}

interface StatusReport {
  streams: Array<{ stream: string; groups: Array<{ group: string; lag: number | null }> }>;
  problems: Array<{ kind: string; stream?: string; message: string }>;
}

/** One pipeline of its own: a database, a Redis key prefix, a consumer group and the apps' environment. */
interface Pipeline {
  database: TestDatabase;
  prefix: string;
  group: string;
  env: NodeJS.ProcessEnv;
  apps: RunningApps;
  storeDir: string;
}

const pipelines: Pipeline[] = [];
const extraDatabases: TestDatabase[] = [];
let wrongRedis: DedicatedRedis | undefined;

async function newPipeline(): Promise<Pipeline> {
  const database = await createTestDatabase({ migrations: [outboxMigrations, domainMigrations], poolSize: 2 });
  const storeDir = fs.mkdtempSync(path.join(os.tmpdir(), 'petcover-recipes-docs-'));
  const prefix = uniqueRedisPrefix();
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH,
    DATABASE_URL: database.url,
    REDIS_URL: testRedisUrl(),
    REDIS_KEY_PREFIX: prefix,
    LOG_LEVEL: 'warn',
    AUTH_SECRET: 'recipes-auth-secret-0123456789abcdef',
    SIGNATURE_API_KEY: 'recipes-signature-api-key',
    DOCUMENT_STORE_DIR: storeDir,
  };
  const pipeline = { database, prefix, group: uniqueGroupName('domain'), env, apps: new RunningApps(env), storeDir };
  pipelines.push(pipeline);
  return pipeline;
}

afterAll(async () => {
  const redis = createTestRedis();
  for (const p of pipelines) {
    await p.apps.stopAll();
    await deleteKeysWithPrefix(redis, p.prefix);
    await p.database.drop();
    fs.rmSync(p.storeDir, { recursive: true, force: true });
  }
  redis.disconnect();
  for (const database of extraDatabases) await database.drop();
  await wrongRedis?.destroy();
});

async function startApp(p: Pipeline, name: 'api' | 'publisher' | 'consumer', env: NodeJS.ProcessEnv = {}): Promise<RunningApp> {
  const port = await freePort();
  const app =
    name === 'api'
      ? p.apps.start(name, [path.join(API_DIST, 'main.js')], { PORT: String(port), ...env })
      : name === 'publisher'
        ? p.apps.start(name, [PUBLISHER_MAIN, 'start', '--poll-interval', '1'], { HEALTH_PORT: String(port), ...env })
        : p.apps.start(name, [CONSUMER_MAIN, 'start', '--group', p.group], { HEALTH_PORT: String(port), ...env });
  await p.apps.waitReady(app, port);
  return app;
}

/** simulate-pet-signature-flow --no-wait: the owner's pet, package and the three signature callbacks, nothing awaited. */
async function simulateSignatureFlow(p: Pipeline): Promise<{ owner: string; petId: string }> {
  const owner = randomUUID();
  const simulated = await runNode(path.join(API_DIST, 'commands/simulate-pet-signature-flow.js'), ['--owner-global-user-id', owner, '--no-wait'], p.env);
  expect(simulated).toMatchObject({ code: 0 });
  const petId = /^pet_id: (\S+)$/m.exec(simulated.stdout)?.[1];
  if (!petId) throw new Error(`simulate printed no pet_id: ${simulated.stdout}${simulated.stderr}`);
  return { owner, petId };
}

function checkEnrollment(p: Pipeline, pet: { owner: string; petId: string }, waitSeconds?: number): Promise<CommandResult> {
  const wait = waitSeconds === undefined ? [] : ['--wait', String(waitSeconds)];
  return runNode(path.join(API_DIST, 'commands/check-pet-enrollment.js'), ['--pet-id', pet.petId, '--owner', pet.owner, ...wait], p.env);
}

/** `events <args>` as the on-call person runs it, with the api's environment. */
function events(p: Pipeline, args: string[]): Promise<CommandResult> {
  return runNode(EVENTS_CLI, args, p.env);
}

async function status(p: Pipeline): Promise<{ code: number; report: StatusReport }> {
  const result = await events(p, ['status', '--json']);
  return { code: result.code, report: JSON.parse(result.stdout) as StatusReport };
}

async function waitHealthy(p: Pipeline): Promise<StatusReport> {
  let last: StatusReport | undefined;
  return waitFor(
    async () => {
      const { code, report } = await status(p);
      last = report;
      return code === 0 ? report : null;
    },
    { timeoutMs: WORK_TIMEOUT_MS, intervalMs: 500, description: `events status HEALTHY (last problems: ${JSON.stringify(last?.problems ?? [])})` },
  );
}

/** ISO-8601 time `seconds` ago on the database clock (what `--since` compares with published_at). */
async function databaseTimeAgo(p: Pipeline, seconds: number): Promise<string> {
  const [row] = await p.database.sql<{ at: string }[]>`SELECT to_json(now() - make_interval(secs => ${seconds}))#>>'{}' AS at`;
  return row!.at;
}

async function streamsSince(p: Pipeline, since: string): Promise<string[]> {
  const rows = await p.database.sql<{ stream_name: string }[]>`
    SELECT DISTINCT stream_name FROM events.outbox_event WHERE created_at >= ${since}::timestamptz ORDER BY stream_name`;
  return rows.map((r) => r.stream_name);
}

/** Each stream's entries in the consumers' Redis: outbox ids once each, in increasing order per partition key. */
async function expectStreamsInOrder(p: Pipeline, streams: string[]): Promise<number> {
  const redis = createTestRedis();
  let entries = 0;
  try {
    for (const stream of streams) {
      const raw = (await redis.xrange(redisStreamKey(stream, p.prefix), '-', '+')) as Array<[string, string[]]>;
      const lastByKey = new Map<string, number>();
      for (const [, flat] of raw) {
        const fields = new Map<string, string>();
        for (let i = 0; i < flat.length; i += 2) fields.set(flat[i]!, flat[i + 1]!);
        const outboxId = Number(fields.get('outbox_id'));
        const key = fields.get('partition_key')!;
        if (outboxId <= (lastByKey.get(key) ?? 0)) throw new Error(`${stream}: outbox id ${outboxId} of key ${key} after ${lastByKey.get(key)}`);
        lastByKey.set(key, outboxId);
        entries++;
      }
    }
  } finally {
    redis.disconnect();
  }
  return entries;
}

test('split database: the consumer ran against another database; after its DATABASE_URL is fixed, `events outbox replay` per stream ends ENROLLED and HEALTHY', async () => {
  const p = await newPipeline();
  const elsewhere = await createTestDatabase({ migrations: [outboxMigrations, domainMigrations], poolSize: 1 });
  extraDatabases.push(elsewhere);
  await startApp(p, 'api');
  await startApp(p, 'publisher');
  const misplaced = await startApp(p, 'consumer', { DATABASE_URL: elsewhere.url });

  const since = await databaseTimeAgo(p, 1);
  const pet = await simulateSignatureFlow(p);
  // The consumer takes every event from Redis, in its own database: the approval request is unknown there.
  await waitFor(
    async () => {
      const [row] = await elsewhere.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM events.dead_letter WHERE group_name = ${p.group}`;
      return row!.n >= 1;
    },
    { timeoutMs: WORK_TIMEOUT_MS, description: 'the misplaced consumer dead-letters the signature events in its database' },
  );
  const before = await waitFor(
    async () => {
      const { report } = await status(p);
      return report.problems.some((problem) => problem.kind === 'group_consuming_elsewhere') ? report : null;
    },
    { timeoutMs: WORK_TIMEOUT_MS, description: 'events status names the group consuming elsewhere' },
  );
  expect(before.problems.map((problem) => problem.kind)).toContain('group_consuming_elsewhere');
  expect(await checkEnrollment(p, pet)).toMatchObject({ code: 1, stdout: expect.stringContaining('RESULT: NOT_ENROLLED') });

  // The runbook: give the consumer the api's DATABASE_URL and restart it, then replay each stream since the mistake.
  await p.apps.stop(misplaced);
  await startApp(p, 'consumer');
  // Redis holds nothing more for the group (it acknowledged everything in the other database): the replay is needed.
  expect(await checkEnrollment(p, pet)).toMatchObject({ code: 1, stdout: expect.stringContaining('RESULT: NOT_ENROLLED') });
  const streams = await streamsSince(p, since);
  expect(streams.length).toBeGreaterThan(0);
  for (const stream of streams) {
    const replay = await events(p, ['outbox', 'replay', '--stream', stream, '--since', since]);
    expect(replay).toMatchObject({ code: 0 });
  }

  const checked = await checkEnrollment(p, pet, 90);
  expect(checked).toMatchObject({ code: 0, stdout: expect.stringContaining('RESULT: ENROLLED') });
  const healthy = await waitHealthy(p);
  expect(healthy.problems).toEqual([]);
});

test('wrong REDIS_URL: the publisher appended to another Redis; with the URL fixed and a restart it re-appends what went elsewhere by itself → ENROLLED, in order, HEALTHY', async () => {
  const p = await newPipeline();
  wrongRedis = await startDedicatedRedis();
  await startApp(p, 'api');
  await startApp(p, 'consumer');
  const misplaced = await startApp(p, 'publisher', { REDIS_URL: wrongRedis.url });

  const since = await databaseTimeAgo(p, 1);
  const pet = await simulateSignatureFlow(p);
  // Published — to the other Redis: rows are marked, the consumers never see them.
  await waitFor(
    async () => {
      const [row] = await p.database.sql<{ queued: number; published: number }[]>`
        SELECT count(*) FILTER (WHERE published_at IS NULL)::int AS queued, count(*) FILTER (WHERE published_at IS NOT NULL)::int AS published
        FROM events.outbox_event WHERE created_at >= ${since}::timestamptz`;
      return row!.queued === 0 && row!.published > 0;
    },
    { timeoutMs: WORK_TIMEOUT_MS, description: 'the signature events marked published (in the wrong Redis)' },
  );
  const before = await waitFor(
    async () => {
      const { code, report } = await status(p);
      return code === 1 && report.problems.some((problem) => problem.kind === 'redis_stream_missing' || problem.kind === 'redis_behind_outbox') ? report : null;
    },
    { timeoutMs: WORK_TIMEOUT_MS, description: 'events status says the consumers\' Redis lacks what was recorded' },
  );
  expect(before.problems.every((problem) => ['redis_stream_missing', 'redis_behind_outbox'].includes(problem.kind))).toBe(true);
  expect(await checkEnrollment(p, pet)).toMatchObject({ code: 1, stdout: expect.stringContaining('RESULT: NOT_ENROLLED') });

  // The runbook: give the publisher the consumers' REDIS_URL and restart it. No replay, no redis-cli.
  await p.apps.stop(misplaced);
  const fixed = await startApp(p, 'publisher');

  const checked = await checkEnrollment(p, pet, 90);
  expect(checked).toMatchObject({ code: 0, stdout: expect.stringContaining('RESULT: ENROLLED') });
  const healthy = await waitHealthy(p);
  expect(healthy.problems).toEqual([]);
  expect(fixed.output.join('')).toContain('Redis had lost entries;');
  // Every event since the mistake is in the consumers' Redis once, in outbox-id order per key.
  const streams = await streamsSince(p, since);
  const [row] = await p.database.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM events.outbox_event WHERE created_at >= ${since}::timestamptz`;
  expect(await expectStreamsInOrder(p, streams)).toBe(row!.n);
});
