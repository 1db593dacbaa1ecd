#!/usr/bin/env node
/**
 * `petcover-dev [--no-demo]` (root: `pnpm dev`): migrates the database, starts
 * api, events-publisher and events-consumer with prefixed readable logs,
 * waits until all three answer /readyz, runs one demo enrollment end to end
 * (simulate-pet-signature-flow, then check-pet-enrollment --wait) and prints
 * its result, then keeps running. SIGINT/SIGTERM (or the parent going away)
 * stop every child once, then exit 0. The root script `exec`s this process,
 * so a signal to `pnpm dev` itself reaches it.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import path from 'node:path';
import readline from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { domainMigrations } from '@petcover/domain';
import { createDatabaseIfMissing, outboxMigrations, runMigrations, withDatabaseName } from '@petcover/outbox';
import { ConfigError, EXIT_CONFIG, maskUrlPassword } from '@petcover/service-kit';
import Redis from 'ioredis';
import postgres from 'postgres';
import { inheritedEnvironment, readApiEnv, type ApiEnv } from '../env';
import { EXIT_USAGE, parseFlags, UsageError } from './command-line';
import { formatLogLine } from './log-lines';

const USAGE = 'usage: petcover-dev [--no-demo]';
const REPO_ROOT = path.resolve(__dirname, '..', '..', '..', '..');
/** Start-up budget: migrations are done, so this only covers process boot and connects. */
const READY_TIMEOUT_MS = 60_000;
const STOP_TIMEOUT_MS = 10_000;
/** How often to check that the parent process is still there. */
const PARENT_CHECK_MS = 1_000;
/** Boot normally takes a few seconds; past this, say which check fails. */
const EXPLAIN_NOT_READY_AFTER_MS = 8_000;
const DEMO_WAIT_SECONDS = 60;

const useColour = process.stdout.isTTY;
const COLOURS: Record<string, string> = { api: '36', publisher: '35', consumer: '33', demo: '32', dev: '1' };

function say(name: string, line: string): void {
  const label = `[${name}]`.padEnd(12);
  const colour = COLOURS[name];
  console.log(useColour && colour ? `\x1b[${colour}m${label}\x1b[0m ${line}` : `${label} ${line}`);
}

interface Child {
  name: string;
  process: ChildProcess;
  exited: Promise<number | null>;
}

function startChild(name: string, args: string[], env: NodeJS.ProcessEnv, onLine?: (line: string) => void): Child {
  // detached: a process group of its own, so a terminal's Ctrl-C reaches only
  // this process, which stops each child once (instead of each child getting
  // SIGINT from the terminal and SIGTERM from here, and logging both).
  const child = spawn(process.execPath, args, { env, stdio: ['ignore', 'pipe', 'pipe'], cwd: REPO_ROOT, detached: true });
  for (const stream of [child.stdout, child.stderr]) {
    readline.createInterface({ input: stream }).on('line', (line) => {
      onLine?.(line);
      say(name, formatLogLine(line));
    });
  }
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return { name, process: child, exited };
}

/** The failing checks of a /readyz answer, e.g. `redis: connect ECONNREFUSED 127.0.0.1:6379`; undefined when ready. */
async function failingChecks(url: string): Promise<string | undefined> {
  try {
    const response = await fetch(url, { signal: AbortSignal.timeout(2000) });
    if (response.ok) return undefined;
    const report = (await response.json()) as { checks?: Record<string, { ok: boolean; detail?: string }> };
    const failing = Object.entries(report.checks ?? {}).filter(([, check]) => !check.ok);
    return failing.map(([name, check]) => `${name}: ${check.detail ?? 'failing'}`).join('; ') || `answers ${response.status}`;
  } catch (error) {
    return `not answering (${(error as Error).message})`;
  }
}

async function waitReady(name: string, url: string, child: Child, deadline: number): Promise<void> {
  let exitedEarly = false;
  void child.exited.then(() => (exitedEarly = true));
  // Polling /readyz is expected to fail while the app boots; say why only once, if it lasts.
  const explainAt = Date.now() + EXPLAIN_NOT_READY_AFTER_MS;
  let explained = false;
  while (Date.now() < deadline) {
    if (exitedEarly) throw new Error(`${name} exited before it was ready (see its log above)`);
    try {
      const response = await fetch(url, { signal: AbortSignal.timeout(2000) });
      if (response.ok) return;
    } catch {
      // Not listening yet.
    }
    if (!explained && Date.now() >= explainAt) {
      const failing = await failingChecks(url);
      if (failing === undefined) return;
      explained = true;
      say('dev', `${name} not ready yet: ${failing}`);
    }
    await sleep(300);
  }
  throw new Error(`${name} not ready at ${url} within ${READY_TIMEOUT_MS / 1000} s: ${(await failingChecks(url)) ?? 'ready just now'}`);
}

/**
 * Bound of each reachability probe, connect and first answer together, so a
 * missing service is named within seconds, also when its host accepts the
 * connection and never answers (a firewall, a wrong port on a busy host).
 */
const PROBE_TIMEOUT_S = 3;

/**
 * `ask` resolves when the service answered; whatever else happens within
 * PROBE_TIMEOUT_S becomes the problem line `describe` makes of it. `close`
 * always runs, so a silent socket does not keep the process alive.
 */
async function probeService(ask: () => Promise<unknown>, close: () => Promise<void> | void, describe: (cause: string) => string): Promise<string | undefined> {
  const deadline = new AbortController();
  const silent = sleep(PROBE_TIMEOUT_S * 1000, 'silent', { signal: deadline.signal }).catch(() => undefined);
  try {
    const answer = await Promise.race([ask().then(() => 'answered' as const), silent]);
    return answer === 'answered' ? undefined : describe(`no answer within ${PROBE_TIMEOUT_S} s`);
  } catch (error) {
    return describe((error as Error).message);
  } finally {
    deadline.abort();
    await close();
  }
}

/**
 * Checks that Postgres and Redis answer before anything starts; returns one
 * line per unreachable service naming it, its URL and the fix.
 */
async function findUnreachableServices(env: ApiEnv): Promise<string[]> {
  const postgresProbe = () => {
    const sql = postgres(withDatabaseName(env.DATABASE_URL, 'postgres'), { max: 1, connect_timeout: PROBE_TIMEOUT_S, onnotice: () => undefined });
    return probeService(
      () => sql`SELECT 1`,
      () => sql.end({ timeout: 0 }).catch(() => undefined),
      (cause) => `Postgres unreachable at ${maskUrlPassword(env.DATABASE_URL)} (${cause}). Start it (docker compose up -d postgres) or set DATABASE_URL.`,
    );
  };
  const redisProbe = () => {
    const redis = new Redis(env.REDIS_URL, { lazyConnect: true, connectTimeout: PROBE_TIMEOUT_S * 1000, maxRetriesPerRequest: 0, retryStrategy: () => null });
    // connect() rejects with a generic "Connection is closed."; the error event has the cause (ECONNREFUSED, ...).
    let cause: Error | undefined;
    redis.on('error', (error: Error) => (cause ??= error));
    return probeService(
      async () => {
        await redis.connect();
        await redis.ping();
      },
      () => redis.disconnect(),
      (message) => `Redis unreachable at ${maskUrlPassword(env.REDIS_URL)} (${cause?.message ?? message}). Start it (docker compose up -d redis) or set REDIS_URL.`,
    );
  };
  const problems = await Promise.all([postgresProbe(), redisProbe()]);
  return problems.filter((p): p is string => p !== undefined);
}

async function runDemo(env: NodeJS.ProcessEnv): Promise<boolean> {
  const owner = randomUUID();
  say('dev', `demo: enrolling a pet for owner ${owner}`);
  let petId: string | undefined;
  const simulate = startChild('demo', [path.join(__dirname, 'simulate-pet-signature-flow.js'), '--owner-global-user-id', owner], env, (line) => {
    const match = /^pet_id: (\S+)$/.exec(line);
    if (match) petId = match[1];
  });
  if ((await simulate.exited) !== 0 || !petId) return false;
  const check = startChild('demo', [path.join(__dirname, 'check-pet-enrollment.js'), '--pet-id', petId, '--owner', owner, '--wait', String(DEMO_WAIT_SECONDS)], env);
  return (await check.exited) === 0;
}

async function main(): Promise<void> {
  const flags = parseFlags(process.argv.slice(2), { values: [], booleans: ['no-demo'], usage: USAGE });
  const env = readApiEnv();
  const unreachable = await findUnreachableServices(env);
  if (unreachable.length > 0) {
    for (const problem of unreachable) say('dev', problem);
    // At once: a probe's socket to a host that never answers may take seconds more to close.
    process.exit(1);
  }
  say('dev', `migrating ${maskUrlPassword(env.DATABASE_URL)}`);
  await createDatabaseIfMissing(env.DATABASE_URL);
  await runMigrations(env.DATABASE_URL, [outboxMigrations, domainMigrations]);

  const base = inheritedEnvironment();
  const publisherHealthPort = env.DEV_PUBLISHER_HEALTH_PORT;
  const consumerHealthPort = env.DEV_CONSUMER_HEALTH_PORT;
  const children = [
    startChild('api', [path.join(REPO_ROOT, 'apps/api/dist/main.js')], { ...base, PORT: String(env.PORT) }),
    startChild('publisher', [path.join(REPO_ROOT, 'apps/events-publisher/dist/main.js'), 'start'], { ...base, HEALTH_PORT: String(publisherHealthPort) }),
    startChild('consumer', [path.join(REPO_ROOT, 'apps/events-consumer/dist/main.js'), 'start'], { ...base, HEALTH_PORT: String(consumerHealthPort) }),
  ];

  let stopping: Promise<never> | undefined;
  // Memoised: a second signal or a child exiting meanwhile changes nothing.
  const stopAll = (exitCode: number): Promise<never> =>
    (stopping ??= (async () => {
      say('dev', 'stopping all processes');
      for (const child of children) if (child.process.exitCode === null) child.process.kill('SIGTERM');
      const forced = setTimeout(() => {
        for (const child of children) if (child.process.exitCode === null) child.process.kill('SIGKILL');
      }, STOP_TIMEOUT_MS);
      await Promise.all(children.map((c) => c.exited));
      clearTimeout(forced);
      say('dev', 'all stopped');
      process.exit(exitCode);
    })());
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(signal, () => void stopAll(0));
  // The parent (pnpm, a terminal) gone without a signal to us, e.g. SIGKILLed: stop too, leaving no orphans.
  const parent = process.ppid;
  setInterval(() => {
    if (process.ppid !== parent) void stopAll(0);
  }, PARENT_CHECK_MS).unref();
  for (const child of children) {
    void child.exited.then((code) => {
      if (stopping) return;
      say('dev', `${child.name} exited with code ${code}; stopping the others`);
      void stopAll(1);
    });
  }

  const deadline = Date.now() + READY_TIMEOUT_MS;
  try {
    await Promise.all([
      waitReady('api', `http://127.0.0.1:${env.PORT}/readyz`, children[0] as Child, deadline),
      waitReady('publisher', `http://127.0.0.1:${publisherHealthPort}/readyz`, children[1] as Child, deadline),
      waitReady('consumer', `http://127.0.0.1:${consumerHealthPort}/readyz`, children[2] as Child, deadline),
    ]);
  } catch (error) {
    say('dev', (error as Error).message);
    await stopAll(1);
  }
  say('dev', `all ready: api http://127.0.0.1:${env.PORT}, publisher :${publisherHealthPort}/readyz, consumer :${consumerHealthPort}/readyz`);

  if (!flags.get('no-demo')) {
    const enrolled = await runDemo(base);
    say('dev', enrolled ? 'demo enrollment: ENROLLED end to end' : 'demo enrollment FAILED (see the [demo] lines above)');
  }
  say('dev', `wizard: http://127.0.0.1:${env.PORT}/  (sign in: open http://127.0.0.1:${env.PORT}/dev/sign-in and press "Sign in")`);
  say('dev', 'running; Ctrl-C stops everything');
}

main().catch((error: Error) => {
  if (error instanceof UsageError) {
    console.error(`petcover-dev: ${error.message}\n${USAGE}`);
    process.exit(EXIT_USAGE);
  }
  console.error(`petcover-dev: ${error.message}`);
  process.exit(error instanceof ConfigError ? EXIT_CONFIG : 1);
});
