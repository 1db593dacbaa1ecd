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
import { databaseNow } from '../workload';
import type { ScenarioContext } from './context';

export interface FailoverCase {
  signal: 'SIGKILL' | 'SIGTERM';
  /**
   * Seconds from the signal until the first row published under the next
   * owner's lease; null if none within the deadline.
   */
  secondsUntilFlowing: number | null;
  /** Seconds from the signal until another publisher held the lease. */
  secondsUntilTakeover: number | null;
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
    batchSize: profile.petcover.publisherBatchSize,
    pollIntervalSeconds: profile.petcover.pollIntervalSeconds,
    leaseTtlSeconds: profile.failoverLeaseTtlSeconds,
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
      connections: profile.producerConnections,
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
      const { holder, ownerId } = await waitForHolder(ctx, stream, processes);
      if (signal === 'SIGTERM') {
        // A second publisher must be up, as in the SIGKILL case.
        const standby = await startPublisher(ctx.apps, publisherOptions('failover-publisher-c'));
        processes.push(standby);
        await standby.waitReady();
      }
      await sleep(1000);
      const signalledAt = await databaseNow(env.db.sql);
      const exiting = holder.stop(signal);
      const { secondsUntilTakeover, secondsUntilFlowing } = await waitForNextOwnerFlow(ctx, stream, ownerId, signalledAt);
      const exit = await exiting;
      ctx.log(
        `failover after ${signal} of ${holder.name}: lease taken over after ${secondsUntilTakeover?.toFixed(3) ?? '—'} s, rows flowing after ${secondsUntilFlowing?.toFixed(3) ?? '—'} s (${exit})`,
      );
      cases.push({ signal, secondsUntilFlowing, secondsUntilTakeover, exit, leaseTtlSeconds: profile.failoverLeaseTtlSeconds });
    }
    return { ratePerSec: profile.failoverRatePerSec, cases };
  } finally {
    stopProducing.abort();
    await producing;
    await producerDb.close();
    await stopAll(processes);
  }
}

async function waitForHolder(ctx: ScenarioContext, stream: string, processes: ManagedProcess[]): Promise<{ holder: ManagedProcess; ownerId: string }> {
  const deadline = Date.now() + FLOW_DEADLINE_MS;
  while (Date.now() < deadline) {
    const rows = await ctx.env.db.sql<{ owner_id: string }[]>`
      SELECT owner_id FROM events.stream_lease
      WHERE stream_name = ${stream} AND role = 'publisher' AND lease_until > now()`;
    const ownerId = rows[0]?.owner_id;
    const pid = ownerId ? pidOfOwner(ownerId) : null;
    const holder = processes.find((p) => p.pid === pid && p.peakRssBytes() !== null);
    if (holder && ownerId) return { holder, ownerId };
    await sleep(100);
  }
  throw new Error(`no running publisher held the lease of ${stream} within ${FLOW_DEADLINE_MS} ms`);
}

/**
 * Waits for another owner to hold the stream's lease, then for the first row
 * published under it (published_at >= its acquired_at: the old owner is
 * fenced off from then on). Both measured from `since`, on the DB clock.
 */
async function waitForNextOwnerFlow(
  ctx: ScenarioContext,
  stream: string,
  previousOwner: string,
  since: string,
): Promise<{ secondsUntilTakeover: number | null; secondsUntilFlowing: number | null }> {
  const { sql } = ctx.env.db;
  const deadline = Date.now() + FLOW_DEADLINE_MS;
  let acquiredAt: string | undefined;
  let secondsUntilTakeover: number | null = null;
  while (Date.now() < deadline) {
    if (acquiredAt === undefined) {
      const [lease] = await sql<{ acquired_at: string; seconds: number }[]>`
        SELECT acquired_at::text AS acquired_at, extract(epoch FROM acquired_at - ${since}::timestamptz)::float8 AS seconds
        FROM events.stream_lease
        WHERE stream_name = ${stream} AND role = 'publisher' AND owner_id <> ${previousOwner}`;
      if (lease) {
        acquiredAt = lease.acquired_at;
        secondsUntilTakeover = Number(lease.seconds);
      }
    }
    if (acquiredAt !== undefined) {
      const [flow] = await sql<{ seconds: number | null }[]>`
        SELECT extract(epoch FROM min(published_at) - ${since}::timestamptz)::float8 AS seconds
        FROM events.outbox_event WHERE published_at >= ${acquiredAt}::timestamptz`;
      if (flow?.seconds !== null && flow?.seconds !== undefined) return { secondsUntilTakeover, secondsUntilFlowing: Number(flow.seconds) };
    }
    await sleep(20);
  }
  return { secondsUntilTakeover, secondsUntilFlowing: null };
}
