/**
 * Configuration of the `events` command, read once from the environment:
 * the same variables the apps read, so `events status` run in an app's
 * container or shell sees what that app sees.
 */
import { DEFAULT_DATABASE_URL, DEFAULT_REDIS_URL, redisClusterEnvFields, redisConnectionOf, type RedisConnection } from '@petcover/service-kit';
import { z } from 'zod';
import { keyPrefixSchema, parseStreamPartitions, type StreamPartitions } from '../streams';

export const eventsCliEnvSchema = z.object({
  DATABASE_URL: z.string().url().default(DEFAULT_DATABASE_URL),
  REDIS_URL: z.string().url().default(DEFAULT_REDIS_URL),
  ...redisClusterEnvFields,
  REDIS_KEY_PREFIX: keyPrefixSchema,
  STREAM_PARTITIONS: z.string().default(''),
});

export interface EventsCliConfig {
  databaseUrl: string;
  /** REDIS_URL, and the cluster seeds when REDIS_CLUSTER=1. */
  redis: RedisConnection;
  keyPrefix: string;
  partitions: StreamPartitions;
}

/** Throws Error with a one-line reason when a variable is malformed. */
export function readEventsCliConfig(env: Readonly<Record<string, string | undefined>>): EventsCliConfig {
  const cleaned = Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined && v !== ''));
  const parsed = eventsCliEnvSchema.safeParse(cleaned);
  if (!parsed.success) {
    throw new Error(`invalid configuration: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`);
  }
  return {
    databaseUrl: parsed.data.DATABASE_URL,
    redis: redisConnectionOf(parsed.data),
    keyPrefix: parsed.data.REDIS_KEY_PREFIX,
    partitions: parseStreamPartitions(parsed.data.STREAM_PARTITIONS),
  };
}
