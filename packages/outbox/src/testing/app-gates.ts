/**
 * The operating gates every app must pass, as one shared conformance suite
 * run against the built process (`pnpm build` first): strict config exits 78
 * with one line naming what is missing, `/readyz` names a dead Redis within
 * 2 s, `/readyz` is 200 when Postgres, Redis and migrations are fine, a
 * DATABASE_URL password never reaches the logs, and SIGTERM exits 0. On a
 * real Redis Cluster: ready with REDIS_CLUSTER=1, not ready (naming the
 * setting) without it; a REDIS_KEY_PREFIX with a brace exits 78.
 */
import type { ChildProcess } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, test } from '@jest/globals';
import type { MigrationSet } from '../migrations';
import { deleteKeysWithPrefix } from '../publisher/redis-scripts';
import { createTestDatabase, createTestRedis, freePort, testRedisUrl, uniqueRedisPrefix, waitFor, type TestDatabase } from './index';
import { spawnNodeProcess, type CapturedProcess } from './built-apps';
import { startRedisCluster, type DedicatedRedisCluster } from './redis-cluster';

export interface AppGatesOptions {
  /** App name, as it prefixes its one-line config errors. */
  name: string;
  /** Absolute path of the built `dist/main.js`. */
  main: string;
  args: string[];
  /** Env var of the port serving /healthz and /readyz (`HEALTH_PORT`, or `PORT` for the api). */
  portVariable: string;
  migrations: readonly MigrationSet[];
  /** Extra env of every run (e.g. a consumer group). */
  env?: Record<string, string>;
  /**
   * Whether Redis down makes the app not ready (default true). The api serves
   * owners without Redis, so it reports Redis as a non-blocking check instead.
   */
  redisBlocksReadiness?: boolean;
}

const PASSWORD = 'gates-Secret-pw-4242';

interface SpawnedApp extends CapturedProcess {
  port: number;
}

export function describeAppGates(options: AppGatesOptions): void {
  let testDb: TestDatabase;
  const keyPrefix = uniqueRedisPrefix();
  const children = new Set<ChildProcess>();

  beforeAll(async () => {
    testDb = await createTestDatabase({ migrations: options.migrations });
  });
  afterAll(async () => {
    for (const child of children) child.kill('SIGKILL');
    const redis = createTestRedis();
    await deleteKeysWithPrefix(redis, keyPrefix);
    redis.disconnect();
    await testDb.drop();
  });

  /** The test database's URL with a user and a password (the local server trusts, so any password works). */
  function urlWithPassword(): string {
    const url = new URL(testDb.url);
    url.username = 'postgres';
    url.password = PASSWORD;
    return url.toString();
  }

  async function spawnApp(env: Record<string, string>): Promise<SpawnedApp> {
    const port = await freePort();
    const app = spawnNodeProcess(
      [options.main, ...options.args],
      { [options.portVariable]: String(port), REDIS_KEY_PREFIX: keyPrefix, ...options.env, ...env },
      children,
    );
    return { ...app, port };
  }

  async function get(port: number, route: string): Promise<{ status: number; body: string; ms: number }> {
    const started = Date.now();
    const res = await fetch(`http://127.0.0.1:${port}${route}`);
    return { status: res.status, body: await res.text(), ms: Date.now() - started };
  }

  describe(`${options.name} gates`, () => {
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

    const redisBlocks = options.redisBlocksReadiness ?? true;
    test(`Redis at a closed port: /readyz ${redisBlocks ? '503' : '200'} within 2 s naming redis; the DATABASE_URL password never appears in the logs`, async () => {
      const closedPort = await freePort();
      const app = await spawnApp({ DATABASE_URL: urlWithPassword(), REDIS_URL: `redis://127.0.0.1:${closedPort}/0`, LOG_LEVEL: 'debug' });
      await waitFor(async () => (await get(app.port, '/healthz')).status === 200, {
        timeoutMs: 20_000,
        description: `${options.name} /healthz (output: ${app.output().slice(0, 400)})`,
      });
      const ready = await get(app.port, '/readyz');
      expect(ready.status).toBe(redisBlocks ? 503 : 200);
      expect(ready.ms).toBeLessThan(2_000);
      const body = JSON.parse(ready.body) as { status: string; checks: Record<string, { ok: boolean; detail?: string }> };
      expect(body.status).toBe(redisBlocks ? 'fail' : 'ok');
      expect(body.checks.redis).toMatchObject({ ok: false, detail: expect.any(String), ...(redisBlocks ? {} : { blocking: false }) });
      expect(body.checks.db).toMatchObject({ ok: true });

      app.child.kill('SIGTERM');
      await app.exited;
      // The start line names the database it uses, masked.
      expect(app.output()).toContain('postgres:***@');
      expect(app.output()).not.toContain(PASSWORD);
    });

    test('REDIS_KEY_PREFIX with a brace (it would split hash tags over cluster slots): exit 78 naming it', async () => {
      const app = await spawnApp({ DATABASE_URL: testDb.url, REDIS_URL: testRedisUrl(), REDIS_KEY_PREFIX: 'tenant{a}:' });
      expect(await app.exited).toBe(78);
      const lines = app.stderr().trim().split('\n');
      expect(lines).toHaveLength(1);
      expect(lines[0]).toMatch(/REDIS_KEY_PREFIX.*must not contain \{ or \}/);
    });

    describe('on a Redis Cluster (3 masters + 3 replicas)', () => {
      let cluster: DedicatedRedisCluster;
      beforeAll(async () => {
        cluster = await startRedisCluster();
      }, 120_000);
      afterAll(async () => {
        await cluster?.destroy();
      });

      test('REDIS_CLUSTER=1 with the seeds: /readyz 200 (CLUSTER INFO ok); SIGTERM exits 0', async () => {
        const app = await spawnApp({ DATABASE_URL: testDb.url, ...cluster.env });
        await waitFor(async () => (await get(app.port, '/readyz')).status === 200, {
          timeoutMs: 20_000,
          description: `${options.name} /readyz 200 on the cluster (output: ${app.output().slice(0, 400)})`,
        });
        app.child.kill('SIGTERM');
        expect(await app.exited).toBe(0);
      });

      test(`a cluster node as REDIS_URL without REDIS_CLUSTER=1: /readyz ${redisBlocks ? '503' : '200'}, its redis check saying to set it`, async () => {
        const app = await spawnApp({ DATABASE_URL: testDb.url, REDIS_URL: cluster.url });
        await waitFor(async () => (await get(app.port, '/healthz')).status === 200, {
          timeoutMs: 20_000,
          description: `${options.name} /healthz (output: ${app.output().slice(0, 400)})`,
        });
        const body = await waitFor(
          async () => {
            const ready = await get(app.port, '/readyz');
            return ready.status === (redisBlocks ? 503 : 200) && ready.body.includes('REDIS_CLUSTER=1') ? ready.body : null;
          },
          { timeoutMs: 10_000, description: `${options.name} /readyz naming REDIS_CLUSTER=1` },
        );
        expect(JSON.parse(body).checks.redis).toMatchObject({ ok: false, detail: 'REDIS_URL is a Redis Cluster node: set REDIS_CLUSTER=1' });
        app.child.kill('SIGTERM');
        await app.exited;
      });
    });

    test('Postgres, Redis and migrations at head: /readyz 200; /healthz and /metrics served; SIGTERM exits 0', async () => {
      const app = await spawnApp({ DATABASE_URL: testDb.url, REDIS_URL: testRedisUrl() });
      await waitFor(async () => (await get(app.port, '/readyz')).status === 200, {
        timeoutMs: 20_000,
        description: `${options.name} /readyz 200 (output: ${app.output().slice(0, 400)})`,
      });
      expect((await get(app.port, '/healthz')).status).toBe(200);
      const metrics = await get(app.port, '/metrics');
      expect(metrics.status).toBe(200);
      expect(metrics.body).toContain('# TYPE');
      app.child.kill('SIGTERM');
      expect(await app.exited).toBe(0);
    });
  });
}
