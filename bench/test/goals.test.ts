import { computeGoals } from '../src/goals';
import { renderMarkdown, type BenchResults } from '../src/report';
import type { DrainResult } from '../src/scenarios/end-to-end';
import { summarizeKeepingUp } from '../src/scenarios/keeping-up';
import type { LiveResult } from '../src/scenarios/live';
import { summariseLatencies } from '../src/stats';

const live = (system: string, p50: number, p99: number, cpuPerThousand: number, reachedShare = 1): LiveResult => ({
  system,
  delivery: `${system} delivery`,
  producer: system.startsWith('bullmq') ? 'node' : 'pgbench',
  producerTransaction: 'x',
  ratePerSec: 1000,
  measuredSeconds: 15,
  connections: 4,
  scheduled: 18_000,
  committed: Math.round(18_000 * reachedShare),
  reachedShare,
  skipped: 0,
  scheduleLagMaxMs: 3,
  handled: Math.round(18_000 * reachedShare),
  complete: true,
  // Three samples: p50 is the middle one, p99 and max the last.
  commitToHandler: summariseLatencies([p50 / 2, p50, p99]),
  cpu: { windowSeconds: 16, events: 15_000, perThousandEvents: { publisher: cpuPerThousand / 2, consumer: cpuPerThousand / 2 }, totalPerThousandEvents: cpuPerThousand, producerClientPerThousandEvents: 0.1 },
});

const drain = (system: string, eventsPerSec: number): DrainResult => ({
  system, settings: {}, events: 10, handled: 10, duplicates: 0, seconds: 1, eventsPerSec, peakRssMiB: {}, complete: true,
});

const results = (): BenchResults => ({
  date: '2026-11-29T00:00:00.000Z',
  profile: 'full',
  durationSeconds: 1,
  machine: { cpus: 2, cpuModel: 'test cpu', memoryGiB: 1, os: 'Linux', loadAverageAtStart: [0, 0, 0] },
  versions: {},
  notes: [],
  limits: { batchedInsertRowsPerSec: 100_000, singleRowCommitsPerSec: 4000, notifyingCommitsPerSec: 2000, xaddPerSec: 1, xaddPipelinedPerSec: 1, settings: {} },
  relay: [{ streams: 1, events: 1, published: 1, inRedis: 1, seconds: 1, eventsPerSec: 40_000, publisherPeakRssMiB: 1, complete: true }],
  drain: [drain('petcover', 15_000), drain('graphile-worker', 1000), drain('pg-boss', 2000), drain('bullmq (redis)', 10_000)],
  latency: [],
  live: [live('petcover', 8, 20, 1.5), live('graphile-worker', 10, 30, 2), live('bullmq (redis)', 3, 10, 1)],
  enqueueCpu: { calls: 100, cpuMsPerCall: 0.2, wallMsPerCall: 0.5 },
  keepingUp: { stepSeconds: 20, steps: [], highestFlatRatePerSec: 1500, producerCeilingKeptUpPerSec: null, pipelineHighestFlatRatePerSec: 1500 },
  failover: null,
  memory: null,
  ratios: [],
  goals: [],
  errors: [],
});

describe('goals as ratios inside one run', () => {
  it('judges each goal from figures of the same run', () => {
    const byGoal = Object.fromEntries(computeGoals(results(), 1000).map((g) => [g.goal, g.met]));
    expect(byGoal).toEqual({
      'highest rate with a flat backlog ≥ 50 % of the single-row commit limit': false, // 1,500 of 4,000
      'at 1,000 events/s the producer reaches ≥ 95 % of its schedule': true,
      "commit → handler p50 at 1,000/s ≤ graphile-worker's": true,
      'commit → handler p99 at 1,000/s ≤ 15 ms': false,
      "CPU per event at 1,000/s ≤ graphile-worker's": true,
      'relay ≥ 50 % of batched INSERT': false, // 40 %
      "drain ≥ 10 × graphile-worker's": true,
      "drain ≥ 10 × pg-boss's": false, // 7.5 ×
      "drain ≥ BullMQ (Redis)'s": true,
      "p50 at 1,000/s ≤ 2 × BullMQ (Redis)'s (it skips the transaction and the second hop)": false, // 8 vs 3 ms
    });
  });

  it('calls a goal not measured, never met, when one side is missing', () => {
    const r = results();
    r.live = r.live.filter((l) => l.system !== 'graphile-worker');
    r.drain = r.drain.filter((d) => d.system !== 'pg-boss');
    const goals = computeGoals(r, 1000);
    expect(goals.find((g) => g.goal.startsWith('commit → handler p50'))?.met).toBeNull();
    expect(goals.find((g) => g.goal.startsWith('CPU per event'))?.met).toBeNull();
    expect(goals.find((g) => g.goal === "drain ≥ 10 × pg-boss's")?.met).toBeNull();
  });

  it("judges a drain that did not finish by the rate it reached, and says it did not finish", () => {
    const r = results();
    r.drain = r.drain.map((d) => (d.system === 'bullmq (redis)' ? { ...d, complete: false, eventsPerSec: 20_000 } : d));
    const goal = computeGoals(r, 1000).find((g) => g.goal === "drain ≥ BullMQ (Redis)'s");
    expect(goal).toEqual({ goal: "drain ≥ BullMQ (Redis)'s", figure: "15,000 vs 20,000 events/s (× 0.75) (bullmq (redis)'s drain incomplete)", met: false });
  });

  it('prints the live table with CPU by process and the goal table', () => {
    const r = results();
    r.goals = computeGoals(r, 1000);
    const markdown = renderMarkdown(r);
    expect(markdown).toContain('### Live traffic: one event per producer transaction, open loop');
    expect(markdown).toContain('| petcover | 1,000 | 100 % | 8.00 / 20.00 / 20.00 | 1.500 | publisher 0.750; consumer 0.750 | 0.100 (pgbench) | petcover delivery |');
    expect(markdown).toContain('| bullmq (redis) | 1,000 | 100 % | 3.00 / 10.00 / 10.00 | 1.000 | publisher 0.500; consumer 0.500 | 0.100 (node) |');
    expect(markdown).toContain('| relay ≥ 50 % of batched INSERT | 40,000 events/s (1 stream) = 40 % of 100,000 rows/s | ✗ |');
    expect(markdown).toContain("| drain ≥ 10 × graphile-worker's | 15,000 vs 1,000 events/s (× 15.0) | ✓ |");
  });

  it('judges keeping up by the pipeline when the producer was taken out of the ceiling, and says so', () => {
    const r = results();
    const step = (ratePerSec: number, producerCommit: 'durable' | 'async', flat: boolean, achieved = ratePerSec) => ({
      ratePerSec, producerCommit, achievedRatePerSec: achieved, backlogAtEnd: 0, backlogSlopePerSec: 0, flat,
      producerLimited: achieved < ratePerSec * 0.95, flatAtAchievedRate: true,
    });
    // Durable: 1,500 flat, 2,000 producer-bound at 1,400/s; async: 2,000 and 2,500 flat, 3,000 behind.
    const steps = [step(1500, 'durable', true), step(2000, 'durable', false, 1400), step(2000, 'async', true), step(2500, 'async', true), { ...step(3000, 'async', false), flatAtAchievedRate: false }];
    r.keepingUp = summarizeKeepingUp(20, steps);
    expect(r.keepingUp).toMatchObject({ highestFlatRatePerSec: 1500, producerCeilingKeptUpPerSec: 1400, pipelineHighestFlatRatePerSec: 2500 });
    const goal = computeGoals(r, 1000).find((g) => g.goal.startsWith('highest rate with a flat backlog'));
    expect(goal).toMatchObject({ figure: '2,500/s = 63 % of 4,000/s (producer at synchronous_commit = off; with a durable producer 1,500/s, its own ceiling)', met: true });
    r.goals = computeGoals(r, 1000);
    expect(renderMarkdown(r)).toContain('(steps: 1,500, 2,000 (the producer reached only 1,400/s), 2,000 async, 2,500 async, 3,000 async (fell behind))');
  });

  it('reads results from before async steps as durable throughout', () => {
    const k = summarizeKeepingUp(20, [{ ratePerSec: 500, achievedRatePerSec: 500, backlogAtEnd: 0, backlogSlopePerSec: 0, flat: true, producerLimited: false, flatAtAchievedRate: true }]);
    expect(k).toMatchObject({ highestFlatRatePerSec: 500, pipelineHighestFlatRatePerSec: 500 });
  });
});
