/**
 * The consumer's configuration from the environment, parsed once at start.
 * No other file reads process.env.
 */
import { baseEnvSchema } from '@petcover/service-kit';
import { z } from 'zod';

export const DEFAULT_HEALTH_PORT = 9102;
export const DEFAULT_CONSUMER_GROUP = 'events-consumer';

/** `stream:a:b=4,stream:c:d=2` → { 'stream:a:b': 4, 'stream:c:d': 2 }. Throws naming the bad item. */
export function parseStreamPartitions(text: string): Record<string, number> {
  const partitions: Record<string, number> = {};
  for (const item of text.split(',').map((s) => s.trim()).filter(Boolean)) {
    const match = /^(stream:[A-Za-z0-9_-]+:[A-Za-z0-9_.-]+)=([1-9][0-9]*)$/.exec(item);
    if (!match) throw new Error(`"${item}" is not <stream:context:name>=<positive integer>`);
    partitions[match[1] as string] = Number(match[2]);
  }
  return partitions;
}

const streamPartitions = z.string().transform((text, ctx) => {
  try {
    return parseStreamPartitions(text);
  } catch (error) {
    ctx.addIssue({ code: 'custom', message: (error as Error).message });
    return z.NEVER;
  }
});

export const envSchema = baseEnvSchema({ healthPort: DEFAULT_HEALTH_PORT }).extend({
  /** One consumer group per deployment; every replica of it shares the partitions. */
  CONSUMER_GROUP: z.string().regex(/^[A-Za-z0-9_.-]+$/, 'only letters, digits and _.- are allowed').default(DEFAULT_CONSUMER_GROUP),
  /** Prefix of every Redis key (must match the publisher's). */
  REDIS_KEY_PREFIX: z.string().default(''),
  /** Partition counts overriding the module's, e.g. `stream:a:b=4,stream:c:d=2` (must match the publisher's). */
  STREAM_PARTITIONS: streamPartitions.optional(),
});

export type ConsumerEnv = z.output<typeof envSchema>;
