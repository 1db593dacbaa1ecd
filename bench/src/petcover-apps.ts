/**
 * Starting our own apps for a scenario: the built `events-publisher` and
 * `events-consumer` (dist/main.js), exactly as an operator runs them.
 */
import fs from 'node:fs';
import path from 'node:path';
import { formatStreamPartitions } from '@petcover/outbox';
import { redisConnectionEnv, type RedisConnection } from '@petcover/service-kit';
import type { BenchHandlerMode } from './handler-module';
import { freePort } from '@petcover/outbox/testing';
import { startProcess, type ManagedProcess } from './processes';

/** The monorepo root, seen from bench/dist or bench/src. */
export const REPO_ROOT = path.resolve(__dirname, '..', '..');
export const PUBLISHER_MAIN = path.join(REPO_ROOT, 'apps/events-publisher/dist/main.js');
export const CONSUMER_MAIN = path.join(REPO_ROOT, 'apps/events-consumer/dist/main.js');
/** Compiled handler module; exists once the bench package is built. */
export const BENCH_HANDLER_MODULE = path.join(REPO_ROOT, 'bench/dist/handler-module.js');

/** Node flags of the publisher and consumer, as their Dockerfiles run them. */
export const APP_NODE_FLAGS = ['--max-semi-space-size=4'];

export interface AppsContext {
  databaseUrl: string;
  redis: RedisConnection;
  logDir: string;
  /** Node flags for every app process (e.g. `--cpu-prof --cpu-prof-dir=...`). */
  nodeFlags: string[];
}

/** `{a: 4, b: 1}` → `a=4,b=1`, the STREAM_PARTITIONS format. */
export interface PublisherOptions {
  name: string;
  redisPrefix: string;
  partitions: Record<string, number>;
  batchSize: number;
  pollIntervalSeconds: number;
  leaseTtlSeconds: number;
}

/** One of our apps: `start` with warn-level logs, a free health port (readiness), the shared env and node flags. */
async function startApp(
  ctx: AppsContext,
  app: { name: string; script: string; args: string[]; redisPrefix: string; partitions: Record<string, number>; env?: Record<string, string> },
): Promise<ManagedProcess> {
  const healthPort = await freePort();
  return startProcess({
    name: app.name,
    script: app.script,
    args: ['start', '--log-level', 'warn', ...app.args],
    env: {
      DATABASE_URL: ctx.databaseUrl,
      ...redisConnectionEnv(ctx.redis),
      HEALTH_PORT: String(healthPort),
      REDIS_KEY_PREFIX: app.redisPrefix,
      STREAM_PARTITIONS: formatStreamPartitions(app.partitions),
      LOG_LEVEL: 'warn',
      ...app.env,
    },
    readiness: { healthPort },
    logDir: ctx.logDir,
    nodeFlags: [...APP_NODE_FLAGS, ...ctx.nodeFlags],
  });
}

export function startPublisher(ctx: AppsContext, options: PublisherOptions): Promise<ManagedProcess> {
  return startApp(ctx, {
    name: options.name,
    script: PUBLISHER_MAIN,
    args: [
      '--poll-interval', String(options.pollIntervalSeconds),
      '--batch-size', String(options.batchSize),
      '--lease-ttl', String(options.leaseTtlSeconds),
    ],
    redisPrefix: options.redisPrefix,
    partitions: options.partitions,
  });
}

export interface ConsumerOptions {
  name: string;
  redisPrefix: string;
  group: string;
  concurrency: number;
  partitions: Record<string, number>;
  /** Entries per read and per transaction; the app's default when absent. */
  batchSize?: number;
  /** The bench handler's form (default batch). */
  handler?: BenchHandlerMode;
}

export function startConsumer(ctx: AppsContext, options: ConsumerOptions): Promise<ManagedProcess> {
  return startApp(ctx, {
    name: options.name,
    script: CONSUMER_MAIN,
    args: [
      '--group', options.group,
      '--concurrency', String(options.concurrency),
      '--module', BENCH_HANDLER_MODULE,
      ...(options.batchSize ? ['--batch-size', String(options.batchSize)] : []),
    ],
    redisPrefix: options.redisPrefix,
    partitions: options.partitions,
    env: {
      CONSUMER_GROUP: options.group,
      BENCH_STREAMS: formatStreamPartitions(options.partitions),
      BENCH_HANDLER: options.handler ?? 'batch',
    },
  });
}

/** Whether both apps have been built (dist/main.js present and not the foundation placeholder). */
export function appsAreBuilt(): { ok: boolean; reason?: string } {
  for (const file of [PUBLISHER_MAIN, CONSUMER_MAIN, BENCH_HANDLER_MODULE]) {
    if (!fs.existsSync(file)) return { ok: false, reason: `${path.relative(REPO_ROOT, file)} is missing (run pnpm build)` };
  }
  return { ok: true };
}
