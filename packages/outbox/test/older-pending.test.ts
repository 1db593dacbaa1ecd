/**
 * The "older entries pending elsewhere" check of a `>` read (redis-group.ts),
 * on a real Redis: a partition's owner must never handle an entry while an
 * older one is pending under another consumer name (a replica that lost the
 * partition without knowing it read it just before), or per-key order breaks.
 *
 * Found by `pnpm chaos --duration 600 --seed 1795996000`: event 15895 of
 * orders-22 handled after 16982. The owner's idle wait took ONE entry (E1);
 * a stale replica's read took the next ones (E2, E3); the owner's
 * continuation read got E4. The check compared the group's oldest pending
 * entry with E1, and the oldest was E1 itself (the owner's own, not yet
 * acknowledged), so E2 and E3 went unnoticed until a later reclaim.
 */
import type { RedisClient } from '@petcover/service-kit';
import { ensureGroup, readGroup, waitForEntry } from '../src/consumer/redis-group';
import { createTestRedis, trackedRedisPrefixes } from '../src/testing';

let redis: RedisClient;
const prefixes = trackedRedisPrefixes();

beforeAll(() => {
  redis = createTestRedis();
});
afterAll(async () => {
  await prefixes.deleteAll(redis);
  redis.disconnect();
});

const read = (key: string, consumer: string, options: { continuing?: string } = {}) =>
  readGroup(redis, { key, group: 'g', consumer, from: '>', count: 10, maxBytes: 65_536, firstChunk: 10, ...options });

async function stream(): Promise<string> {
  const key = `${prefixes.next()}stream:older-pending`;
  await ensureGroup(redis, key, 'g');
  return key;
}

test('a continuation read sees entries pending under another consumer between the waited entry and what it read', async () => {
  const key = await stream();
  const e1 = (await redis.xadd(key, '*', 'n', '1'))!;
  const waited = await waitForEntry(redis, { key, group: 'g', consumer: 'owner', blockMs: 100 });
  expect(waited.entries.map((e) => e.id)).toEqual([e1]);
  expect(waited.olderPending).toBe(false);

  // A stale replica reads the next two entries: they are pending under its name.
  await redis.xadd(key, '*', 'n', '2');
  await redis.xadd(key, '*', 'n', '3');
  expect((await read(key, 'stale')).entries).toHaveLength(2);

  await redis.xadd(key, '*', 'n', '4');
  const rest = await read(key, 'owner', { continuing: e1 });
  expect(rest.entries).toHaveLength(1);
  expect(rest.olderPending).toBe(true);
});

test('a continuation read with nothing pending in between is not flagged (its own waited entry does not count)', async () => {
  const key = await stream();
  const e1 = (await redis.xadd(key, '*', 'n', '1'))!;
  await waitForEntry(redis, { key, group: 'g', consumer: 'owner', blockMs: 100 });
  await redis.xadd(key, '*', 'n', '2');
  const rest = await read(key, 'owner', { continuing: e1 });
  expect(rest.entries).toHaveLength(1);
  expect(rest.olderPending).toBe(false);
});

test('a plain read sees an older entry pending under another consumer, and not its own entries', async () => {
  const key = await stream();
  await redis.xadd(key, '*', 'n', '1');
  expect((await read(key, 'stale')).entries).toHaveLength(1);
  await redis.xadd(key, '*', 'n', '2');
  expect((await read(key, 'owner')).olderPending).toBe(true);

  const clean = await stream();
  await redis.xadd(clean, '*', 'n', '1');
  await redis.xadd(clean, '*', 'n', '2');
  expect((await read(clean, 'owner')).olderPending).toBe(false);
});
