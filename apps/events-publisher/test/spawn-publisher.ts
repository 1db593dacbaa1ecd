/**
 * Spawns the built events-publisher (`node dist/main.js start ...`) for tests
 * that kill, stop or restart things. Run `pnpm build` first (turbo's test
 * task does). Collects the JSON log lines so tests can wait on them.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import type { RedisClient } from '@petcover/service-kit';
import { enqueueMany, type OutboxEventInput } from '@petcover/outbox';
import type { DatabaseHandle } from '@petcover/outbox';
import { freePort, waitFor } from '@petcover/outbox/testing';

type TestDatabase = Pick<DatabaseHandle, 'db' | 'sql'>;

export const MAIN = path.join(__dirname, '..', 'dist', 'main.js');

export interface PublisherProcess {
  child: ChildProcess;
  healthPort: number;
  lines: Array<Record<string, unknown>>;
  exited: Promise<number | null>;
  waitForLog(predicate: (line: Record<string, unknown>) => boolean, description: string, timeoutMs?: number): Promise<Record<string, unknown>>;
  /** SIGTERM and wait for exit; returns the exit code. */
  stop(): Promise<number | null>;
}

export async function spawnPublisher(options: {
  databaseUrl: string;
  redisUrl: string;
  keyPrefix: string;
  args?: string[];
  env?: Record<string, string>;
}): Promise<PublisherProcess> {
  const healthPort = await freePort();
  const child = spawn(process.execPath, [MAIN, 'start', '--log-level', 'debug', ...(options.args ?? [])], {
    env: {
      PATH: process.env.PATH,
      DATABASE_URL: options.databaseUrl,
      REDIS_URL: options.redisUrl,
      REDIS_KEY_PREFIX: options.keyPrefix,
      HEALTH_PORT: String(healthPort),
      ...options.env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const lines: Array<Record<string, unknown>> = [];
  let buffered = '';
  child.stdout!.on('data', (chunk: Buffer) => {
    buffered += chunk.toString('utf8');
    const parts = buffered.split('\n');
    buffered = parts.pop() ?? '';
    for (const part of parts) {
      try {
        lines.push(JSON.parse(part) as Record<string, unknown>);
      } catch {
        lines.push({ msg: part });
      }
    }
  });
  const stderr: string[] = [];
  child.stderr!.on('data', (chunk: Buffer) => stderr.push(chunk.toString('utf8')));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return {
    child,
    healthPort,
    lines,
    exited,
    waitForLog: (predicate, description, timeoutMs = 15_000) =>
      waitFor(() => lines.find(predicate), { timeoutMs, description: `${description} (stderr: ${stderr.join('').slice(0, 500)})` }),
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      return exited;
    },
  };
}

/** Enqueues `count` events on `stream` in transactions of up to 500, keys `key-0..key-(keys-1)`. */
export async function fillOutbox(db: TestDatabase, stream: string, count: number, keys = 10): Promise<void> {
  for (let start = 0; start < count; start += 500) {
    const events: OutboxEventInput[] = [];
    for (let i = start; i < Math.min(count, start + 500); i++) {
      events.push({ stream, type: 'TestHappened', partitionKey: `key-${i % keys}`, payload: { seq: i } });
    }
    await db.db.transaction((tx) => enqueueMany(tx, events));
  }
}

export async function unpublishedCount(db: TestDatabase, streams: readonly string[]): Promise<number> {
  const [row] = await db.sql<{ n: string }[]>`
    SELECT count(*)::text AS n FROM events.outbox_event
    WHERE published_at IS NULL AND stream_name = ANY(${`{${streams.join(',')}}`}::text[])`;
  return Number(row!.n);
}

/**
 * Asserts the Redis stream `key` holds exactly the outbox rows of `stream`,
 * each once, in id order. Returns the number of entries.
 */
export async function expectExactlyOnceInOrder(db: TestDatabase, redis: RedisClient, stream: string, key: string): Promise<number> {
  const entries = await redis.xrange(key, '-', '+');
  const ids = entries.map(([, flat]) => BigInt(flat[flat.indexOf('outbox_id') + 1]!));
  for (let i = 1; i < ids.length; i++) {
    if (ids[i]! <= ids[i - 1]!) throw new Error(`${key}: outbox id ${ids[i]} follows ${ids[i - 1]} (duplicate or out of order)`);
  }
  const rows = await db.sql<{ id: string }[]>`SELECT id::text FROM events.outbox_event WHERE stream_name = ${stream} ORDER BY outbox_event.id`;
  expect(ids.map(String)).toEqual(rows.map((r) => r.id));
  return ids.length;
}

export async function readyStatus(port: number): Promise<number> {
  const response = await fetch(`http://127.0.0.1:${port}/readyz`);
  return response.status;
}

export async function metricsText(port: number): Promise<string> {
  return (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
}
