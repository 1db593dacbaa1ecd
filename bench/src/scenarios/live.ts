/**
 * Live traffic: producers committing one event at a time at a fixed rate,
 * open loop, for 500 and 1,000 events/s (the profile's rates). The producer
 * is pgbench (`-R`) running the system's own producer transaction, so the
 * producer's cost does not decide the result; a system whose event cannot be
 * sent from SQL (BullMQ's Redis backend: a dual write) is driven by the Node
 * producer on the same schedule, and the report says so.
 *
 * Figures, after a warm-up: commit → handler latency (both timestamps
 * `clock_timestamp()` of the same server, the interval computed in SQL), how
 * much of the schedule the producer reached, and CPU seconds per 1,000 events
 * of every process involved (process-cpu.ts), from the end of the warm-up
 * until every committed event was handled.
 */
import { connectDatabase } from '@petcover/outbox';
import { runPgbench, type PgbenchOutcome } from '../pgbench';
import type { ProducerScript } from '../producer-scripts/producer-script';
import { cpuBetween, endedChildrenCpuSeconds, localRedisPid, snapshotCpu, trackCpu, type CpuSnapshot, type CpuSources } from '../process-cpu';
import { runOpenLoopProducer } from '../producer';
import { summariseLatencies, type LatencySummary } from '../stats';
import type { RunningSystem, SystemUnderTest } from '../systems/system';
import { countRows, databaseNow, handledCount, waitForCount } from '../workload';
import type { ScenarioContext } from './context';

export interface LiveCpu {
  /** From the end of the warm-up until every event was handled. */
  windowSeconds: number;
  /** Events committed in the window (after the warm-up). */
  events: number;
  /** CPU seconds per 1,000 events, by process (or group of Postgres sessions). */
  perThousandEvents: Record<string, number>;
  /** Their sum: the figure to drive down. */
  totalPerThousandEvents: number;
  /**
   * The producer's own client CPU per 1,000 events, not in the sum: pgbench's,
   * or the Node producer's (for a dual write it includes adding the job).
   */
  producerClientPerThousandEvents: number | null;
}

export interface LiveResult {
  system: string;
  delivery: string;
  producer: 'pgbench' | 'node';
  /** What one producer transaction sends. */
  producerTransaction: string;
  ratePerSec: number;
  measuredSeconds: number;
  connections: number;
  /** Transactions the schedule offered over the whole run (warm-up included). */
  scheduled: number;
  committed: number;
  /** committed / scheduled: the goal is ≥ 95 %. */
  reachedShare: number;
  /** Slots skipped because their transaction could not start in time. */
  skipped: number;
  scheduleLagMaxMs: number | null;
  handled: number;
  complete: boolean;
  commitToHandler: LatencySummary;
  /** Where commit → handler goes, by stage (systems that leave timestamps on the way). */
  stages?: Record<string, LatencySummary>;
  cpu: LiveCpu;
}

/** How long a run waits for the last events to be handled. */
const CATCH_UP_TIMEOUT_MS = 30_000;
/** How often CPU is read during the window (a process that ends loses at most this much). */
const CPU_SAMPLE_MS = 500;
/** pgbench skips slots that would start later than this (and counts them). */
const LATE_START_LIMIT_MS = 2000;

/** Where CPU is read for a running system. */
async function cpuSources(ctx: ScenarioContext, system: SystemUnderTest, running: RunningSystem): Promise<CpuSources> {
  const redisPid = system.usesRedis ? localRedisPid(await ctx.env.redis.info('server')) : null;
  return { processes: running.processes, sql: ctx.env.db.sql, redisPid };
}

export async function runLive(ctx: ScenarioContext, system: SystemUnderTest, ratePerSec: number): Promise<LiveResult> {
  await ctx.env.reset();
  const running = await system.start();
  try {
    return await measureLive(ctx, system, running, ratePerSec);
  } finally {
    await running.stop();
  }
}

/** Where the measured window starts: the database clock and the CPU read then, and the tracker that follows it. */
interface WindowStart {
  at: string;
  cpu: CpuSnapshot;
  tracker: ReturnType<typeof trackCpu>;
}

async function measureLive(ctx: ScenarioContext, system: SystemUnderTest, running: RunningSystem, ratePerSec: number): Promise<LiveResult> {
  const { env, profile } = ctx;
  const sources = await cpuSources(ctx, system, running);
  const warmupSeconds = profile.liveWarmupSeconds;
  const seconds = warmupSeconds + profile.liveSeconds;
  ctx.log(`live ${system.name}: ${ratePerSec}/s for ${seconds} s (first ${warmupSeconds} s warm-up), ${running.pgbenchScript ? 'pgbench' : 'Node producer'}`);

  // The window starts when the warm-up ends, whatever the producer is doing.
  let windowStart: Promise<WindowStart> | undefined;
  const timer = setTimeout(() => {
    windowStart = (async () => ({ at: await databaseNow(env.db.sql), cpu: await snapshotCpu(sources), tracker: trackCpu(sources, CPU_SAMPLE_MS) }))();
  }, warmupSeconds * 1000);
  let produced: ProducedRun;
  try {
    produced = running.pgbenchScript ? await produceWithPgbench(ctx, running.pgbenchScript, ratePerSec, seconds) : await produceWithNode(ctx, running, ratePerSec, seconds);
  } catch (error) {
    await windowStart?.then((w) => w.tracker.stop()).catch(() => undefined);
    throw error;
  } finally {
    clearTimeout(timer);
  }
  if (!windowStart) throw new Error(`the producer ended before its ${warmupSeconds} s warm-up did`);
  const start = await windowStart;

  const committed = await countRows(env.db.sql, 'SELECT count(*) FROM bench.domain_row');
  await waitForCount(() => handledCount(env.db.sql), committed, CATCH_UP_TIMEOUT_MS, 200);
  const cpuAtEnd = await start.tracker.stop();
  const [window] = await env.db.sql<{ s: number }[]>`SELECT extract(epoch FROM clock_timestamp() - ${start.at}::timestamptz)::float8 AS s`;
  const handled = await handledCount(env.db.sql);
  const events = await countRows(env.db.sql, `SELECT count(*) FROM bench.domain_row WHERE written_at >= '${start.at}'::timestamptz`);
  const latencies = await env.db.sql<{ ms: number }[]>`
    SELECT (extract(epoch FROM h.handled_at - d.written_at) * 1000)::float8 AS ms
    FROM bench.handled h JOIN bench.domain_row d USING (seq)
    WHERE d.written_at >= ${start.at}::timestamptz`;

  const stages = running.stages ? await running.stages(start.at) : undefined;
  const used = cpuBetween(start.cpu, cpuAtEnd);
  const perThousand = (cpuSeconds: number) => (events > 0 ? (cpuSeconds * 1000) / events : NaN);
  return {
    system: system.name,
    delivery: system.delivery,
    producer: running.pgbenchScript ? 'pgbench' : 'node',
    producerTransaction: running.pgbenchScript?.describe ?? 'domain row committed by the Node producer, then the job added (after COMMIT: a dual write)',
    ratePerSec,
    measuredSeconds: profile.liveSeconds,
    connections: profile.producerConnections,
    scheduled: produced.scheduled,
    committed,
    reachedShare: produced.scheduled > 0 ? committed / produced.scheduled : 0,
    skipped: produced.skipped,
    scheduleLagMaxMs: produced.scheduleLagMaxMs,
    handled,
    complete: handled >= committed,
    commitToHandler: summariseLatencies(latencies.map((r) => Number(r.ms))),
    stages: stages && Object.fromEntries(Object.entries(stages).map(([stage, ms]) => [stage, summariseLatencies(ms)])),
    cpu: {
      windowSeconds: Number(window?.s ?? NaN),
      events,
      perThousandEvents: Object.fromEntries(Object.entries(used).map(([label, cpuSeconds]) => [label, perThousand(cpuSeconds)])),
      totalPerThousandEvents: perThousand(Object.values(used).reduce((a, b) => a + b, 0)),
      // The client's whole run (warm-up too) over everything it committed.
      producerClientPerThousandEvents: committed > 0 ? (produced.clientCpuSeconds * 1000) / committed : null,
    },
  };
}

/** What a producer run reports, whichever producer it was. */
interface ProducedRun {
  scheduled: number;
  committed: number;
  skipped: number;
  scheduleLagMaxMs: number | null;
  clientCpuSeconds: number;
}

async function produceWithPgbench(ctx: ScenarioContext, script: ProducerScript, ratePerSec: number, seconds: number): Promise<ProducedRun> {
  const childCpuBefore = endedChildrenCpuSeconds();
  const outcome: PgbenchOutcome = await runPgbench({
    databaseUrl: ctx.env.databaseUrl,
    script: script.script,
    variables: script.variables,
    clients: ctx.profile.producerConnections,
    seconds,
    ratePerSec,
    latencyLimitMs: LATE_START_LIMIT_MS,
  });
  if (outcome.failed > 0) throw new Error(`${outcome.failed} pgbench transactions failed`);
  return {
    scheduled: Math.round(ratePerSec * seconds),
    committed: outcome.processed,
    skipped: outcome.skipped,
    scheduleLagMaxMs: outcome.scheduleLagMaxMs,
    clientCpuSeconds: endedChildrenCpuSeconds() - childCpuBefore,
  };
}

async function produceWithNode(ctx: ScenarioContext, running: RunningSystem, ratePerSec: number, seconds: number): Promise<ProducedRun> {
  const { env, profile } = ctx;
  const producerDb = connectDatabase(env.databaseUrl, { max: profile.producerConnections, applicationName: 'petcover-bench-producer' });
  try {
    const cpuBefore = process.cpuUsage();
    const result = await runOpenLoopProducer({
      db: producerDb.db,
      connections: profile.producerConnections,
      emit: running.emit,
      emitAfterCommit: running.emitAfterCommit,
      ratePerSec,
      durationMs: seconds * 1000,
      firstSeq: 1,
      drainGraceMs: LATE_START_LIMIT_MS,
    });
    const cpu = process.cpuUsage(cpuBefore);
    if (result.failed > 0) throw new Error(`${result.failed} of ${result.scheduled} producer transactions failed; first: ${result.firstError}`);
    return {
      scheduled: Math.round(ratePerSec * seconds),
      committed: result.committed,
      skipped: result.dropped,
      scheduleLagMaxMs: result.maxStartLagMs,
      clientCpuSeconds: (cpu.user + cpu.system) / 1e6,
    };
  } finally {
    await producerDb.close();
  }
}
