/**
 * The performance goals, each a ratio between two figures of the same run
 * (the machine is noisy: absolute figures move ±40 % between runs, ratios
 * inside one run far less). Absolute only where the goal is absolute (p99).
 * A goal whose figures were not both measured is reported as not measured
 * (met: null), never as met.
 */
import { dec, int, verdict as judged, type BenchResults } from './report';
import type { LiveResult } from './scenarios/live';
import { ratio } from './stats';

export interface Goal {
  goal: string;
  /** The figure and what it was compared with, in words. */
  figure: string;
  met: boolean | null;
}

/** System names of the peers the goals compare with. */
export const GRAPHILE_WORKER = 'graphile-worker';
export const PG_BOSS = 'pg-boss';
export const BULLMQ_REDIS = 'bullmq (redis)';

const pct = (r: number | null) => (r === null ? '—' : `${(r * 100).toFixed(0)} %`);

/** The live run of `system` at `rate`, when it ran. */
export function liveAt(live: readonly LiveResult[], system: string, rate: number): LiveResult | undefined {
  return live.find((l) => l.system === system && l.ratePerSec === rate);
}

export function computeGoals(r: BenchResults, rate: number): Goal[] {
  const goals: Goal[] = [];
  const limits = r.limits;

  // The pipeline's figure: with async steps, the producer was taken out of the ceiling (see keeping-up.ts).
  const durableFlat = r.keepingUp?.highestFlatRatePerSec ?? null;
  const flat = r.keepingUp?.pipelineHighestFlatRatePerSec ?? durableFlat;
  const keepingUp = ratio(flat, limits?.singleRowCommitsPerSec);
  const producerNote = flat !== durableFlat ? ` (producer at synchronous_commit = off; with a durable producer ${int(durableFlat)}/s, its own ceiling)` : '';
  goals.push({
    goal: 'highest rate with a flat backlog ≥ 50 % of the single-row commit limit',
    figure: `${int(flat)}/s = ${pct(keepingUp)} of ${int(limits?.singleRowCommitsPerSec)}/s${producerNote}`,
    met: judged(keepingUp, (v) => v >= 0.5),
  });

  const ours = liveAt(r.live, 'petcover', rate);
  goals.push({
    goal: `at ${int(rate)} events/s the producer reaches ≥ 95 % of its schedule`,
    figure: ours ? `${pct(ours.reachedShare)} (${int(ours.committed)} of ${int(ours.scheduled)}, ${ours.producer})` : '—',
    met: judged(ours?.reachedShare, (v) => v >= 0.95),
  });

  const graphile = liveAt(r.live, GRAPHILE_WORKER, rate);
  const p50VsGraphile = ratio(ours?.commitToHandler.p50Ms, graphile?.commitToHandler.p50Ms);
  goals.push({
    goal: `commit → handler p50 at ${int(rate)}/s ≤ graphile-worker's`,
    figure: `${dec(ours?.commitToHandler.p50Ms)} vs ${dec(graphile?.commitToHandler.p50Ms)} ms (× ${dec(p50VsGraphile)})`,
    met: judged(p50VsGraphile, (v) => v <= 1),
  });
  goals.push({
    goal: `commit → handler p99 at ${int(rate)}/s ≤ 15 ms`,
    figure: `${dec(ours?.commitToHandler.p99Ms)} ms`,
    met: judged(ours?.commitToHandler.p99Ms, (v) => v <= 15),
  });

  const cpuVsGraphile = ratio(ours?.cpu.totalPerThousandEvents, graphile?.cpu.totalPerThousandEvents);
  goals.push({
    goal: `CPU per event at ${int(rate)}/s ≤ graphile-worker's`,
    figure: `${dec(ours?.cpu.totalPerThousandEvents, 3)} vs ${dec(graphile?.cpu.totalPerThousandEvents, 3)} CPU s per 1,000 events (× ${dec(cpuVsGraphile)})`,
    met: judged(cpuVsGraphile, (v) => v <= 1),
  });

  const relay = r.relay[0];
  const relayShare = ratio(relay?.eventsPerSec, limits?.batchedInsertRowsPerSec);
  goals.push({
    goal: 'relay ≥ 50 % of batched INSERT',
    figure: `${int(relay?.eventsPerSec)} events/s (${relay?.streams ?? '—'} stream) = ${pct(relayShare)} of ${int(limits?.batchedInsertRowsPerSec)} rows/s`,
    met: judged(relayShare, (v) => v >= 0.5),
  });

  // An incomplete drain still has a rate (events handled by its last handler row); the figure says so.
  const drainOf = (system: string) => r.drain.find((d) => d.system === system);
  const drain = (system: string) => drainOf(system)?.eventsPerSec;
  const incomplete = (system: string) => (drainOf(system)?.complete === false ? ` (${system}'s drain incomplete)` : '');
  for (const peer of [GRAPHILE_WORKER, PG_BOSS]) {
    const x = ratio(drain('petcover'), drain(peer));
    goals.push({
      goal: `drain ≥ 10 × ${peer}'s`,
      figure: `${int(drain('petcover'))} vs ${int(drain(peer))} events/s (× ${dec(x, 1)})${incomplete('petcover')}${incomplete(peer)}`,
      met: judged(x, (v) => v >= 10),
    });
  }
  const drainVsBull = ratio(drain('petcover'), drain(BULLMQ_REDIS));
  goals.push({
    goal: "drain ≥ BullMQ (Redis)'s",
    figure: `${int(drain('petcover'))} vs ${int(drain(BULLMQ_REDIS))} events/s (× ${dec(drainVsBull)})${incomplete('petcover')}${incomplete(BULLMQ_REDIS)}`,
    met: judged(drainVsBull, (v) => v >= 1),
  });
  const bull = liveAt(r.live, BULLMQ_REDIS, rate);
  const p50VsBull = ratio(ours?.commitToHandler.p50Ms, bull?.commitToHandler.p50Ms);
  goals.push({
    goal: `p50 at ${int(rate)}/s ≤ 2 × BullMQ (Redis)'s (it skips the transaction and the second hop)`,
    figure: `${dec(ours?.commitToHandler.p50Ms)} vs ${dec(bull?.commitToHandler.p50Ms)} ms (× ${dec(p50VsBull)})`,
    met: judged(p50VsBull, (v) => v <= 2),
  });
  return goals;
}
