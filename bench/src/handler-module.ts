/**
 * The consumer module the benchmark plugs into the real consumer app
 * (`events-consumer start --module <this file>`): one handler that writes one
 * row in the consumer's transaction, recording the database clock so latency
 * is measured on one clock.
 *
 * Env (read here because this file is the consumer's entry point for the
 * bench): BENCH_STREAMS = `stream:a:b=4,stream:c:d=1` (stream=partitions).
 */
import { sql } from 'drizzle-orm';
import { z } from 'zod';
import type { ConsumerModule } from '@petcover/outbox';
import { BENCH_EVENT_TYPE } from './bench-event';

const benchPayload = z.object({ seq: z.number().int().nonnegative() });

/** `stream:a:b=4,stream:c:d` → [{name, partitions}]. */
export function parseBenchStreams(value: string | undefined): Array<{ name: string; partitions: number }> {
  if (!value) throw new Error('BENCH_STREAMS is not set: the bench consumer module needs the streams to read');
  return value.split(',').map((item) => {
    const at = item.lastIndexOf('=');
    const name = at > 0 ? item.slice(0, at) : item;
    const partitions = at > 0 ? Number(item.slice(at + 1)) : 1;
    if (!Number.isInteger(partitions) || partitions < 1) throw new Error(`BENCH_STREAMS: bad partition count in ${JSON.stringify(item)}`);
    return { name, partitions };
  });
}

export const consumerModule: ConsumerModule = {
  streams: parseBenchStreams(process.env.BENCH_STREAMS),
  register(registry) {
    registry.register(BENCH_EVENT_TYPE, {
      schema: benchPayload,
      // One append-only insert that reads nothing back: the batch's inserts can travel pipelined.
      pipelined: true,
      async handle(event, { tx }) {
        await tx.execute(sql`INSERT INTO bench.handled (seq, handled_at) VALUES (${event.payload.seq}, clock_timestamp())`);
      },
    });
  },
};

export default consumerModule;
