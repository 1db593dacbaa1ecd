/**
 * The publisher's configuration from the environment, parsed once at start
 * (zod). The only place this app reads process.env.
 */
import { STREAM_NAME_PATTERN, type StreamPartitions } from '@petcover/outbox';
import { baseEnvSchema } from '@petcover/service-kit';
import { z } from 'zod';

/** Default port of /healthz, /readyz and /metrics. */
export const DEFAULT_HEALTH_PORT = 9101;

/** Test-only fault injection; never set in production. */
export const FAULTS = ['exit-after-append', 'stop-before-append'] as const;

/** Most partitions a stream may have: each is its own Redis stream and consumer lease. */
export const MAX_PARTITIONS = 1024;

/**
 * Parses `stream:a:b=4,stream:c:d=2` into per-stream partition counts.
 * Throws an Error naming the bad item.
 */
export function parseStreamPartitions(text: string): StreamPartitions {
  const result: Record<string, number> = {};
  for (const item of text.split(',').map((s) => s.trim()).filter(Boolean)) {
    const at = item.lastIndexOf('=');
    const stream = at > 0 ? item.slice(0, at) : '';
    const countText = at > 0 ? item.slice(at + 1) : '';
    if (!STREAM_NAME_PATTERN.test(stream)) throw new Error(`"${item}": expected stream:<context>:<name>=<count>`);
    const count = Number(countText);
    if (!/^\d+$/.test(countText) || count < 1 || count > MAX_PARTITIONS) {
      throw new Error(`"${item}": partition count must be an integer from 1 to ${MAX_PARTITIONS}`);
    }
    result[stream] = count;
  }
  return result;
}

const partitionsSchema = z.string().transform((text, ctx) => {
  try {
    return parseStreamPartitions(text);
  } catch (error) {
    ctx.addIssue({ code: 'custom', message: (error as Error).message });
    return z.NEVER;
  }
});

export const envSchema = baseEnvSchema({ healthPort: DEFAULT_HEALTH_PORT }).extend({
  /** Prefix of every Redis key the publisher writes (isolates tests and benchmarks). */
  REDIS_KEY_PREFIX: z.string().default(''),
  /** `stream:a:b=4,stream:c:d=2`; streams not listed have one partition. */
  STREAM_PARTITIONS: partitionsSchema.default({}),
  /** Seconds of published rows re-appended when Redis lost data (default 15 min). */
  PUBLISHER_RECOVERY_WINDOW_S: z.coerce.number().positive().default(15 * 60),
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
