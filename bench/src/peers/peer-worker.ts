#!/usr/bin/env node
/**
 * A peer's worker process, so peers run in their own process like our
 * consumer does: `node peer-worker.js graphile-worker|pg-boss|bullmq|bullmq-postgres`.
 * Env: DATABASE_URL, PEER_CONCURRENCY, PEER_BATCH_SIZE (pg-boss), REDIS_URL
 * and BULLMQ_PREFIX (bullmq). Prints
 * `READY` once it takes work; SIGTERM stops it gracefully.
 *
 * Handler work is the same as ours: one `bench.handled` row per job (pg-boss,
 * which hands over batches of jobs, writes a batch's rows in one INSERT).
 */
import { Logger, run } from 'graphile-worker';
import PgBoss from 'pg-boss';
import { createPostgresBackend, Worker, type Job, type JobProgress, type PostgresConnectionOptions, type PostgresQueueBackend } from 'bullmq';
import postgres from 'postgres';
import { createRedisClient, readRedisConnection } from '@petcover/service-kit';
import { BULLMQ_QUEUE, GRAPHILE_TASK, PG_BOSS_QUEUE } from './peer-names';

const HANDLED_SQL = 'INSERT INTO bench.handled (seq, handled_at) VALUES ($1, clock_timestamp())';
/** pg-boss hands its work handler a batch: its rows in one INSERT, as our batch handler does. */
const HANDLED_BATCH_SQL = 'INSERT INTO bench.handled (seq, handled_at) SELECT unnest($1::bigint[]), clock_timestamp()';

async function main(): Promise<void> {
  const kind = process.argv[2];
  const connectionString = process.env.DATABASE_URL;
  const concurrency = Number(process.env.PEER_CONCURRENCY ?? 4);
  if (!connectionString) throw new Error('DATABASE_URL is required');

  let stop: () => Promise<void>;
  if (kind === 'graphile-worker') {
    const runner = await run({
      connectionString,
      concurrency,
      // The pool must cover every concurrent job plus the listener.
      maxPoolSize: concurrency + 2,
      noHandleSignals: true,
      pollInterval: 2000,
      logger: new Logger(() => (level, message) => {
        if (level === 'error') console.error(message);
      }),
      taskList: {
        [GRAPHILE_TASK]: async (payload, helpers) => {
          await helpers.query(HANDLED_SQL, [(payload as { seq: number }).seq]);
        },
      },
    });
    stop = () => runner.stop();
  } else if (kind === 'pg-boss') {
    const batchSize = Number(process.env.PEER_BATCH_SIZE ?? 50);
    const boss = new PgBoss({ connectionString, max: concurrency + 2, supervise: false, schedule: false, migrate: false });
    boss.on('error', (error) => console.error(error));
    await boss.start();
    const db = boss.getDb();
    // pg-boss v10 runs one fetch loop per work() call: `concurrency` loops.
    for (let i = 0; i < concurrency; i += 1) {
      await boss.work<{ seq: number }>(PG_BOSS_QUEUE, { batchSize, pollingIntervalSeconds: 0.5 }, async (jobs) => {
        await db.executeSql(HANDLED_BATCH_SQL, [jobs.map((job) => job.data.seq)]);
      });
    }
    stop = () => boss.stop({ graceful: true, wait: true, timeout: 10_000 });
  } else if (kind === 'bullmq' || kind === 'bullmq-postgres') {
    // One job per handler call (batches are a BullMQ Pro feature): one INSERT per job, as graphile-worker.
    const sql = postgres(connectionString, { max: concurrency, onnotice: () => undefined, connection: { application_name: `${kind}-handler` } });
    const handle = async (job: Job<{ seq: number }>) => void (await sql.unsafe(HANDLED_SQL, [job.data.seq]));
    const redis = kind === 'bullmq' ? createRedisClient(readRedisConnection(process.env), { maxRetriesPerRequest: null }) : undefined;
    const worker = redis
      ? new Worker<{ seq: number }>(BULLMQ_QUEUE, handle, { connection: redis, prefix: process.env.BULLMQ_PREFIX ?? 'bull', concurrency })
      : new Worker<{ seq: number }, unknown, string, PostgresQueueBackend, JobProgress, PostgresConnectionOptions>(
          BULLMQ_QUEUE,
          handle,
          { connection: { connectionString, max: concurrency + 2 }, concurrency },
          createPostgresBackend,
        );
    worker.on('error', (error) => console.error(error));
    worker.on('failed', (job, error) => console.error(`job ${job?.id} failed:`, error));
    await worker.waitUntilReady();
    stop = async () => {
      await worker.close();
      redis?.disconnect();
      await sql.end({ timeout: 5 });
    };
  } else {
    throw new Error(`unknown peer ${JSON.stringify(kind)}: expected graphile-worker, pg-boss, bullmq or bullmq-postgres`);
  }
  process.once('SIGTERM', () => {
    stop().then(
      () => process.exit(0),
      (error: unknown) => {
        console.error(error);
        process.exit(1);
      },
    );
  });
  console.log('READY');
}

main().catch((error: unknown) => {
  console.error(error);
  process.exit(1);
});
