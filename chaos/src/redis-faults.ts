/**
 * The Redis faults a chaos run makes by hand, beyond restarts and master
 * kills: a restore from an older snapshot, a foreign key of the wrong type
 * planted where a stream should be, and the planted loss that proves the
 * verdict can fail (Postgres's record of what Redis held erased).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { DedicatedRedis } from '@petcover/outbox/testing';
import { createRedisClient, type RedisClient, type RedisConnection } from '@petcover/service-kit';
import type postgres from 'postgres';

/** What a WRONGTYPE plant writes where the stream was. */
const PLANTED_VALUE = 'planted by pnpm chaos: not a stream';

/**
 * `SAVE`, `trafficMs` more traffic, `SHUTDOWN NOSAVE`, restart from that dump:
 * Redis comes back older than Postgres's record. `whileDown` runs while the
 * server is down (the planted loss erases the record there).
 */
export async function restoreOlderSnapshot(
  redis: DedicatedRedis,
  trafficMs: number,
  signal: AbortSignal | undefined,
  whileDown?: () => Promise<void>,
): Promise<void> {
  await redis.saveSnapshot();
  await sleep(trafficMs, undefined, { signal });
  await redis.restartFromSnapshot({ whileDown });
}

/**
 * Erases what the publisher reads to find out what Redis lost: the entry id
 * recorded with each published row and every partition's recorded position.
 * With them gone, a Redis that went back in time looks up to date.
 */
export async function eraseRedisRecord(sql: postgres.Sql): Promise<void> {
  await sql.begin(async (tx) => {
    await tx`UPDATE events.outbox_event SET redis_entry_id = NULL WHERE redis_entry_id IS NOT NULL`;
    await tx`DELETE FROM events.redis_stream_position`;
  });
}

export interface WrongTypePlant {
  key: string;
  /** The stream was back in place at the end (false: Redis lost the plant meanwhile, e.g. restarted). */
  restored: boolean;
}

/**
 * Moves the stream at `key` aside and plants a string there (one MULTI, so
 * nothing appends in between), holds it for `heldMs`, then removes the string
 * and moves the stream back (one MULTI again). Readers and writers of `key`
 * get WRONGTYPE meanwhile; the stream's entries, groups and meta hash are
 * untouched. The aside key shares the stream's hash tag (one cluster slot).
 */
export async function plantWrongType(connection: RedisConnection, key: string, heldMs: number, signal: AbortSignal | undefined): Promise<WrongTypePlant> {
  const aside = `{${key}}:chaos-aside`;
  const client = createRedisClient(connection, { maxRetriesPerRequest: 3 });
  client.on('error', () => undefined);
  try {
    // RENAME fails when the key is missing (nothing to keep aside); SET still runs: EXEC does not roll back.
    await client.multi().rename(key, aside).set(key, PLANTED_VALUE).exec();
    await sleep(heldMs, undefined, { signal });
    return { key, restored: await removeWrongType(client, key, aside) };
  } finally {
    client.disconnect();
  }
}

async function removeWrongType(client: RedisClient, key: string, aside: string): Promise<boolean> {
  if ((await client.get(key).catch(() => null)) !== PLANTED_VALUE) return false; // Redis lost the plant (restarted)
  const replies = await client.multi().del(key).rename(aside, key).exec();
  return replies?.[1]?.[0] === null; // the RENAME back succeeded
}
