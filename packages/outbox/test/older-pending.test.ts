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

describe('a wait that brings the batch with it (the worker keeps its slot)', () => {
  const rest = { count: 9, maxBytes: 65_536, firstChunk: 9 };

  test('one pipeline: the previous batch acknowledged, the waited entry and what arrived with it read, nothing flagged', async () => {
    const key = await stream();
    const before = (await redis.xadd(key, '*', 'n', '0'))!;
    expect((await read(key, 'owner')).entries.map((e) => e.id)).toEqual([before]);
    const ids = [await redis.xadd(key, '*', 'n', '1'), await redis.xadd(key, '*', 'n', '2'), await redis.xadd(key, '*', 'n', '3')];
    const got = await waitForEntry(redis, { key, group: 'g', consumer: 'owner', blockMs: 100, ackFirst: [before], rest });
    expect(got.entries.map((e) => e.id)).toEqual(ids);
    expect(got.olderPending).toBe(false);
    expect(got.more).toBe(false);
    // The acknowledged entry left the pending list; the three read are pending under the owner.
    const pending = (await redis.call('XPENDING', key, 'g', '-', '+', '10')) as [string, string][];
    expect(pending.map(([id, consumer]) => [id, consumer])).toEqual(ids.map((id) => [id, 'owner']));
  });

  test('an entry pending under another consumer, older than the waited one, is flagged', async () => {
    const key = await stream();
    await redis.xadd(key, '*', 'n', '1');
    expect((await read(key, 'stale')).entries).toHaveLength(1);
    await redis.xadd(key, '*', 'n', '2');
    await redis.xadd(key, '*', 'n', '3');
    const got = await waitForEntry(redis, { key, group: 'g', consumer: 'owner', blockMs: 100, rest });
    expect(got.entries).toHaveLength(2);
    expect(got.olderPending).toBe(true);
  });

  test('the byte budget of the read behind the wait cuts the batch; what was not returned was not delivered, or is flagged as more', async () => {
    const key = await stream();
    const big = 'x'.repeat(1_000);
    for (let i = 0; i < 5; i++) await redis.xadd(key, '*', 'n', big);
    const got = await waitForEntry(redis, { key, group: 'g', consumer: 'owner', blockMs: 100, rest: { count: 9, maxBytes: 2_500, firstChunk: 1 } });
    // The waited entry, then what the read's 2,500-byte budget lets through (read-bounded.lua): not all five.
    expect(got.entries.length).toBeLessThan(5);
    const pending = (await redis.call('XPENDING', key, 'g', '-', '+', '10')) as unknown[];
    if (got.more) expect(pending.length).toBeGreaterThan(got.entries.length);
    else expect(pending).toHaveLength(got.entries.length);
  });

  test('nothing new within the wait: empty, and what was acknowledged is gone from the pending list', async () => {
    const key = await stream();
    const e1 = (await redis.xadd(key, '*', 'n', '1'))!;
    await read(key, 'owner');
    const got = await waitForEntry(redis, { key, group: 'g', consumer: 'owner', blockMs: 20, ackFirst: [e1], rest });
    expect(got.entries).toEqual([]);
    expect(await redis.call('XPENDING', key, 'g', '-', '+', '10')).toEqual([]);
  });
});
