/**
 * Every Lua script and multi-key command stays within one Redis Cluster
 * slot. Each script runs on a real local cluster (3 masters + 3 replicas)
 * against streams spread over all three masters, and CLUSTER KEYSLOT
 * confirms that the keys one call touches share a slot. A script file this
 * test does not know fails it, so a new script cannot skip the check.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { RedisClient } from '@petcover/service-kit';
import {
  assertKeyPrefix,
  createPublisher,
  InvalidKeyPrefixError,
  keyPrefixSchema,
  redisStreamKey,
} from '../src';
import { streamMetaKey } from '../src/streams';
import { heartbeatMembership, membersKey } from '../src/consumer/membership';
import { pruneIdleConsumers } from '../src/consumer/prune-idle-consumers';
import { ensureGroup, readGroup, waitForEntry } from '../src/consumer/redis-group';
import { appendBatch, stampFence, streamHead, trimStream, type OutboxRowForAppend } from '../src/publisher/redis-scripts';
import { createTestRedis, startRedisCluster, type DedicatedRedisCluster } from '../src/testing';

jest.setTimeout(120_000);

let cluster: DedicatedRedisCluster;
let redis: RedisClient;

beforeAll(async () => {
  cluster = await startRedisCluster();
  redis = createTestRedis(cluster.connection);
});
afterAll(async () => {
  redis?.disconnect();
  await cluster?.destroy();
});

/** Partition streams under several prefixes; the test checks they reach every master. */
const STREAM_KEYS = ['', 'test:ab12cd34:', 'bench:run1:relay:'].flatMap((prefix) =>
  ['stream:contracting:contract_changes', 'stream:billing:invoices', 'stream:pets:profile', 'stream:pets:profile:p0', 'stream:pets:profile:p7'].map((stream) =>
    redisStreamKey(stream, prefix),
  ),
);

async function slotOf(key: string): Promise<number> {
  return Number(await redis.call('CLUSTER', 'KEYSLOT', key));
}

async function masterPortOf(key: string): Promise<number> {
  const slot = await slotOf(key);
  const owner = (await cluster.nodes()).find((n) => n.role === 'master' && n.slots.some(([from, to]) => slot >= from && slot <= to));
  if (!owner) throw new Error(`no master serves slot ${slot}`);
  return owner.port;
}

function row(id: number): OutboxRowForAppend {
  return {
    id: String(id),
    eventId: `00000000-0000-7000-8000-${String(id).padStart(12, '0')}`,
    type: 'SlotChecked',
    partitionKey: `key-${id % 3}`,
    payloadJson: '{}',
    headersJson: '{}',
    createdAt: '2026-01-01T00:00:00.000000Z',
  };
}

test('the test streams land on every master (otherwise the checks below prove little)', async () => {
  const masters = new Set(await Promise.all(STREAM_KEYS.map(masterPortOf)));
  expect(masters.size).toBe(3);
});

test("a stream's keys (stream, {stream}:meta) share one slot", async () => {
  for (const key of STREAM_KEYS) {
    const slot = await slotOf(key);
    expect({ key, meta: await slotOf(streamMetaKey(key)) }).toEqual({ key, meta: slot });
  }
});

// One entry per file in src/publisher/scripts: how the test runs it on the cluster.
const PUBLISHER_SCRIPTS: Record<string, (key: string) => Promise<void>> = {
  'stamp-fence.lua': async (key) => {
    expect(await stampFence(redis, key, { fencingToken: '1', databaseId: 'db-cluster' })).toMatchObject({ status: 'ok' });
  },
  'append.lua': async (key) => {
    const result = await appendBatch(redis, key, { fencingToken: '1', databaseId: 'db-cluster' }, '0-0', [row(1), row(2), row(3)]);
    expect(result).toMatchObject({ status: 'ok', entryIds: [expect.any(String), expect.any(String), expect.any(String)] });
    expect(await redis.xlen(key)).toBe(3);
  },
  'stream-head.lua': async (key) => {
    expect(await streamHead(redis, key)).toMatchObject({ hasMeta: true });
  },
  'trim.lua': async (key) => {
    expect((await trimStream(redis, key, 0, 0)).removed).toBeGreaterThanOrEqual(0);
  },
};

test('every publisher script file is covered by this test', () => {
  const files = fs.readdirSync(path.join(__dirname, '..', 'src', 'publisher', 'scripts')).filter((f) => f.endsWith('.lua'));
  expect(files.sort()).toEqual(Object.keys(PUBLISHER_SCRIPTS).sort());
});

test('the publisher scripts run on every master without CROSSSLOT', async () => {
  // Order matters: stamp, append, head check, trim (as the publisher runs them).
  for (const key of STREAM_KEYS) {
    for (const script of ['stamp-fence.lua', 'append.lua', 'stream-head.lua', 'trim.lua']) await PUBLISHER_SCRIPTS[script]!(key);
  }
});

test('the consumer scripts and pipelines run on every master: group, read pipeline, heartbeat, idle-consumer prune', async () => {
  for (const [index, prefix] of ['', 'test:ab12cd34:', 'bench:run1:relay:'].entries()) {
    const group = `slot-check-${index}`;
    expect(await heartbeatMembership(redis, membersKey(prefix, group), 'owner-1', 5_000)).toBe(1);
  }
  for (const key of STREAM_KEYS) {
    await ensureGroup(redis, key, 'slot-check');
    const read = await readGroup(redis, { key, group: 'slot-check', consumer: 'c1', from: '>', count: 10, maxBytes: 65_536, firstChunk: 1 });
    // XACK, the bounded read (read-bounded.lua) and XPENDING in one pipeline: one key, one slot.
    await readGroup(redis, { key, group: 'slot-check', consumer: 'c1', from: '>', count: 10, maxBytes: 65_536, firstChunk: 1, ackFirst: read.entries.map((e) => e.id) });
    await waitForEntry(redis, { key, group: 'slot-check', consumer: 'c1', blockMs: 1 });
    expect(await pruneIdleConsumers(redis, key, 'slot-check', 'c2', 0)).toBeGreaterThanOrEqual(0);
  }
});

test('a key prefix with a brace would split a stream over slots, so it is refused at start', async () => {
  // What the refusal prevents: the hash tag ends inside the prefix.
  const broken = redisStreamKey('stream:pets:profile', 'tenant{a}:');
  expect(await slotOf(streamMetaKey(broken))).not.toBe(await slotOf(broken));
  await expect(appendBatch(redis, broken, { fencingToken: '1', databaseId: 'db' }, '0-0', [row(1)])).rejects.toThrow(/CROSSSLOT/);

  expect(() => assertKeyPrefix('tenant{a}:')).toThrow(InvalidKeyPrefixError);
  expect(() => assertKeyPrefix('tenant}:')).toThrow(InvalidKeyPrefixError);
  expect(() => assertKeyPrefix('tenant-a:')).not.toThrow();
  expect(keyPrefixSchema.safeParse('a{b').success).toBe(false);
  expect(() => createPublisher({ sql: null as never, redis, logger: null as never, registry: null as never, keyPrefix: '{x}' })).toThrow(InvalidKeyPrefixError);
});
