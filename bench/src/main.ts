#!/usr/bin/env node
/**
 * `pnpm bench [--quick] [--only a,b] [--no-peers] [--cpu-prof] [--out <dir>]`
 *
 * Runs every scenario against a fresh database and Redis key space (both
 * removed at the end), prints the markdown table and writes
 * `<out>/latest.{json,md}` (`quick.{json,md}` with --quick). Exits 1 when a
 * scenario could not run to the end; never for being slow.
 *
 * Env: DATABASE_URL (server to use; the database name is replaced by a fresh
 * one), REDIS_URL (with REDIS_CLUSTER=1 and REDIS_CLUSTER_SEEDS: a Redis Cluster).
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { withDatabaseName } from '@petcover/outbox';
import { DEFAULT_DATABASE_URL, readRedisConnection } from '@petcover/service-kit';
import { createBenchEnvironment, type BenchEnvironment } from './bench-environment';
import { computeGoals } from './goals';
import { findPgbench } from './pgbench';
import { appsAreBuilt, REPO_ROOT, type AppsContext } from './petcover-apps';
import { killStartedProcesses } from './processes';
import { FULL_PROFILE, QUICK_PROFILE, SCENARIOS, type BenchProfile, type ScenarioName } from './profile';
import { peerRatios, renderMarkdown, type BenchResults } from './report';
import type { ScenarioContext } from './scenarios/context';
import { runDrain, runLatency } from './scenarios/end-to-end';
import { runFailover } from './scenarios/failover';
import { runKeepingUp } from './scenarios/keeping-up';
import { measureMachineLimits } from './scenarios/machine-limits';
import { runRelay } from './scenarios/relay';
import { runLive } from './scenarios/live';
import { measureEnqueueClientCpu } from './scenarios/enqueue-cpu';
import { bullmqPostgresSystem, bullmqRedisSystem } from './systems/bullmq';
import { graphileWorkerSystem, pgBossSystem } from './systems/peers';
import { petcoverSystem } from './systems/petcover';
import type { SystemUnderTest } from './systems/system';

interface CliOptions {
  profile: BenchProfile;
  only: Set<ScenarioName>;
  cpuProf: boolean;
  outDir: string;
  /** Replace the quoted table in README.md (full runs only). */
  writeReadme: boolean;
}

export class UsageError extends Error {}

export function parseArgs(argv: readonly string[]): CliOptions {
  let profile = FULL_PROFILE;
  let only = new Set<ScenarioName>(SCENARIOS);
  let cpuProf = false;
  let writeReadme = false;
  let outDir = path.join(REPO_ROOT, 'bench', 'results');
  for (let i = 0; i < argv.length; i += 1) {
    const arg = argv[i];
    if (arg === '--') continue;
    else if (arg === '--quick') profile = QUICK_PROFILE;
    else if (arg === '--cpu-prof') cpuProf = true;
    else if (arg === '--write-readme') writeReadme = true;
    else if (arg === '--no-peers') only.delete('peers');
    else if (arg === '--only' || arg === '--out') {
      const value = argv[++i];
      if (!value) throw new UsageError(`${arg} needs a value`);
      if (arg === '--out') outDir = path.resolve(value);
      else {
        const names = value.split(',').map((s) => s.trim());
        const unknown = names.filter((n) => !(SCENARIOS as readonly string[]).includes(n));
        if (unknown.length > 0) throw new UsageError(`unknown scenario(s) ${unknown.join(', ')}; known: ${SCENARIOS.join(', ')}`);
        only = new Set(names as ScenarioName[]);
      }
    } else throw new UsageError(`unknown argument ${JSON.stringify(arg)}; usage: bench [--quick] [--only ${SCENARIOS.join(',')}] [--no-peers] [--cpu-prof] [--out <dir>] [--write-readme]`);
  }
  if (writeReadme && profile.name !== 'full') throw new UsageError('--write-readme quotes full runs only; drop --quick');
  return { profile, only, cpuProf, outDir, writeReadme };
}

function packageVersion(name: string): string {
  try {
    let dir = path.dirname(require.resolve(name));
    while (dir !== path.dirname(dir)) {
      const file = path.join(dir, 'package.json');
      if (fs.existsSync(file)) {
        const pkg = JSON.parse(fs.readFileSync(file, 'utf8')) as { name?: string; version?: string };
        if (pkg.name === name) return pkg.version ?? '?';
      }
      dir = path.dirname(dir);
    }
  } catch {
    // not installed: reported as unknown
  }
  return 'unknown';
}

async function collectVersions(env: BenchEnvironment): Promise<Record<string, string>> {
  const [pg] = await env.db.sql<{ v: string }[]>`SELECT current_setting('server_version') AS v`;
  const info = await env.redis.info('server');
  let commit = 'unknown';
  try {
    commit = execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: REPO_ROOT, encoding: 'utf8' }).trim();
  } catch {
    // not a git checkout
  }
  return {
    petcover: commit,
    node: process.version,
    postgres: pg?.v ?? 'unknown',
    redis: /redis_version:(\S+)/.exec(info)?.[1] ?? 'unknown',
    'graphile-worker': packageVersion('graphile-worker'),
    'pg-boss': packageVersion('pg-boss'),
    bullmq: packageVersion('bullmq'),
    pgbench: await pgbenchVersion(),
  };
}

async function pgbenchVersion(): Promise<string> {
  try {
    return execFileSync(findPgbench(), ['--version'], { encoding: 'utf8' }).trim().replace(/^pgbench \(PostgreSQL\) /, '').replace(/^pgbench /, '');
  } catch {
    return 'unknown';
  }
}

const README_START = '<!-- bench:latest:start -->';
const README_END = '<!-- bench:latest:end -->';

/**
 * Replaces what lies between the README's bench markers with `markdown`,
 * headings moved two levels down. Throws when the markers are missing.
 */
export function quoteInReadme(readmePath: string, markdown: string): void {
  const readme = fs.readFileSync(readmePath, 'utf8');
  const start = readme.indexOf(README_START);
  const end = readme.indexOf(README_END);
  if (start < 0 || end < start) throw new Error(`${readmePath} lacks the ${README_START} / ${README_END} markers`);
  const quoted = markdown.replace(/^(#+) /gm, '$1## ').trim();
  fs.writeFileSync(readmePath, `${readme.slice(0, start + README_START.length)}\n${quoted}\n${readme.slice(end)}`);
}

async function main(): Promise<number> {
  const options = parseArgs(process.argv.slice(2));
  const { profile } = options;
  const startedAt = Date.now();
  const log = (message: string) => process.stderr.write(`[bench ${((Date.now() - startedAt) / 1000).toFixed(1).padStart(6)} s] ${message}\n`);
  // The bench creates its own databases; it only needs a server to connect to.
  const databaseUrl = process.env.DATABASE_URL || withDatabaseName(DEFAULT_DATABASE_URL, 'postgres');
  const redisConnection = readRedisConnection(process.env);

  const env = await createBenchEnvironment(databaseUrl, redisConnection);
  activeEnvironment = env;
  const logDir = path.join(os.tmpdir(), `petcover-bench-${env.runId}`);
  const apps: AppsContext = {
    databaseUrl: env.databaseUrl,
    redis: redisConnection,
    logDir,
    nodeFlags: options.cpuProf ? ['--cpu-prof', `--cpu-prof-dir=${path.join(options.outDir, 'profiles')}`] : [],
  };
  const ctx: ScenarioContext = { env, profile, apps, log };
  log(`${profile.name} run ${env.runId}: database ${path.basename(new URL(env.databaseUrl).pathname)}, Redis keys bench:${env.runId}:*, process logs in ${logDir}`);

  const cpus = os.cpus();
  const results: BenchResults = {
    date: new Date().toISOString(),
    profile: profile.name,
    durationSeconds: 0,
    machine: {
      cpus: cpus.length,
      cpuModel: cpus[0]?.model.trim() ?? 'unknown',
      memoryGiB: Math.round((os.totalmem() / 1024 ** 3) * 10) / 10,
      os: `${os.type()} ${os.release()}`,
      loadAverageAtStart: os.loadavg(),
    },
    versions: {},
    notes: [],
    limits: null,
    relay: [],
    drain: [],
    latency: [],
    live: [],
    enqueueCpu: null,
    keepingUp: null,
    failover: null,
    memory: null,
    ratios: [],
    goals: [],
    errors: [],
  };
  if (profile.name === 'quick') {
    results.notes.push('Quick run: small counts and short windows to check the harness end to end; do not quote these figures.');
  }
  if (results.machine.loadAverageAtStart[0]! > 0.5 * cpus.length) {
    results.notes.push(
      `The machine was already busy when the run started (1-minute load ${results.machine.loadAverageAtStart[0]!.toFixed(2)} on ${cpus.length} cores): figures are noisy and low.`,
    );
  }

  const attempt = async (scenario: string, body: () => Promise<void>) => {
    log(`${scenario}…`);
    try {
      await body();
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      log(`${scenario} failed: ${message}`);
      results.errors.push({ scenario, message });
    }
  };
  const built = appsAreBuilt();
  const ours = async (scenario: string, body: () => Promise<void>) => {
    if (!built.ok) results.errors.push({ scenario, message: `skipped: ${built.reason}` });
    else await attempt(scenario, body);
  };
  const petcover = (scenario: string) => petcoverSystem(env, apps, scenario, profile.petcover);
  const peerSettings = { concurrency: profile.peers.concurrency, logDir, nodeFlags: apps.nodeFlags };
  const peers = () => [
    graphileWorkerSystem(env, peerSettings),
    pgBossSystem(env, { ...peerSettings, batchSize: profile.peers.pgBossBatchSize }),
    ...(redisConnection.cluster ? [] : [bullmqRedisSystem(env, peerSettings)]),
    bullmqPostgresSystem(env, peerSettings),
  ];
  if (redisConnection.cluster) results.notes.push('BullMQ was not run: on REDIS_CLUSTER=1 it needs a hash-tagged key prefix, which the run key space does not have.');
  const live = async (system: SystemUnderTest) => {
    for (const rate of profile.liveRates) await attempt(`${system.name} live at ${rate}/s`, async () => void results.live.push(await runLive(ctx, system, rate)));
  };

  try {
    results.versions = await collectVersions(env);
    if (options.only.has('limits')) await attempt('machine limits', async () => void (results.limits = await measureMachineLimits(env, profile, log)));
    if (options.only.has('relay')) {
      for (const streams of profile.relayStreamCounts) await ours(`relay (${streams} streams)`, async () => void results.relay.push(await runRelay(ctx, streams)));
    }
    if (options.only.has('drain')) {
      await ours('end-to-end drain', async () => {
        const drain = await runDrain(ctx, petcover('drain'));
        results.drain.push(drain);
        const rss = Object.entries(drain.peakRssMiB);
        results.memory = {
          publisherPeakRssMiB: rss.find(([name]) => name.endsWith('publisher'))?.[1] ?? null,
          consumerPeakRssMiB: rss.find(([name]) => name.endsWith('consumer'))?.[1] ?? null,
        };
      });
      await ours('end-to-end drain (per-event handler)', async () => {
        results.drain.push(await runDrain(ctx, petcoverSystem(env, apps, 'drain', { ...profile.petcover, handler: 'per-event' })));
      });
    }
    if (options.only.has('latency')) {
      await ours('latency', async () => void results.latency.push(await runLatency(ctx, petcover('latency'))));
      await ours('latency (unsaturated)', async () => void results.latency.push(await runLatency(ctx, petcover('latency'), profile.unsaturatedLatencyRatePerSec)));
      await attempt('enqueue client CPU', async () => void (results.enqueueCpu = await measureEnqueueClientCpu(ctx, profile.enqueueCpuCalls)));
      if (built.ok) await live(petcover('live'));
      else results.errors.push({ scenario: 'petcover live', message: `skipped: ${built.reason}` });
    }
    if (options.only.has('keeping-up')) await ours('keeping up', async () => void (results.keepingUp = await runKeepingUp(ctx, petcover('keepingup'))));
    if (options.only.has('failover')) await ours('failover', async () => void (results.failover = await runFailover(ctx)));
    if (options.only.has('peers')) {
      for (const peer of peers()) {
        if (options.only.has('drain')) await attempt(`${peer.name} drain`, async () => void results.drain.push(await runDrain(ctx, peer)));
        if (options.only.has('latency')) await live(peer);
      }
    }
  } finally {
    await env.destroy().catch((error: unknown) => log(`cleanup failed: ${error instanceof Error ? error.message : String(error)}`));
  }

  results.ratios = peerRatios(results.drain, results.live, profile.latencyRatePerSec);
  results.goals = computeGoals(results, profile.latencyRatePerSec);
  results.durationSeconds = (Date.now() - startedAt) / 1000;
  const markdown = renderMarkdown(results);
  fs.mkdirSync(options.outDir, { recursive: true });
  const base = profile.name === 'full' ? 'latest' : 'quick';
  fs.writeFileSync(path.join(options.outDir, `${base}.json`), `${JSON.stringify(results, null, 2)}\n`);
  fs.writeFileSync(path.join(options.outDir, `${base}.md`), `${markdown}\n`);
  process.stdout.write(`${markdown}\n`);
  if (options.writeReadme) {
    quoteInReadme(path.join(REPO_ROOT, 'README.md'), markdown);
    log('quoted the table in README.md');
  }
  log(`wrote ${path.join(options.outDir, `${base}.json`)} and ${base}.md`);
  return results.errors.length > 0 ? 1 : 0;
}

/** The run's database and key space, removed even when the run is interrupted. */
let activeEnvironment: BenchEnvironment | undefined;

if (require.main === module) {
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.once(signal, () => {
      killStartedProcesses();
      void (activeEnvironment?.destroy() ?? Promise.resolve()).finally(() => process.exit(130));
    });
  }
  main().then(
    (code) => process.exit(code),
    (error: unknown) => {
      killStartedProcesses();
      console.error(error instanceof UsageError ? `bench: ${error.message}` : error);
      process.exit(error instanceof UsageError ? 64 : 1);
    },
  );
}
