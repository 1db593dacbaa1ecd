/**
 * The consumer module the benchmark plugs into the real consumer app
 * (`events-consumer start --module <this file>`): one handler that writes one
 * row per event in the consumer's transaction, recording the database clock
 * so latency is measured on one clock.
 *
 * Env (read here because this file is the consumer's entry point for the
 * bench): BENCH_STREAMS = `stream:a:b=4,stream:c:d=1` (stream=partitions);
 * BENCH_HANDLER = batch (default) or per-event.
 */
import { sql } from 'drizzle-orm';
import { z } from 'zod';
import { executePrepared, parseStreamPartitions, type ConsumerModule, type EventHandler, type HandlerRegistry, type Transaction } from '@petcover/outbox';
import { BENCH_EVENT_TYPE } from './bench-event';

const benchPayload = z.object({ seq: z.number().int().nonnegative() });

/** `stream:a:b=4,stream:c:d=1` → [{name, partitions}]. */
export function parseBenchStreams(value: string | undefined): Array<{ name: string; partitions: number }> {
  if (!value) throw new Error('BENCH_STREAMS is not set: the bench consumer module needs the streams to read');
  try {
    return Object.entries(parseStreamPartitions(value)).map(([name, partitions]) => ({ name, partitions }));
  } catch (error) {
    throw new Error(`BENCH_STREAMS: ${(error as Error).message}`);
  }
}

/**
 * seq values → one `bench.handled` row each, in one statement, prepared
 * (executePrepared: one round trip; drizzle's `tx.execute` would describe it
 * first, two), as the README advises handler authors for hot statements.
 */
const insertHandled = (tx: Transaction, seqs: readonly number[]) =>
  executePrepared(tx, sql`INSERT INTO bench.handled (seq, handled_at) SELECT unnest(${`{${seqs.join(',')}}`}::bigint[]), clock_timestamp()`);

/**
 * `BENCH_HANDLER=per-event` registers only `handle` (one INSERT per event);
 * the default adds `handleBatch` (one INSERT per run of consecutive events).
 * Same effect either way: one row per event, in the consumer's transaction.
 */
export type BenchHandlerMode = 'batch' | 'per-event';

export function registerBenchHandler(registry: HandlerRegistry, mode = process.env.BENCH_HANDLER ?? 'batch'): void {
  if (mode !== 'batch' && mode !== 'per-event') throw new Error(`BENCH_HANDLER must be batch or per-event (got ${JSON.stringify(mode)})`);
  const handler: EventHandler<z.infer<typeof benchPayload>> = {
    schema: benchPayload,
    handle: async (event, { tx }) => void (await insertHandled(tx, [event.payload.seq])),
  };
  if (mode === 'batch') handler.handleBatch = async (events, { tx }) => void (await insertHandled(tx, events.map((e) => e.payload.seq)));
  registry.register(BENCH_EVENT_TYPE, handler);
}

export const consumerModule: ConsumerModule = {
  streams: parseBenchStreams(process.env.BENCH_STREAMS),
  register: (registry) => registerBenchHandler(registry),
};

export default consumerModule;
