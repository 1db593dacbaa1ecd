/**
 * BullMQ 6 as a system under test, with each of its backends.
 *
 * Redis (the one most users run): a Redis queue
 * cannot join the producer's Postgres transaction: the producer commits its
 * domain row, then adds the job (a dual write; a crash between the two loses
 * the job, the failure a transactional outbox exists to prevent). So pgbench
 * cannot drive it; the Node producer does, on the same schedule, and its
 * handler (peer-worker.ts) writes the same one row per job.
 *
 * PostgreSQL (new in BullMQ 6): the job is a row added by its SQL function
 * `add_job` inside the producer's transaction, so pgbench drives it like the
 * other Postgres queues; workers wake on LISTEN/NOTIFY.
 */
import { sql } from 'drizzle-orm';
import { createPostgresBackend, Queue } from 'bullmq';
import { createRedisClient, redisConnectionEnv } from '@petcover/service-kit';
import type { BenchEnvironment } from '../bench-environment';
import { BULLMQ_JOB, BULLMQ_QUEUE } from '../peers/peer-names';
import { bullmqAddJobSql, bullmqPostgresAddJobScript } from '../producer-scripts/bullmq-postgres-add-job';
import { databaseNow } from '../workload';
import { startPeerWorker, type PeerSettings } from './peers';
import type { RunningSystem, SystemUnderTest } from './system';

/** Jobs per addBulk call when pre-filling a backlog. */
const PREFILL_CHUNK = 1000;

/** Adds jobs seq = firstSeq… with addBulk, a chunk at a time; returns the database clock once all are added. */
async function prefillQueue(
  env: BenchEnvironment,
  addBulk: (jobs: Array<{ name: string; data: { seq: number } }>) => Promise<unknown>,
  count: number,
  firstSeq: number,
): Promise<string> {
  for (let from = firstSeq; from < firstSeq + count; from += PREFILL_CHUNK) {
    const jobs = [];
    for (let seq = from; seq < Math.min(from + PREFILL_CHUNK, firstSeq + count); seq += 1) jobs.push({ name: BULLMQ_JOB, data: { seq } });
    await addBulk(jobs);
  }
  return databaseNow(env.db.sql);
}

export function bullmqRedisSystem(env: BenchEnvironment, settings: PeerSettings): SystemUnderTest {
  return {
    name: 'bullmq (redis)',
    delivery: "dual write: the job is added to Redis after the producer's COMMIT (a crash in between loses it)",
    usesRedis: true,
    settings: { concurrency: settings.concurrency, backend: 'redis', wakeUp: 'blocking BZPOPMIN on a marker key', removeOnComplete: 'default (kept)' },
    async start(): Promise<RunningSystem> {
      if (env.redisConnection.cluster) throw new Error('not run on REDIS_CLUSTER=1: BullMQ needs a hash-tagged prefix on a cluster, which the run key space does not have');
      // Under the run's key space, so reset() and destroy() remove its keys.
      const prefix = `${env.redisPrefix('bullmq')}bull`;
      // BullMQ requires maxRetriesPerRequest null on the connections it blocks on.
      const redis = createRedisClient(env.redisConnection, { maxRetriesPerRequest: null });
      const queue = new Queue(BULLMQ_QUEUE, { connection: redis, prefix });
      queue.on('error', (error) => console.error('bullmq queue (producer side):', error));
      const closeQueue = async () => {
        await queue.close().catch(() => undefined);
        redis.disconnect();
      };
      let worker;
      try {
        await queue.waitUntilReady();
        worker = await startPeerWorker('bullmq', env, settings, { ...redisConnectionEnv(env.redisConnection), BULLMQ_PREFIX: prefix });
      } catch (error) {
        await closeQueue();
        throw error;
      }
      const running = worker;
      let stopped: Promise<void> | undefined;
      return {
        processes: [running],
        // Nothing joins the producer's transaction.
        emit: async () => undefined,
        emitAfterCommit: async (seq) => void (await queue.add(BULLMQ_JOB, { seq })),
        prefill: (count, firstSeq) => prefillQueue(env, (jobs) => queue.addBulk(jobs), count, firstSeq),
        stop: () =>
          (stopped ??= (async () => {
            await running.stop('SIGTERM');
            await closeQueue();
          })()),
      };
    },
  };
}

export function bullmqPostgresSystem(env: BenchEnvironment, settings: PeerSettings): SystemUnderTest {
  return {
    name: 'bullmq (postgres)',
    delivery: "job added in the producer's transaction (its SQL function add_job); workers woken by LISTEN/NOTIFY",
    usesRedis: false,
    settings: { concurrency: settings.concurrency, backend: 'postgres', wakeUp: 'LISTEN/NOTIFY', removeOnComplete: 'default (kept)' },
    async start(): Promise<RunningSystem> {
      // The producer side's queue runs the backend's migrations (schema bullmq) and pre-fills.
      const queue = new Queue(BULLMQ_QUEUE, { connection: { connectionString: env.databaseUrl, max: 2, migrate: true } }, createPostgresBackend);
      queue.on('error', (error) => console.error('bullmq postgres queue (producer side):', error));
      let worker;
      try {
        await queue.waitUntilReady();
        worker = await startPeerWorker('bullmq-postgres', env, settings);
      } catch (error) {
        await queue.close().catch(() => undefined);
        throw error;
      }
      const running = worker;
      let stopped: Promise<void> | undefined;
      return {
        processes: [running],
        pgbenchScript: bullmqPostgresAddJobScript(),
        emit: async (tx, seq) => void (await tx.execute(sql.raw(bullmqAddJobSql(String(Math.trunc(seq)))))),
        prefill: (count, firstSeq) => prefillQueue(env, (jobs) => queue.addBulk(jobs), count, firstSeq),
        stop: () =>
          (stopped ??= (async () => {
            await running.stop('SIGTERM');
            await queue.close().catch(() => undefined);
          })()),
      };
    },
  };
}
