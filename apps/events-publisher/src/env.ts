/**
 * The publisher's configuration from the environment, parsed once at start
 * (zod). The only place this app reads process.env.
 */
import { keyPrefixSchema, streamPartitionsSchema } from '@petcover/outbox';
import { baseEnvSchema, redisClusterEnvFields } from '@petcover/service-kit';
import { z } from 'zod';

/** Default port of /healthz, /readyz and /metrics. */
export const DEFAULT_HEALTH_PORT = 9101;

/** Test-only fault injection; never set in production. */
export const FAULTS = ['exit-after-append', 'stop-before-append'] as const;

export const envSchema = baseEnvSchema({ healthPort: DEFAULT_HEALTH_PORT }).extend({
  ...redisClusterEnvFields,
  /** Prefix of every Redis key the publisher writes (isolates tests and benchmarks). */
  REDIS_KEY_PREFIX: keyPrefixSchema,
  /** `stream:a:b=4,stream:c:d=2`; streams not listed have one partition. */
  STREAM_PARTITIONS: streamPartitionsSchema.default({}),
  /** Bytes of payload + headers per drain batch (default: PUBLISHER_DEFAULTS.batchMaxBytes); see the README's memory rule. */
  PUBLISHER_BATCH_MAX_BYTES: z.coerce.number().int().min(1024).optional(),
  /** Days published rows stay in the outbox before pruning (default 7). */
  OUTBOX_RETENTION_DAYS: z.coerce.number().positive().default(7),
  /**
   * Test-only: `exit-after-append` exits between the Redis append and the
   * published_at update; `stop-before-append` SIGSTOPs the process with its
   * first batch in hand (a zombie once its lease expires).
   */
  PETCOVER_FAULT: z.enum(FAULTS).optional(),
});

export type PublisherEnv = z.output<typeof envSchema>;
