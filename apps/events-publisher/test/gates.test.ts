/**
 * The operating gates of events-publisher, on the built process (`pnpm build` first):
 * strict config exits 78 with one line, `/readyz` names a dead Redis within
 * 2 s, `/readyz` is 200 when everything is up, and a DATABASE_URL password
 * never reaches the logs.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import { outboxMigrations } from '@petcover/outbox';
import { createTestDatabase, createTestRedis, freePort, uniqueRedisPrefix, waitFor, type TestDatabase } from '@petcover/outbox/testing';

const MAIN = path.join(__dirname, '..', 'dist', 'main.js');
const PASSWORD = 'gates-Secret-pw-4242';

interface Spawned {
  child: ChildProcess;
  port: number;
  output: () => string;
  stderr: () => string;
  exited: Promise<number | null>;
}

let testDb: TestDatabase;
const keyPrefix = uniqueRedisPrefix();
const children = new Set<ChildProcess>();

beforeAll(async () => {
  testDb = await createTestDatabase({ migrations: [outboxMigrations] });
});
afterAll(async () => {
  for (const child of children) child.kill('SIGKILL');
  const redis = createTestRedis();
  const keys = await redis.keys(`*${keyPrefix}*`);
  if (keys.length > 0) await redis.del(...keys);
  redis.disconnect();
  await testDb.drop();
});

/** The test database's URL with an explicit user and a password (the local server trusts, so any password works). */
function urlWithPassword(): string {
  const url = new URL(testDb.url);
  url.username = 'postgres';
  url.password = PASSWORD;
  return url.toString();
}

async function spawnApp(env: Record<string, string>): Promise<Spawned> {
  const port = await freePort();
  const child = spawn(process.execPath, [MAIN, ...['start']], {
    env: { PATH: process.env.PATH ?? '', HEALTH_PORT: String(port), ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.add(child);
  let out = '';
  let err = '';
  child.stdout!.on('data', (chunk: Buffer) => (out += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (err += chunk.toString()));
  const exited = new Promise<number | null>((resolve) =>
    child.once('exit', (code) => {
      children.delete(child);
      resolve(code);
    }),
  );
  return { child, port, output: () => out + err, stderr: () => err, exited };
}

async function get(port: number, route: string): Promise<{ status: number; body: string; ms: number }> {
  const started = Date.now();
  const res = await fetch(`http://127.0.0.1:${port}${route}`);
  return { status: res.status, body: await res.text(), ms: Date.now() - started };
}

describe('events-publisher gates', () => {
  test.each([
    ['CI_STRICT=1 without REDIS_URL', { CI_STRICT: '1', DATABASE_URL: 'postgresql://127.0.0.1:5432/x' }, 'REDIS_URL'],
    ['NODE_ENV=production without DATABASE_URL', { NODE_ENV: 'production', REDIS_URL: 'redis://127.0.0.1:6379/0' }, 'DATABASE_URL'],
  ])('strict mode, %s: exit 78 with a one-line reason naming it', async (_name, env, missing) => {
    const app = await spawnApp(env);
    expect(await app.exited).toBe(78);
    const lines = app.stderr().trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toContain(`${missing} must be set`);
  });

  test('Redis at a closed port: /readyz 503 within 2 s naming redis; the DATABASE_URL password never appears in the logs', async () => {
    const closedPort = await freePort();
    const app = await spawnApp({ DATABASE_URL: urlWithPassword(), REDIS_URL: `redis://127.0.0.1:${closedPort}/0`, LOG_LEVEL: 'debug', REDIS_KEY_PREFIX: keyPrefix });
    await waitFor(async () => (await get(app.port, '/healthz')).status === 200, { timeoutMs: 20_000, description: `events-publisher /healthz (output: ${app.output().slice(0, 400)})` });
    const ready = await get(app.port, '/readyz');
    expect(ready.status).toBe(503);
    expect(ready.ms).toBeLessThan(2_000);
    const body = JSON.parse(ready.body) as { status: string; checks: Record<string, { ok: boolean; detail?: string }> };
    expect(body.status).toBe('fail');
    expect(body.checks.redis).toMatchObject({ ok: false, detail: expect.any(String) });
    expect(body.checks.db).toMatchObject({ ok: true });

    app.child.kill('SIGTERM');
    await app.exited;
    // The start line names the database it uses, masked.
    expect(app.output()).toContain('postgres:***@');
    expect(app.output()).not.toContain(PASSWORD);
  });

  test('Postgres, Redis and migrations at head: /readyz 200; /healthz and /metrics served; SIGTERM exits 0', async () => {
    const app = await spawnApp({ DATABASE_URL: testDb.url, REDIS_URL: process.env.TEST_REDIS_URL || process.env.REDIS_URL || 'redis://127.0.0.1:6379/0', REDIS_KEY_PREFIX: keyPrefix });
    await waitFor(async () => (await get(app.port, '/readyz')).status === 200, { timeoutMs: 20_000, description: `events-publisher /readyz 200 (output: ${app.output().slice(0, 400)})` });
    expect((await get(app.port, '/healthz')).status).toBe(200);
    const metrics = await get(app.port, '/metrics');
    expect(metrics.status).toBe(200);
    expect(metrics.body).toContain('# TYPE');
    app.child.kill('SIGTERM');
    expect(await app.exited).toBe(0);
  });
});
