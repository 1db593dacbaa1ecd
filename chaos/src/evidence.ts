/**
 * What a failed chaos run leaves for its reader, collected before teardown
 * while its servers still run (the app logs are copied by run.ts):
 *
 * - `events-status.txt` / `.json`: the product's own `events status` (the
 *   CLI's functions, run in this process) against the run's Postgres and
 *   Redis, single or Cluster. Its text is also printed LAST, after the app
 *   log tails, so the final screen of a failed CI run says which partition is
 *   stuck, who holds its lease, its lag and pending, and what is parked.
 * - `chaos-db.sql`: pg_dump of the run's database (outbox rows with their
 *   entry ids, inbox, parked keys, dead letters, chaos.handled in order).
 * - `redis-streams.json`: every stream's groups (XINFO GROUPS), pending
 *   lists (XPENDING) and entries, from every master of a Cluster.
 *
 * Best effort and bounded: each part gets `stepTimeoutMs`, so a hung server
 * costs that much and never holds the teardown; a part that fails says why
 * in one line and the others still run.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { collectEventsStatus, connectCliRedis, connectDatabase, formatEventsStatus, type StreamPartitions } from '@petcover/outbox';
import { scanKeys, type RedisClient, type RedisConnection } from '@petcover/service-kit';
import { settleWithin } from './deadline';

const execFileAsync = promisify(execFile);

/** Default bound of each part: pg_dump and XRANGE of a 60 s run take about a second; the status well under. */
export const EVIDENCE_STEP_TIMEOUT_MS = 30_000;

export interface FailureEvidenceOptions {
  /** Where the files go (created if missing). */
  dir: string;
  /** The run's database (the apps' DATABASE_URL); undefined when Postgres never started. */
  databaseUrl?: string;
  /** The run's Redis, single or Cluster; undefined when it never started. */
  redis?: RedisConnection;
  /** The apps' STREAM_PARTITIONS, so status lists every partition even when one has no key yet. */
  partitions: StreamPartitions;
  /** The apps' REDIS_KEY_PREFIX. */
  keyPrefix?: string;
  log: (line: string) => void;
  stepTimeoutMs?: number;
}

export interface FailureEvidence {
  /** `events status` as printed, or null when it could not be collected (the log says why). */
  statusText: string | null;
}

/**
 * Collects the evidence into `options.dir` and logs one line per part, the
 * status text last. Never throws; resolves within about three times
 * `stepTimeoutMs`.
 */
export async function keepFailureEvidence(options: FailureEvidenceOptions): Promise<FailureEvidence> {
  const { dir, log } = options;
  const timeoutMs = options.stepTimeoutMs ?? EVIDENCE_STEP_TIMEOUT_MS;
  fs.mkdirSync(dir, { recursive: true });
  // The status first: it is what the reader needs most, and the apps are still running, so state moves on.
  let statusText: string | null = null;
  if (options.databaseUrl && options.redis) {
    try {
      statusText = await eventsStatusEvidence({ ...options, databaseUrl: options.databaseUrl, redis: options.redis }, timeoutMs);
    } catch (error) {
      log(`chaos: could not run events status: ${(error as Error).message}`);
    }
  }
  if (options.databaseUrl) {
    const file = path.join(dir, 'chaos-db.sql');
    try {
      await execFileAsync('pg_dump', ['--no-owner', '-f', file, options.databaseUrl], { timeout: timeoutMs, killSignal: 'SIGKILL' });
      log(`chaos: database dumped to ${file}`);
    } catch (error) {
      const { stderr, killed, message } = error as { stderr?: string; killed?: boolean; message: string };
      log(`chaos: could not dump the database: ${killed ? `pg_dump killed after ${timeoutMs / 1000} s` : stderr?.trim() || message}`);
    }
  }
  if (options.redis) {
    try {
      const keys = await dumpRedisStreams(options.redis, path.join(dir, 'redis-streams.json'), timeoutMs);
      log(`chaos: Redis streams dumped to ${path.join(dir, 'redis-streams.json')} (${keys} stream(s))`);
    } catch (error) {
      log(`chaos: could not dump the Redis streams: ${(error as Error).message}`);
    }
  }
  if (statusText !== null) {
    log(`--- events status of the run (also in ${path.join(dir, 'events-status.txt')}):\n${statusText}`);
  }
  return { statusText };
}

/**
 * `events status` in this process with the CLI's own Redis client (one
 * attempt, no queue): writes events-status.txt and .json, returns the text.
 */
async function eventsStatusEvidence(options: FailureEvidenceOptions & { databaseUrl: string; redis: RedisConnection }, timeoutMs: number): Promise<string> {
  const database = connectDatabase(options.databaseUrl, { max: 2, applicationName: 'chaos-evidence', connectTimeoutSeconds: 2 });
  const redis = connectCliRedis(options.redis);
  try {
    return await settleWithin(
      (async () => {
        // As the CLI: a Redis that refuses shows in the status as redis_unreachable, Postgres's side still reported.
        await redis.connect().catch(() => undefined);
        const status = await collectEventsStatus({ sql: database.sql, redis, keyPrefix: options.keyPrefix ?? '', partitions: options.partitions });
        const text = formatEventsStatus(status);
        fs.writeFileSync(path.join(options.dir, 'events-status.txt'), `${text}\n`);
        fs.writeFileSync(path.join(options.dir, 'events-status.json'), JSON.stringify(status, null, 2));
        return text;
      })(),
      timeoutMs,
      undefined,
      'events status',
    );
  } finally {
    // Disconnecting rejects whatever still hangs, so nothing outlives the deadline.
    redis.disconnect();
    await database.close(0).catch(() => undefined);
  }
}

/**
 * Every stream key of every master into `file`, as
 * `{ [key]: { groups: XINFO GROUPS, pending: { [group]: XPENDING - + 100000 }, entries: XRANGE - + } }`.
 * Each key is read on the master that holds it. Returns how many streams.
 */
async function dumpRedisStreams(connection: RedisConnection, file: string, timeoutMs: number): Promise<number> {
  const redis: RedisClient = connectCliRedis(connection);
  try {
    return await settleWithin(
      (async () => {
        await redis.connect();
        const streams: Record<string, unknown> = {};
        for await (const { node, keys } of scanKeys(redis, '*', { type: 'stream' })) {
          for (const key of keys) {
            const groups = (await node.call('XINFO', 'GROUPS', key)) as unknown[][];
            const pending: Record<string, unknown> = {};
            for (const group of groups) {
              const name = String(group[group.indexOf('name') + 1]);
              pending[name] = await node.call('XPENDING', key, name, '-', '+', '100000');
            }
            streams[key] = { groups, pending, entries: await node.xrange(key, '-', '+') };
          }
        }
        const sorted = Object.fromEntries(Object.entries(streams).sort(([a], [b]) => a.localeCompare(b)));
        fs.writeFileSync(file, JSON.stringify(sorted));
        return Object.keys(sorted).length;
      })(),
      timeoutMs,
      undefined,
      'Redis dump',
    );
  } finally {
    redis.disconnect();
  }
}
