/**
 * End-to-end scenarios, the same for every system under test:
 * - drain: a pre-filled backlog committed at once → every handler row written;
 * - latency: the open-loop producer at a fixed rate → commit-to-handler
 *   latency of each event, on the database clock, in an HDR histogram.
 */
import { connectDatabase } from '@petcover/outbox';
import { runOpenLoopProducer, type ProducerResult } from '../producer';
import { ratePerSecond, summariseLatencies, type LatencySummary } from '../stats';
import type { SystemUnderTest } from '../systems/system';
import { databaseNow, duplicateHandledCount, handledCount, millisecondsUntilLatest, readLatencies, waitForCount } from '../workload';
import { mebibytes, type ScenarioContext } from './context';

export interface DrainResult {
  system: string;
  settings: Record<string, string | number | boolean>;
  events: number;
  handled: number;
  /** Handler rows beyond one per event: effects applied twice. */
  duplicates: number;
  seconds: number | null;
  eventsPerSec: number | null;
  /** Peak RSS per process (VmHWM), MiB. */
  peakRssMiB: Record<string, number | null>;
  complete: boolean;
}

export async function runDrain(ctx: ScenarioContext, system: SystemUnderTest): Promise<DrainResult> {
  const { env, profile } = ctx;
  await env.reset();
  const running = await system.start();
  try {
    const events = profile.drainEvents;
    const committedAt = await running.prefill(events, 1);
    ctx.log(`drain ${system.name}: ${events} committed, draining`);
    // Polled every 500 ms to keep the harness light; the figure comes from max(handled_at).
    await waitForCount(() => handledCount(env.db.sql), events, profile.drainTimeoutMs, 500);
    const handled = await handledCount(env.db.sql);
    const ms = await millisecondsUntilLatest(env.db.sql, 'bench.handled', 'handled_at', committedAt);
    const peakRssMiB = Object.fromEntries(running.processes.map((p) => [p.name, mebibytes(p.peakRssBytes())]));
    const duplicates = await duplicateHandledCount(env.db.sql);
    return {
      system: system.name,
      settings: system.settings,
      events,
      handled,
      duplicates,
      seconds: ms === null ? null : ms / 1000,
      eventsPerSec: ms === null ? null : ratePerSecond(Math.min(handled, events), ms),
      peakRssMiB,
      complete: handled >= events,
    };
  } finally {
    await running.stop();
  }
}

export interface LatencyResult {
  system: string;
  ratePerSec: number;
  measuredSeconds: number;
  connections: number;
  producer: ProducerResult;
  handled: number;
  /** handled_at − written_at (the producer's last statement before COMMIT), DB clock. */
  commitToHandler: LatencySummary;
  /** handled_at − the schedule slot: also counts waiting for a producer connection. */
  scheduleToHandler: LatencySummary;
  /** The Node producer's own CPU per committed transaction (BEGIN, emit, domain row, COMMIT), ms. */
  producerClientCpuMsPerTransaction: number | null;
}

/** The open-loop producer at `ratePerSec` (default: the profile's 1,000/s) → commit-to-handler latencies. */
export async function runLatency(ctx: ScenarioContext, system: SystemUnderTest, ratePerSec = ctx.profile.latencyRatePerSec): Promise<LatencyResult> {
  const { env, profile } = ctx;
  await env.reset();
  const running = await system.start();
  const producerDb = connectDatabase(env.databaseUrl, { max: profile.producerConnections, applicationName: 'petcover-bench-producer' });
  try {
    const rate = ratePerSec;
    const startedAt = await databaseNow(env.db.sql);
    ctx.log(`latency ${system.name}: ${rate}/s for ${(profile.latencyWarmupMs + profile.latencyDurationMs) / 1000} s (first ${profile.latencyWarmupMs / 1000} s warm-up)`);
    const cpuBefore = process.cpuUsage();
    const producer = await runOpenLoopProducer({
      db: producerDb.db,
      connections: profile.producerConnections,
      emit: running.emit,
      ratePerSec: rate,
      durationMs: profile.latencyWarmupMs + profile.latencyDurationMs,
      firstSeq: 1,
    });
    const cpu = process.cpuUsage(cpuBefore);
    if (producer.failed > 0) {
      throw new Error(`${producer.failed} of ${producer.scheduled} producer transactions failed; first: ${producer.firstError}`);
    }
    await waitForCount(() => handledCount(env.db.sql), producer.committed, 30_000, 100);
    const handled = await handledCount(env.db.sql);
    // Warm-up = events committed in the first seconds of the run (by their
    // commit time, so a producer that falls behind still leaves events to measure).
    await env.db.sql`
      DELETE FROM bench.handled h USING bench.domain_row d
      WHERE h.seq = d.seq AND d.written_at < ${startedAt}::timestamptz + make_interval(secs => ${profile.latencyWarmupMs / 1000})`;
    const latencies = await readLatencies(env.db.sql);
    return {
      system: system.name,
      ratePerSec: rate,
      measuredSeconds: profile.latencyDurationMs / 1000,
      connections: profile.producerConnections,
      producer,
      handled,
      commitToHandler: summariseLatencies(latencies.fromCommit),
      scheduleToHandler: summariseLatencies(latencies.fromSchedule),
      producerClientCpuMsPerTransaction: producer.committed > 0 ? (cpu.user + cpu.system) / 1000 / producer.committed : null,
    };
  } finally {
    await producerDb.close();
    await running.stop();
  }
}
