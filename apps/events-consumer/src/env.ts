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
  /** Deadline of one handler call in seconds (`--handler-timeout` wins). */
  HANDLER_TIMEOUT_S: z.coerce.number().min(0.01).max(3_600).optional(),
  /** Byte budget of one read (`--read-max-bytes` wins); see the README's memory rule. */
  READ_MAX_BYTES: z.coerce.number().int().min(1024).optional(),
  /**
   * Days processed_event rows are kept. Must exceed the outbox retention
   * (OUTBOX_RETENTION_DAYS, 7) so an outbox replay still finds them; rows of
   * events the outbox still holds are never pruned anyway.
   */
  INBOX_RETENTION_DAYS: z.coerce.number().positive().optional(),
});

export type ConsumerEnv = z.output<typeof envSchema>;
