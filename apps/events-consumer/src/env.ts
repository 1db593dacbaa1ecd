/**
 * The consumer's configuration from the environment, parsed once at start.
 * No other file reads process.env.
 */
import { keyPrefixSchema, streamPartitionsSchema } from '@petcover/outbox';
import { baseEnvSchema, redisClusterEnvFields } from '@petcover/service-kit';
import { z } from 'zod';

export const DEFAULT_HEALTH_PORT = 9102;
export const DEFAULT_CONSUMER_GROUP = 'events-consumer';

export const envSchema = baseEnvSchema({ healthPort: DEFAULT_HEALTH_PORT }).extend({
  ...redisClusterEnvFields,
  /** One consumer group per deployment; every replica of it shares the partitions. */
  CONSUMER_GROUP: z.string().regex(/^[A-Za-z0-9_.-]+$/, 'only letters, digits and _.- are allowed').default(DEFAULT_CONSUMER_GROUP),
  /** Prefix of every Redis key (must match the publisher's). */
  REDIS_KEY_PREFIX: keyPrefixSchema,
  /** Partition counts overriding the module's, e.g. `stream:a:b=4,stream:c:d=2` (must match the publisher's). */
  STREAM_PARTITIONS: streamPartitionsSchema.optional(),
});

export type ConsumerEnv = z.output<typeof envSchema>;
