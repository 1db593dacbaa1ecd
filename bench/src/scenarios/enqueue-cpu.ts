/**
 * `enqueue`'s client CPU per call: what every producer of the API pays in its
 * own process. Sequential calls in one transaction that is rolled back;
 * process CPU (user + system) over the calls. It includes postgres.js's
 * encoding and parsing of each round trip, not the server's work.
 */
import { enqueue } from '@petcover/outbox';
import { BENCH_EVENT_TYPE } from '../bench-event';
import type { ScenarioContext } from './context';

export interface EnqueueCpuResult {
  calls: number;
  /** Client CPU per call, ms. */
  cpuMsPerCall: number;
  /** Wall time per call (one round trip each), ms. */
  wallMsPerCall: number;
}

/** Calls left out first, so the figure is of warm (JIT-compiled) code. */
const WARM_UP_CALLS = 100;

class RolledBack extends Error {}

export async function measureEnqueueClientCpu(ctx: ScenarioContext, calls: number): Promise<EnqueueCpuResult> {
  const stream = 'stream:bench:enqueue_cpu';
  let result: EnqueueCpuResult | undefined;
  try {
    await ctx.env.db.db.transaction(async (tx) => {
      const call = (seq: number) => enqueue(tx, { stream, type: BENCH_EVENT_TYPE, partitionKey: `entity-${seq % 1024}`, payload: { seq } });
      for (let seq = 0; seq < WARM_UP_CALLS; seq += 1) await call(seq);
      const cpuBefore = process.cpuUsage();
      const wallBefore = performance.now();
      for (let seq = WARM_UP_CALLS; seq < WARM_UP_CALLS + calls; seq += 1) await call(seq);
      const cpu = process.cpuUsage(cpuBefore);
      result = { calls, cpuMsPerCall: (cpu.user + cpu.system) / 1000 / calls, wallMsPerCall: (performance.now() - wallBefore) / calls };
      throw new RolledBack();
    });
  } catch (error) {
    if (!(error instanceof RolledBack)) throw error;
  }
  if (!result) throw new Error('enqueue CPU was not measured');
  return result;
}
