/**
 * Configuration of the `events` command, read once from the environment:
 * the same variables the apps read, so `events status` run in an app's
 * container or shell sees what that app sees.
 */
import { z } from 'zod';
import { DEFAULT_DATABASE_URL } from '../db';
import { STREAM_NAME_PATTERN, type StreamPartitions } from '../streams';

export const DEFAULT_REDIS_URL = 'redis://localhost:6379/0';

/**
 * `stream:a:b=4,stream:c:d=2` → `{ 'stream:a:b': 4, 'stream:c:d': 2 }`.
 * Throws with the offending item when one is malformed.
 */
export function parseStreamPartitions(text: string | undefined): StreamPartitions {
  const partitions: Record<string, number> = {};
  for (const item of (text ?? '').split(',').map((s) => s.trim()).filter(Boolean)) {
    const at = item.lastIndexOf('=');
    const stream = item.slice(0, at);
    const count = Number(item.slice(at + 1));
    if (at <= 0 || !STREAM_NAME_PATTERN.test(stream) || !Number.isInteger(count) || count < 1) {
      throw new Error(`STREAM_PARTITIONS item ${JSON.stringify(item)} is not <stream:context:name>=<partitions>`);
    }
    partitions[stream] = count;
  }
  return partitions;
}

export const eventsCliEnvSchema = z.object({
  DATABASE_URL: z.string().url().default(DEFAULT_DATABASE_URL),
  REDIS_URL: z.string().url().default(DEFAULT_REDIS_URL),
  REDIS_KEY_PREFIX: z.string().default(''),
  STREAM_PARTITIONS: z.string().default(''),
});

export interface EventsCliConfig {
  databaseUrl: string;
  redisUrl: string;
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
    redisUrl: parsed.data.REDIS_URL,
    keyPrefix: parsed.data.REDIS_KEY_PREFIX,
    partitions: parseStreamPartitions(parsed.data.STREAM_PARTITIONS),
  };
}
