#!/usr/bin/env node
/**
 * `petcover-dev [--no-demo]` (root: `pnpm dev`): migrates the database, starts
 * api, events-publisher and events-consumer with prefixed readable logs,
 * waits until all three answer /readyz, runs one demo enrollment end to end
 * (simulate-pet-signature-flow, then check-pet-enrollment --wait) and prints
 * its result, then keeps running. SIGINT/SIGTERM stop every child.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import path from 'node:path';
import readline from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { domainMigrations } from '@petcover/domain';
import { createDatabaseIfMissing, outboxMigrations, runMigrations } from '@petcover/outbox';
import { ConfigError, EXIT_CONFIG, maskUrlPassword } from '@petcover/service-kit';
import { inheritedEnvironment, readApiEnv } from '../env';
import { EXIT_USAGE, parseFlags, UsageError } from './command-line';
import { formatLogLine } from './log-lines';

const REPO_ROOT = path.resolve(__dirname, '..', '..', '..', '..');
/** Start-up budget: migrations are done, so this only covers process boot and connects. */
const READY_TIMEOUT_MS = 60_000;
const STOP_TIMEOUT_MS = 10_000;
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
  const child = spawn(process.execPath, args, { env, stdio: ['ignore', 'pipe', 'pipe'], cwd: REPO_ROOT });
  for (const stream of [child.stdout, child.stderr]) {
    readline.createInterface({ input: stream }).on('line', (line) => {
      onLine?.(line);
      say(name, formatLogLine(line));
    });
  }
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return { name, process: child, exited };
}

async function waitReady(name: string, url: string, child: Child, deadline: number): Promise<void> {
  let exitedEarly = false;
  void child.exited.then(() => (exitedEarly = true));
  while (Date.now() < deadline) {
    if (exitedEarly) throw new Error(`${name} exited before it was ready (see its log above)`);
    try {
      const response = await fetch(url, { signal: AbortSignal.timeout(2000) });
      if (response.ok) return;
    } catch {
      // Not listening yet.
    }
    await sleep(300);
  }
  throw new Error(`${name} not ready at ${url} within ${READY_TIMEOUT_MS / 1000} s`);
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
  const flags = parseFlags(process.argv.slice(2), { values: [], booleans: ['no-demo'] });
  const env = readApiEnv();
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

  let stopping = false;
  const stopAll = async (exitCode: number): Promise<never> => {
    if (!stopping) {
      stopping = true;
      say('dev', 'stopping all processes');
      for (const child of children) if (child.process.exitCode === null) child.process.kill('SIGTERM');
      const forced = setTimeout(() => {
        for (const child of children) if (child.process.exitCode === null) child.process.kill('SIGKILL');
      }, STOP_TIMEOUT_MS);
      await Promise.all(children.map((c) => c.exited));
      clearTimeout(forced);
    }
    process.exit(exitCode);
  };
  for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => void stopAll(0));
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
  say('dev', 'running; Ctrl-C stops everything');
}

main().catch((error: Error) => {
  if (error instanceof UsageError) {
    console.error(`petcover-dev: ${error.message}\nusage: petcover-dev [--no-demo]`);
    process.exit(EXIT_USAGE);
  }
  console.error(`petcover-dev: ${error.message}`);
  process.exit(error instanceof ConfigError ? EXIT_CONFIG : 1);
});
