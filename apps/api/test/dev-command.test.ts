/**
 * `pnpm dev` as a newcomer runs it (the real pnpm, the built apps):
 * SIGTERM or SIGINT to the pnpm process itself stops every child once and
 * exits 0; a healthy start prints no ERROR line; an unreachable Redis or
 * Postgres (refusing, or accepting and never answering) is named, with the
 * fix, within the probes' 3 s bound, before anything starts.
 */
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import net from 'node:net';
import path from 'node:path';
import { domainMigrations } from '@petcover/domain';
import { outboxMigrations } from '@petcover/outbox';
import { createTestDatabase, freePort, testRedisUrl, uniqueGroupName, uniqueRedisPrefix, waitFor, type TestDatabase } from '@petcover/outbox/testing';
import { API_DIST, REPO_ROOT, requireBuiltApps } from './support/built-files';

const DEV_MAIN = path.join(API_DIST, 'commands/dev.js');
requireBuiltApps([DEV_MAIN]);

// pnpm, three apps and their connections start on a loaded CI machine.
jest.setTimeout(180_000);

interface DevRun {
  lines: string[];
  exited: Promise<number | null>;
  pid: number;
}

async function startDev(env: NodeJS.ProcessEnv): Promise<DevRun> {
  const [port, publisherPort, consumerPort] = await Promise.all([freePort(), freePort(), freePort()]);
  const child = spawn('pnpm', ['dev', '--no-demo'], {
    cwd: REPO_ROOT,
    env: {
      ...process.env,
      PORT: String(port),
      DEV_PUBLISHER_HEALTH_PORT: String(publisherPort),
      DEV_CONSUMER_HEALTH_PORT: String(consumerPort),
      REDIS_KEY_PREFIX: uniqueRedisPrefix(),
      CONSUMER_GROUP: uniqueGroupName('dev'),
      LOG_LEVEL: 'info',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const lines: string[] = [];
  for (const stream of [child.stdout, child.stderr]) {
    let rest = '';
    stream.on('data', (chunk: Buffer) => {
      const text = rest + chunk.toString();
      const parts = text.split('\n');
      rest = parts.pop() ?? '';
      lines.push(...parts);
    });
  }
  return { lines, pid: child.pid as number, exited: new Promise((resolve) => child.once('exit', (code) => resolve(code))) };
}

let database: TestDatabase;
beforeAll(async () => {
  database = await createTestDatabase({ migrations: [outboxMigrations, domainMigrations], poolSize: 1 });
});
afterAll(async () => {
  await database?.drop();
});

test.each(['SIGTERM', 'SIGINT'] as const)('%s to the pnpm process stops every app once and exits 0; a healthy start has no ERROR line', async (signal) => {
  const run = await startDev({ DATABASE_URL: database.url, REDIS_URL: testRedisUrl() });
  // The output is read when the wait fails, not when it starts (it was always empty in the message).
  await waitFor(() => run.lines.some((l) => l.includes('running; Ctrl-C stops everything')), {
    timeoutMs: 120_000,
    intervalMs: 200,
    description: 'pnpm dev running',
  }).catch((error: Error) => {
    throw new Error(`${error.message}; output so far:\n${run.lines.join('\n')}`);
  });
  expect(run.lines.find((l) => l.includes('wizard: http://127.0.0.1:'))).toMatch(/sign in: open http:\/\/127\.0\.0\.1:\d+\/dev\/sign-in/);
  expect(run.lines.filter((l) => /\bERROR\b/.test(l))).toEqual([]);

  process.kill(run.pid, signal);
  expect(await run.exited).toBe(0);
  for (const app of ['api', 'publisher', 'consumer']) {
    const own = run.lines.filter((l) => l.startsWith(`[${app}]`));
    expect({ app, stopping: own.filter((l) => / stopping\b/.test(l)).length }).toEqual({ app, stopping: 1 });
    expect({ app, stopped: own.filter((l) => / stopped\b/.test(l)).length }).toEqual({ app, stopped: 1 });
  }
  expect(run.lines).toContain('[dev]        all stopped');
  expect(run.lines.join('\n')).not.toContain('ELIFECYCLE');
});

/** A TCP server that accepts connections and never answers: a host behind a firewall that drops, or the wrong service. */
let silent: net.Server;
let silentPort: number;
beforeAll(async () => {
  const sockets = new Set<net.Socket>();
  silent = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('error', () => undefined);
    socket.on('close', () => sockets.delete(socket));
  });
  silent.on('close', () => sockets.forEach((socket) => socket.destroy()));
  await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
  silentPort = (silent.address() as net.AddressInfo).port;
});
afterAll(async () => {
  silent.close();
});

const REDIS_FIX = 'Start it \\(docker compose up -d redis\\) or set REDIS_URL\\.$';
const POSTGRES_FIX = 'Start it \\(docker compose up -d postgres\\) or set DATABASE_URL\\.$';
test.each([
  ['Redis refusing', () => ({ REDIS_URL: 'redis://127.0.0.1:1/0' }), new RegExp(`^\\[dev\\] +Redis unreachable at redis://127\\.0\\.0\\.1:1/0 \\(connect ECONNREFUSED [^)]+\\)\\. ${REDIS_FIX}`)],
  ['Postgres refusing', () => ({ DATABASE_URL: `postgresql://postgres@127.0.0.1:1/${randomUUID().slice(0, 8)}` }), new RegExp(`^\\[dev\\] +Postgres unreachable at postgresql://postgres@127\\.0\\.0\\.1:1/\\w+ \\(.*ECONNREFUSED.*\\)\\. ${POSTGRES_FIX}`)],
  // The probe's own bound (3 s) names a service that never answers; without it dev waited forever.
  ['Redis silent', () => ({ REDIS_URL: `redis://127.0.0.1:${silentPort}/0` }), new RegExp(`^\\[dev\\] +Redis unreachable at redis://127\\.0\\.0\\.1:\\d+/0 \\(no answer within 3 s\\)\\. ${REDIS_FIX}`)],
  ['Postgres silent', () => ({ DATABASE_URL: `postgresql://postgres@127.0.0.1:${silentPort}/petcover` }), new RegExp(`^\\[dev\\] +Postgres unreachable at postgresql://postgres@127\\.0\\.0\\.1:\\d+/petcover \\((no answer within 3 s|.*CONNECT_TIMEOUT.*)\\)\\. ${POSTGRES_FIX}`)],
])('%s: pnpm dev names it and the fix, starts nothing, exits 1', async (name, env, message) => {
  const started = Date.now();
  const run = await startDev({ DATABASE_URL: database.url, REDIS_URL: testRedisUrl(), ...env() });
  expect(await run.exited).toBe(1);
  // The probes are bounded (3 s) by construction; the wall time, pnpm's start included, is
  // printed for the issue note: a loaded CI machine makes it no assertion.
  process.stdout.write(`pnpm dev with ${name} answered in ${((Date.now() - started) / 1000).toFixed(1)} s\n`);
  expect(run.lines.filter((l) => message.test(l))).toHaveLength(1);
  expect(run.lines.filter((l) => /^\[(api|publisher|consumer)\]/.test(l))).toEqual([]);
});
