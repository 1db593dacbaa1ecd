/**
 * The machine's raw limits, measured in the same run as our figures:
 * pgbench for batched INSERTs into a table shaped like events.outbox_event
 * and for single-row durable commits at 4 connections; redis-benchmark for
 * XADD with and without pipelining.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import type { RedisConnection } from '@petcover/service-kit';
import type { BenchEnvironment } from '../bench-environment';
import { runPgbench } from '../pgbench';
import type { BenchProfile } from '../profile';

const run = promisify(execFile);

export interface MachineLimits {
  /** Rows/s of 1,000-row INSERT ... SELECT statements, 2 connections. */
  batchedInsertRowsPerSec: number;
  /** Committed single-row INSERT transactions/s, 4 connections, synchronous_commit on. */
  singleRowCommitsPerSec: number;
  /**
   * Committed producer-shaped transactions/s (two rows and a pg_notify, as
   * `enqueue` sends), 4 connections: NOTIFY serialises commits on a global
   * lock, so this is the ceiling of any producer that uses enqueue.
   */
  notifyingCommitsPerSec: number;
  /** XADD/s, 8 clients, one command per round trip. */
  xaddPerSec: number;
  /** XADD/s, 8 clients, 64 commands pipelined. */
  xaddPipelinedPerSec: number;
  settings: Record<string, string | number>;
}

/** Rows per batched INSERT statement in the pgbench script. */
const BATCH_ROWS = 1000;

const BATCHED_INSERT_SCRIPT = `INSERT INTO bench.outbox_shape (event_id, stream_name, partition_key, event_type, payload, headers)
SELECT gen_random_uuid(), 'stream:bench:limits', 'entity-' || (g % 1024), 'BenchEventHappened', jsonb_build_object('seq', g), '{}'::jsonb
FROM generate_series(1, ${BATCH_ROWS}) AS g;
`;

const SINGLE_ROW_SCRIPT = `\\set seq random(1, 1000000000)
INSERT INTO bench.outbox_shape (event_id, stream_name, partition_key, event_type, payload, headers)
VALUES (gen_random_uuid(), 'stream:bench:limits', 'entity-' || (:seq % 1024), 'BenchEventHappened', jsonb_build_object('seq', :seq), '{}'::jsonb);
`;

const PRODUCER_SHAPED_SCRIPT = `\\set seq random(1, 1000000000)
BEGIN;
INSERT INTO bench.outbox_shape (event_id, stream_name, partition_key, event_type, payload, headers)
VALUES (gen_random_uuid(), 'stream:bench:limits', 'entity-' || (:seq % 1024), 'BenchEventHappened', jsonb_build_object('seq', :seq), '{}'::jsonb);
SELECT pg_notify('petcover_bench_limits', 'stream:bench:limits');
INSERT INTO bench.outbox_shape (event_id, stream_name, partition_key, event_type, payload, headers)
VALUES (gen_random_uuid(), 'stream:bench:domain', 'entity-' || (:seq % 1024), 'DomainRow', '{}'::jsonb, '{}'::jsonb);
COMMIT;
`;

async function pgbenchTps(databaseUrl: string, script: string, clients: number, seconds: number): Promise<number> {
  // Simple protocol, as these limits were always measured.
  return (await runPgbench({ databaseUrl, script, clients, seconds, queryMode: 'simple' })).tps;
}

async function xaddPerSec(redis: RedisConnection, key: string, requests: number, pipeline: number): Promise<number> {
  const url = new URL(redis.url);
  const args = ['-h', url.hostname || '127.0.0.1', '-p', url.port || '6379', '-c', '8', '-n', String(requests), '-P', String(pipeline), '-q'];
  const dbIndex = url.pathname.replace('/', '');
  if (dbIndex) args.push('--dbnum', dbIndex);
  if (url.password) args.push('-a', decodeURIComponent(url.password));
  if (redis.cluster) args.push('--cluster');
  args.push('XADD', key, '*', 'f', 'v');
  const { stdout } = await run('redis-benchmark', args, { maxBuffer: 16 * 1024 * 1024 });
  const matches = [...stdout.matchAll(/([\d.]+) requests per second/g)];
  const last = matches.at(-1);
  if (!last) throw new Error(`redis-benchmark printed no rate:\n${stdout}`);
  return Number(last[1]);
}

export async function measureMachineLimits(env: BenchEnvironment, profile: BenchProfile, log: (message: string) => void): Promise<MachineLimits> {
  log('limits: pgbench batched INSERT');
  const batchedTps = await pgbenchTps(env.databaseUrl, BATCHED_INSERT_SCRIPT, 2, profile.limitSeconds);
  await env.db.sql`TRUNCATE bench.outbox_shape`;
  log('limits: pgbench single-row commits');
  const singleTps = await pgbenchTps(env.databaseUrl, SINGLE_ROW_SCRIPT, 4, profile.limitSeconds);
  await env.db.sql`TRUNCATE bench.outbox_shape`;
  log('limits: pgbench producer-shaped commits');
  const notifyingTps = await pgbenchTps(env.databaseUrl, PRODUCER_SHAPED_SCRIPT, 4, profile.limitSeconds);
  await env.db.sql`TRUNCATE bench.outbox_shape`;
  const key = `${env.redisPrefix('limits')}xadd`;
  log('limits: redis-benchmark XADD');
  const plain = await xaddPerSec(env.redisConnection, key, profile.redisBenchmarkRequests, 1);
  await env.redis.unlink(key);
  const pipelined = await xaddPerSec(env.redisConnection, key, profile.redisBenchmarkRequests * 4, 64);
  await env.redis.unlink(key);
  return {
    batchedInsertRowsPerSec: batchedTps * BATCH_ROWS,
    singleRowCommitsPerSec: singleTps,
    notifyingCommitsPerSec: notifyingTps,
    xaddPerSec: plain,
    xaddPipelinedPerSec: pipelined,
    settings: {
      batchedInsert: `pgbench, ${BATCH_ROWS}-row INSERT ... SELECT into an outbox-shaped table, 2 connections, ${profile.limitSeconds} s`,
      singleRowCommit: `pgbench, 1-row INSERT per transaction, 4 connections, synchronous_commit on, ${profile.limitSeconds} s`,
      notifyingCommit: `pgbench, BEGIN; 2 single-row INSERTs and a pg_notify; COMMIT, 4 connections, ${profile.limitSeconds} s`,
      xadd: `redis-benchmark XADD key * f v, 8 clients, ${profile.redisBenchmarkRequests} requests; pipelined: -P 64, ${profile.redisBenchmarkRequests * 4} requests`,
    },
  };
}
