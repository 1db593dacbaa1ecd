/**
 * Keeping up: the producer's rate is stepped up; at each step the backlog
 * (committed − handled) is sampled every 500 ms. The highest rate whose
 * backlog trend stays flat (grows by < 2% of the rate) while the producer
 * really reached the rate is the figure.
 */
import { connectDatabase } from '@petcover/outbox';
import { setTimeout as sleep } from 'node:timers/promises';
import { runOpenLoopProducer } from '../producer';
import { backlogStaysFlat, slopePerSecond, type Sample } from '../stats';
import type { SystemUnderTest } from '../systems/system';
import { handledCount } from '../workload';
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
  const producerDb = connectDatabase(env.databaseUrl, { max: profile.producerConnections, applicationName: 'petcover-bench-producer' });
  const steps: KeepingUpStep[] = [];
  let committed = 0;
  let nextSeq = 1;
  try {
    for (const rate of profile.keepingUpRates) {
      const samples: Sample[] = [];
      const stepStart = performance.now();
      const producing = runOpenLoopProducer({
        db: producerDb.db,
      connections: profile.producerConnections,
        emit: running.emit,
        ratePerSec: rate,
        durationMs: profile.keepingUpStepMs,
        firstSeq: nextSeq,
        onCommitted: () => (committed += 1),
      });
      let done = false;
      void producing.finally(() => (done = true));
      while (!done) {
        await sleep(500);
        const atMs = performance.now() - stepStart;
        const backlog = committed - (await handledCount(env.db.sql));
        if (atMs >= profile.keepingUpStepMs * SETTLING_SHARE) samples.push({ atMs, value: backlog });
      }
      const result = await producing;
      if (result.failed > 0) throw new Error(`${result.failed} producer transactions failed at ${rate}/s; first: ${result.firstError}`);
      nextSeq += result.scheduled;
      const backlogAtEnd = committed - (await handledCount(env.db.sql));
      const producerLimited = result.achievedRatePerSec < rate * PRODUCER_REACHED;
      const step: KeepingUpStep = {
        ratePerSec: rate,
        achievedRatePerSec: result.achievedRatePerSec,
        backlogAtEnd,
        backlogSlopePerSec: slopePerSecond(samples),
        flat: !producerLimited && backlogStaysFlat(samples, rate),
        producerLimited,
        flatAtAchievedRate: backlogStaysFlat(samples, result.achievedRatePerSec),
      };
      steps.push(step);
      ctx.log(
        `keeping up at ${rate}/s: achieved ${result.achievedRatePerSec.toFixed(0)}/s, backlog ${backlogAtEnd}, trend ${step.backlogSlopePerSec.toFixed(1)}/s → ${step.flat ? 'flat' : 'falling behind'}`,
      );
      if (!step.flat) break;
    }
  } finally {
    await producerDb.close();
    await running.stop();
  }
  const flat = steps.filter((s) => s.flat).map((s) => s.ratePerSec);
  const last = steps.at(-1);
  return {
    stepSeconds: profile.keepingUpStepMs / 1000,
    steps,
    highestFlatRatePerSec: flat.length > 0 ? Math.max(...flat) : null,
    producerCeilingKeptUpPerSec: last?.producerLimited && last.flatAtAchievedRate ? last.achievedRatePerSec : null,
  };
}
