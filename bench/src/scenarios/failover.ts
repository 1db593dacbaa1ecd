/**
 * Failover: two publishers run while the producer commits events; the one
 * holding the stream's lease is killed (SIGKILL), and the time until rows are
 * published again is read on the database clock. Then a fresh standby is
 * started and the new holder is stopped gracefully (SIGTERM).
 */
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { connectDatabase } from '@petcover/outbox';
import { startConsumer, startPublisher, type PublisherOptions } from '../petcover-apps';
import { runOpenLoopProducer } from '../producer';
import { stopAll, type ManagedProcess } from '../processes';
import { enqueue } from '@petcover/outbox';
import { BENCH_EVENT_TYPE } from '../bench-event';
import { countRows, databaseNow } from '../workload';
import type { ScenarioContext } from './context';

export interface FailoverCase {
  signal: 'SIGKILL' | 'SIGTERM';
  /** Seconds from the signal until the next row was marked published; null if none within the deadline. */
  secondsUntilFlowing: number | null;
  /** How the stopped process ended. */
  exit: string;
  leaseTtlSeconds: number;
}

export interface FailoverResult {
  ratePerSec: number;
  cases: FailoverCase[];
}

const FLOW_DEADLINE_MS = 30_000;

/** The pid inside a lease owner id `<host>:<pid>:<random>`. */
export function pidOfOwner(ownerId: string): number | null {
  const parts = ownerId.split(':');
  const pid = Number(parts[parts.length - 2]);
  return Number.isInteger(pid) ? pid : null;
}

export async function runFailover(ctx: ScenarioContext): Promise<FailoverResult> {
  const { env, profile } = ctx;
  await env.reset();
  const stream = `stream:bench:failover_${randomBytes(3).toString('hex')}`;
  const partitions = { [stream]: 1 };
  const redisPrefix = env.redisPrefix('failover');
  const publisherOptions = (name: string): PublisherOptions => ({
    name,
    redisPrefix,
    partitions,
    batchSize: profile.petcover.batchSize,
    pollIntervalSeconds: profile.petcover.pollIntervalSeconds,
    leaseTtlSeconds: profile.petcover.leaseTtlSeconds,
  });
  const processes: ManagedProcess[] = [];
  const producerDb = connectDatabase(env.databaseUrl, { max: profile.producerConnections, applicationName: 'petcover-bench-producer' });
  const stopProducing = new AbortController();
  let producing: Promise<unknown> | undefined;
  try {
    processes.push(await startConsumer(ctx.apps, { name: 'failover-consumer', redisPrefix, group: 'bench-failover', concurrency: profile.petcover.concurrency, partitions }));
    processes.push(await startPublisher(ctx.apps, publisherOptions('failover-publisher-a')));
    processes.push(await startPublisher(ctx.apps, publisherOptions('failover-publisher-b')));
    await Promise.all(processes.map((p) => p.waitReady()));
    producing = runOpenLoopProducer({
      db: producerDb.db,
      emit: async (tx, seq) => {
        await enqueue(tx, { stream, type: BENCH_EVENT_TYPE, partitionKey: `entity-${seq % 1024}`, payload: { seq } });
      },
      ratePerSec: profile.failoverRatePerSec,
      durationMs: 10 * 60_000,
      firstSeq: 1,
      signal: stopProducing.signal,
    });

    const cases: FailoverCase[] = [];
    for (const signal of ['SIGKILL', 'SIGTERM'] as const) {
      const holder = await waitForHolder(ctx, stream, processes);
      if (signal === 'SIGTERM') {
        // A second publisher must be up, as in the SIGKILL case.
        const standby = await startPublisher(ctx.apps, publisherOptions('failover-publisher-c'));
        processes.push(standby);
        await standby.waitReady();
      }
      await sleep(1000);
      const signalledAt = await databaseNow(env.db.sql);
      const exiting = holder.stop(signal);
      const secondsUntilFlowing = await waitForFlowAfter(ctx, signalledAt);
      const exit = await exiting;
      ctx.log(`failover after ${signal} of ${holder.name}: ${secondsUntilFlowing === null ? 'no flow' : `${secondsUntilFlowing.toFixed(3)} s`} (${exit})`);
      cases.push({ signal, secondsUntilFlowing, exit, leaseTtlSeconds: profile.petcover.leaseTtlSeconds });
    }
    return { ratePerSec: profile.failoverRatePerSec, cases };
  } finally {
    stopProducing.abort();
    await producing;
    await producerDb.close();
    await stopAll(processes);
  }
}

async function waitForHolder(ctx: ScenarioContext, stream: string, processes: ManagedProcess[]): Promise<ManagedProcess> {
  const deadline = Date.now() + FLOW_DEADLINE_MS;
  while (Date.now() < deadline) {
    const rows = await ctx.env.db.sql<{ owner_id: string }[]>`
      SELECT owner_id FROM events.stream_lease
      WHERE stream_name = ${stream} AND role = 'publisher' AND lease_until > now()`;
    const pid = rows[0] ? pidOfOwner(rows[0].owner_id) : null;
    const holder = processes.find((p) => p.pid === pid && p.peakRssBytes() !== null);
    if (holder) return holder;
    await sleep(100);
  }
  throw new Error(`no running publisher held the lease of ${stream} within ${FLOW_DEADLINE_MS} ms`);
}

/** Seconds from `since` (DB clock) to the first row published after it, or null. */
async function waitForFlowAfter(ctx: ScenarioContext, since: string): Promise<number | null> {
  const deadline = Date.now() + FLOW_DEADLINE_MS;
  while (Date.now() < deadline) {
    const found = await countRows(ctx.env.db.sql, `SELECT count(*) FROM events.outbox_event WHERE published_at > '${since}'::timestamptz`);
    if (found > 0) {
      const [row] = await ctx.env.db.sql<{ ms: number }[]>`
        SELECT (extract(epoch FROM min(published_at) - ${since}::timestamptz) * 1000)::float8 AS ms
        FROM events.outbox_event WHERE published_at > ${since}::timestamptz`;
      return Number(row?.ms) / 1000;
    }
    await sleep(20);
  }
  return null;
}
