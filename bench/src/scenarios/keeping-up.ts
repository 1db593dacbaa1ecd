/**
 * Keeping up: the producer's rate is stepped up; at each step the backlog
 * (committed − handled) is sampled every 500 ms. The producer is pgbench
 * (`-R`, open loop) running the system's own producer transaction, so the
 * producer's cost does not decide the ceiling. The highest rate whose
 * backlog trend stays flat (grows by < 2% of the rate) while the producer
 * really reached the rate is the figure.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { runPgbench } from '../pgbench';
import { backlogStaysFlat, slopePerSecond, type Sample } from '../stats';
import type { SystemUnderTest } from '../systems/system';
import { countRows } from '../workload';
import type { ScenarioContext } from './context';

export interface KeepingUpStep {
  ratePerSec: number;
  achievedRatePerSec: number;
  backlogAtEnd: number;
  backlogSlopePerSec: number;
  flat: boolean;
  /** The producer itself could not reach the rate (machine-bound, not the pipeline). */
  producerLimited: boolean;
  /** The backlog stayed flat at the rate the producer did reach. */
  flatAtAchievedRate: boolean;
}

export interface KeepingUpResult {
  stepSeconds: number;
  steps: KeepingUpStep[];
  /** Highest rate with a flat backlog; null if even the first step fell behind. */
  highestFlatRatePerSec: number | null;
  /**
   * When the producer hit its own ceiling before the pipeline fell behind:
   * the rate it reached, at which the backlog stayed flat (the pipeline kept
   * up with everything this machine's producers could commit).
   */
  producerCeilingKeptUpPerSec: number | null;
}

/** The producer must reach this share of the offered rate for a step to count. */
const PRODUCER_REACHED = 0.95;
/** Share of each step left out of the trend: the move to the new equilibrium. */
const SETTLING_SHARE = 0.15;

export async function runKeepingUp(ctx: ScenarioContext, system: SystemUnderTest): Promise<KeepingUpResult> {
  const { env, profile } = ctx;
  await env.reset();
  const running = await system.start();
  const steps: KeepingUpStep[] = [];
  const stepSeconds = Math.ceil(profile.keepingUpStepMs / 1000);
  // Committed minus handled, both counted in the database (pgbench commits where we cannot count).
  const backlog = () => countRows(env.db.sql, '(SELECT count(*) FROM bench.domain_row) - (SELECT count(*) FROM bench.handled)');
  try {
    const script = running.pgbenchScript;
    if (!script) throw new Error(`${system.name} has no pgbench producer transaction`);
    for (const rate of profile.keepingUpRates) {
      const samples: Sample[] = [];
      const stepStart = performance.now();
      const producing = runPgbench({
        databaseUrl: env.databaseUrl,
        script: script.script,
        variables: script.variables,
        clients: profile.producerConnections,
        seconds: stepSeconds,
        ratePerSec: rate,
        latencyLimitMs: 2000,
      });
      let done = false;
      void producing.then(
        () => (done = true),
        () => (done = true),
      );
      while (!done) {
        await sleep(500);
        const atMs = performance.now() - stepStart;
        const value = await backlog();
        if (atMs >= profile.keepingUpStepMs * SETTLING_SHARE && !done) samples.push({ atMs, value });
      }
      const result = await producing;
      if (result.failed > 0) throw new Error(`${result.failed} pgbench transactions failed at ${rate}/s`);
      const achievedRatePerSec = result.processed / stepSeconds;
      const backlogAtEnd = await backlog();
      const producerLimited = achievedRatePerSec < rate * PRODUCER_REACHED;
      const step: KeepingUpStep = {
        ratePerSec: rate,
        achievedRatePerSec,
        backlogAtEnd,
        backlogSlopePerSec: slopePerSecond(samples),
        flat: !producerLimited && backlogStaysFlat(samples, rate),
        producerLimited,
        flatAtAchievedRate: backlogStaysFlat(samples, achievedRatePerSec),
      };
      steps.push(step);
      ctx.log(
        `keeping up at ${rate}/s: achieved ${achievedRatePerSec.toFixed(0)}/s, backlog ${backlogAtEnd}, trend ${step.backlogSlopePerSec.toFixed(1)}/s → ${step.flat ? 'flat' : 'falling behind'}`,
      );
      if (!step.flat) break;
    }
  } finally {
    await running.stop();
  }
  const flat = steps.filter((s) => s.flat).map((s) => s.ratePerSec);
  const last = steps.at(-1);
  return {
    stepSeconds,
    steps,
    highestFlatRatePerSec: flat.length > 0 ? Math.max(...flat) : null,
    producerCeilingKeptUpPerSec: last?.producerLimited && last.flatAtAchievedRate ? last.achievedRatePerSec : null,
  };
}
