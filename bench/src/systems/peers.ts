/**
 * The two peers as systems under test, driven by the same producer and doing
 * the same handler work (one row per job) in their own worker process:
 *
 * - graphile-worker: the job is added inside the producer's transaction with
 *   `graphile_worker.add_job` (SQL); the worker wakes on LISTEN/NOTIFY.
 * - pg-boss: `send()` inside the producer's transaction through its `db`
 *   option (an adapter over that transaction); workers poll (its minimum
 *   interval, 0.5 s), since pg-boss has no wake-up on insert.
 */
import path from 'node:path';
import { sql } from 'drizzle-orm';
import { runMigrations as runGraphileMigrations } from 'graphile-worker';
import PgBoss from 'pg-boss';
import type { Transaction } from '@petcover/outbox';
import type { BenchEnvironment } from '../bench-environment';
import { GRAPHILE_TASK, PG_BOSS_QUEUE } from '../peers/peer-names';
import { graphileWorkerAddJobScript } from '../producer-scripts/graphile-worker-add-job';
import { pgBossSendScript } from '../producer-scripts/pg-boss-send';
import { startProcess, type ManagedProcess } from '../processes';
import { databaseNow } from '../workload';
import type { RunningSystem, SystemUnderTest } from './system';

const PEER_WORKER = path.join(__dirname, '..', 'peers', 'peer-worker.js');

export interface PeerSettings {
  concurrency: number;
  logDir: string;
  nodeFlags: string[];
}

/** Starts `peer-worker.js <kind>` and waits for its READY line. */
export async function startPeerWorker(kind: string, env: BenchEnvironment, settings: PeerSettings, extraEnv: Record<string, string> = {}): Promise<ManagedProcess> {
  const worker = startProcess({
    name: `${kind}-worker`,
    script: PEER_WORKER,
    args: [kind],
    env: { DATABASE_URL: env.databaseUrl, PEER_CONCURRENCY: String(settings.concurrency), ...extraEnv },
    readiness: { stdoutLine: 'READY' },
    logDir: settings.logDir,
    nodeFlags: settings.nodeFlags,
  });
  try {
    await worker.waitReady(60_000);
  } catch (error) {
    await worker.stop('SIGKILL');
    throw error;
  }
  return worker;
}

export function graphileWorkerSystem(env: BenchEnvironment, settings: PeerSettings): SystemUnderTest {
  return {
    name: 'graphile-worker',
    delivery: "job added in the producer's transaction (add_job); workers woken by LISTEN/NOTIFY",
    usesRedis: false,
    settings: { concurrency: settings.concurrency, pollIntervalMs: 2000, wakeUp: 'LISTEN/NOTIFY' },
    async start(): Promise<RunningSystem> {
      await runGraphileMigrations({ connectionString: env.databaseUrl });
      const worker = await startPeerWorker('graphile-worker', env, settings);
      let stopped: Promise<void> | undefined;
      return {
        processes: [worker],
        pgbenchScript: graphileWorkerAddJobScript(),
        async prefill(count, firstSeq) {
          await env.db.sql.unsafe(
            `SELECT count(*) FROM graphile_worker.add_jobs(
               (SELECT array_agg(ROW($1, json_build_object('seq', g), NULL, NULL, NULL, NULL, NULL, NULL)::graphile_worker.job_spec ORDER BY g)
                FROM generate_series($2::bigint, $3::bigint) AS g))`,
            [GRAPHILE_TASK, firstSeq, firstSeq + count - 1],
          );
          return databaseNow(env.db.sql);
        },
        async emit(tx, seq) {
          await tx.execute(sql`SELECT graphile_worker.add_job(${GRAPHILE_TASK}, json_build_object('seq', ${seq}::bigint))`);
        },
        stop: () => (stopped ??= worker.stop('SIGTERM').then(() => undefined)),
      };
    },
  };
}

/**
 * pg-boss's `db` option over a drizzle transaction: runs pg-boss's SQL on the
 * transaction's own postgres.js connection. node-postgres (pg-boss's driver)
 * sends plain objects as JSON; postgres.js needs them stringified.
 */
export function pgBossDbOverTransaction(tx: Transaction): PgBoss.Db {
  // drizzle's postgres-js transaction keeps its postgres.js TransactionSql in session.client.
  const client = (tx as unknown as { session: { client: { unsafe(text: string, values?: unknown[]): Promise<unknown[]> } } }).session.client;
  return {
    async executeSql(text: string, values?: unknown[]) {
      const params = (values ?? []).map((v) => (v === undefined ? null : v !== null && typeof v === 'object' && !(v instanceof Date) && !Array.isArray(v) ? JSON.stringify(v) : v));
      const rows = await client.unsafe(text, params);
      return { rows };
    },
  } as PgBoss.Db;
}

export function pgBossSystem(env: BenchEnvironment, settings: PeerSettings & { batchSize: number }): SystemUnderTest {
  return {
    name: 'pg-boss',
    delivery: "job inserted in the producer's transaction (send() through its db option); workers poll",
    usesRedis: false,
    settings: { concurrency: settings.concurrency, batchSize: settings.batchSize, pollingIntervalSeconds: 0.5, wakeUp: 'polling' },
    async start(): Promise<RunningSystem> {
      const pgbenchScript = await pgBossSendScript();
      const boss = new PgBoss({ connectionString: env.databaseUrl, max: 2, supervise: false, schedule: false, migrate: true });
      boss.on('error', (error) => console.error('pg-boss (producer side):', error));
      await boss.start();
      await boss.createQueue(PG_BOSS_QUEUE);
      let worker: ManagedProcess;
      try {
        worker = await startPeerWorker('pg-boss', env, settings, { PEER_BATCH_SIZE: String(settings.batchSize) });
      } catch (error) {
        await boss.stop({ graceful: false, wait: true });
        throw error;
      }
      let stopped: Promise<void> | undefined;
      return {
        processes: [worker],
        pgbenchScript,
        async prefill(count, firstSeq) {
          const chunk = 5000;
          await env.db.db.transaction(async (tx) => {
            const db = pgBossDbOverTransaction(tx);
            for (let from = firstSeq; from < firstSeq + count; from += chunk) {
              const jobs = [];
              for (let seq = from; seq < Math.min(from + chunk, firstSeq + count); seq += 1) jobs.push({ name: PG_BOSS_QUEUE, data: { seq } });
              await boss.insert(jobs, { db });
            }
          });
          return databaseNow(env.db.sql);
        },
        async emit(tx, seq) {
          await boss.send(PG_BOSS_QUEUE, { seq }, { db: pgBossDbOverTransaction(tx) });
        },
        stop: () =>
          (stopped ??= (async () => {
            await worker.stop('SIGTERM');
            await boss.stop({ graceful: false, wait: true, timeout: 5000 });
          })()),
      };
    },
  };
}
