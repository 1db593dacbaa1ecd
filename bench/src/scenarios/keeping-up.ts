/**
 * Keeping up: the producer's rate is stepped up; at each step the backlog
 * (committed − handled) is sampled every 500 ms. The producer is pgbench
 * (`-R`, open loop) running the system's own producer transaction, so the
 * producer's cost does not decide the ceiling. The highest rate whose
 * backlog trend stays flat (grows by < 2% of the rate) while the producer
 * really reached the rate is the figure.
 *
 * When the producer itself cannot reach a step (its durable commits wait for
 * the WAL flush: on a slow disk the producer-shaped commit limit is below
 * the rates worth measuring), the steps go on with the producer's sessions
 * at `synchronous_commit = off`: the producer's commits no longer wait for
 * the flush, so the pipeline (whose own commits stay durable) is what is
 * measured. Those steps are marked, and reported apart.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { runPgbench } from '../pgbench';
import { backlogStaysFlat, slopePerSecond, type Sample } from '../stats';
import type { SystemUnderTest } from '../systems/system';
import { countRows } from '../workload';
import type { ScenarioContext } from './context';

/** How the producer's sessions commit: durably (as an application would), or without waiting for the WAL flush. */
export type ProducerCommit = 'durable' | 'async';

export interface KeepingUpStep {
  ratePerSec: number;
  /** Absent in results from before async steps existed: durable. */
  producerCommit?: ProducerCommit;
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
  /**
   * Highest rate with a flat backlog over all steps, those whose producer
   * committed without waiting for the WAL flush included: what the pipeline
   * keeps up with when the producer is not the ceiling. Equals
   * highestFlatRatePerSec when no async step ran.
   */
  pipelineHighestFlatRatePerSec: number | null;
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
    let producerCommit: ProducerCommit = 'durable';
    const rates = [...profile.keepingUpRates];
    for (let i = 0; i < rates.length; i++) {
      const rate = rates[i] as number;
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
        sessionSettings: producerCommit === 'async' ? { synchronous_commit: 'off' } : undefined,
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
        producerCommit,
        achievedRatePerSec,
        backlogAtEnd,
        backlogSlopePerSec: slopePerSecond(samples),
        flat: !producerLimited && backlogStaysFlat(samples, rate),
        producerLimited,
        flatAtAchievedRate: backlogStaysFlat(samples, achievedRatePerSec),
      };
      steps.push(step);
      ctx.log(
        `keeping up at ${rate}/s (${producerCommit} producer): achieved ${achievedRatePerSec.toFixed(0)}/s, backlog ${backlogAtEnd}, trend ${step.backlogSlopePerSec.toFixed(1)}/s → ${step.flat ? 'flat' : producerLimited ? 'producer-bound' : 'falling behind'}`,
      );
      if (step.flat) continue;
      // The durable producer is the ceiling while the pipeline kept up: the same rate again, the producer not waiting for the flush.
      if (producerCommit === 'durable' && producerLimited && step.flatAtAchievedRate) {
        producerCommit = 'async';
        i--;
        continue;
      }
      break;
    }
  } finally {
    await running.stop();
  }
  return summarizeKeepingUp(stepSeconds, steps);
}

/** The figures of a run of steps (see KeepingUpResult). */
export function summarizeKeepingUp(stepSeconds: number, steps: KeepingUpStep[]): KeepingUpResult {
  const durable = steps.filter((s) => (s.producerCommit ?? 'durable') === 'durable');
  const highest = (of: KeepingUpStep[]) => {
    const flat = of.filter((s) => s.flat).map((s) => s.ratePerSec);
    return flat.length > 0 ? Math.max(...flat) : null;
  };
  const lastDurable = durable.at(-1);
  return {
    stepSeconds,
    steps,
    highestFlatRatePerSec: highest(durable),
    producerCeilingKeptUpPerSec: lastDurable?.producerLimited && lastDurable.flatAtAchievedRate ? lastDurable.achievedRatePerSec : null,
    pipelineHighestFlatRatePerSec: highest(steps),
  };
}
