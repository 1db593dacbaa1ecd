/**
 * The evidence a failed chaos run keeps (evidence.ts), against a deliberately
 * broken setup shaped like the CI failure of seed 1026419371: the payments
 * partition's consumer lease held by a dead owner, entries pending under it
 * and more waiting, keys payments-12 / payments-11 parked and overdue. The
 * product's `events status` must name all of it, last in the log, and the
 * Redis dump must cover every master of a Cluster. A Redis that accepts and
 * never answers must cost the step's bound, not hang.
 */
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { acquireLease, parseStreamPartitions, type Sql } from '@petcover/outbox';
import {
  appendTestEvents,
  createTestDatabase,
  registerTestNode,
  startDedicatedRedis,
  startRedisCluster,
  testStreamEvent,
  type TestDatabase,
} from '@petcover/outbox/testing';
import { createRedisClient, type RedisClient, type RedisConnection } from '@petcover/service-kit';
import { CHAOS_GROUP, streamPartitionsEnv } from '../src/chaos-streams';
import { keepFailureEvidence } from '../src/evidence';

// A Redis Cluster of 6 nodes forming, on a loaded machine.
jest.setTimeout(180_000);

const PAYMENTS = 'stream:chaos:payments';
const ORDERS_P1 = 'stream:chaos:orders:p1';
const DEAD_OWNER = 'chaos-host:4242:dead01';

let testDb: TestDatabase;
const tempDirs: string[] = [];

beforeAll(async () => {
  testDb = await createTestDatabase();
});
afterAll(async () => {
  await testDb.drop();
  for (const dir of tempDirs) fs.rmSync(dir, { recursive: true, force: true });
});

function tempDir(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'chaos-evidence-test-'));
  tempDirs.push(dir);
  return dir;
}

/**
 * The stuck payments partition: 5 entries, 2 delivered to the dead owner and
 * pending, 3 never delivered (lag 3); its lease held by a node that stopped
 * heartbeating; payments-12 (3 events) and payments-11 (2) parked, due 130 s
 * and 95 s ago. Plus entries on an orders partition (another hash slot).
 */
async function breakPayments(sql: Sql, redis: RedisClient): Promise<void> {
  await appendTestEvents(redis, PAYMENTS, [1, 2, 3, 4, 5].map((seq) => testStreamEvent({ type: 'PaymentCaptured', partitionKey: `payments-${seq}`, payload: { seq } })));
  await appendTestEvents(redis, ORDERS_P1, [1, 2].map((seq) => testStreamEvent({ type: 'OrderChanged', partitionKey: 'orders-1', payload: { seq } })));
  await redis.xgroup('CREATE', PAYMENTS, CHAOS_GROUP, '0');
  await redis.xreadgroup('GROUP', CHAOS_GROUP, DEAD_OWNER, 'COUNT', 2, 'STREAMS', PAYMENTS, '>');

  await sql`DELETE FROM events.relay_node`;
  await sql`DELETE FROM events.stream_lease`;
  await sql`DELETE FROM events.parked_event`;
  await sql`DELETE FROM events.parked_key`;
  await registerTestNode(sql, DEAD_OWNER, `consumer:${CHAOS_GROUP}`);
  await sql`UPDATE events.relay_node SET heartbeat_at = now() - interval '2 hours' WHERE owner_id = ${DEAD_OWNER}`;
  await acquireLease(sql, { streamName: PAYMENTS, role: `consumer:${CHAOS_GROUP}`, ownerId: DEAD_OWNER, ttlMs: 600_000 });
  for (const [key, overdueSeconds, events] of [['payments-12', 130, 3], ['payments-11', 95, 2]] as const) {
    await sql`
      INSERT INTO events.parked_key (group_name, stream_name, partition_key, attempts, next_attempt_at, last_error, first_failed_at)
      VALUES (${CHAOS_GROUP}, ${PAYMENTS}, ${key}, 3, now() - make_interval(secs => ${overdueSeconds}), 'ChaosKeyOutage: payments down', now() - interval '5 minutes')`;
    for (let i = 0; i < events; i++) {
      await sql`
        INSERT INTO events.parked_event (group_name, stream_name, partition_key, redis_entry_id, event_id, event_type, outbox_id, payload, headers, event_created_at)
        VALUES (${CHAOS_GROUP}, ${PAYMENTS}, ${key}, ${`1-${i}`}, gen_random_uuid(), 'PaymentCaptured', ${String(i + 1)}, '{}', '{}', ${new Date().toISOString()})`;
    }
  }
}

interface RedisUnderTest {
  connection: RedisConnection;
  destroy(): Promise<void>;
}

const redisKinds: Record<'single' | 'cluster', () => Promise<RedisUnderTest>> = {
  single: async () => {
    const server = await startDedicatedRedis();
    return { connection: { url: server.url, cluster: false }, destroy: () => server.destroy() };
  },
  cluster: async () => {
    const cluster = await startRedisCluster();
    return { connection: cluster.connection, destroy: () => cluster.destroy() };
  },
};

describe.each(['single', 'cluster'] as const)('failure evidence on %s Redis', (kind) => {
  let server: RedisUnderTest;
  let redis: RedisClient;
  beforeAll(async () => {
    server = await redisKinds[kind]();
    redis = createRedisClient(server.connection, { maxRetriesPerRequest: 1 });
  });
  afterAll(async () => {
    redis?.disconnect();
    await server?.destroy();
  });

  test('events status names the stuck partition, its dead lease holder, lag, pending and overdue parked keys, printed last; every stream dumped', async () => {
    await breakPayments(testDb.sql, redis);
    const dir = tempDir();
    const lines: string[] = [];
    const evidence = await keepFailureEvidence({
      dir,
      databaseUrl: testDb.url,
      redis: server.connection,
      partitions: parseStreamPartitions(streamPartitionsEnv()),
      log: (line) => lines.push(line),
    });

    const text = evidence.statusText!;
    expect(text).not.toBeNull();
    // The partition's line: lag and pending of group chaos, the lease with its owner, token and expiry, the parked keys.
    expect(text).toMatch(
      new RegExp(
        `${PAYMENTS}: lag 3, pending 2, .*; lease ${DEAD_OWNER} OWNER DEAD, until \\S+ \\(in \\d+(\\.\\d)?s\\), renewed \\S+ ago, token \\d+; ` +
          `consumers ${DEAD_OWNER} \\(pending 2, idle \\S+\\); parked keys 2 \\(0 halted, 5 events\\), most overdue 13\\d`,
      ),
    );
    expect(text).toContain(`[lease_owner_dead] the consumer:${CHAOS_GROUP} lease on ${PAYMENTS} is held by ${DEAD_OWNER}`);
    expect(text).toMatch(
      new RegExp(
        `\\[parked_key_overdue\\] parked keys of group ${CHAOS_GROUP} on ${PAYMENTS} are not being retried: ` +
          `payments-12 \\(due 13\\d(\\.\\d)?s ago, 3 failed attempt\\(s\\), 3 event\\(s\\) waiting\\), payments-11 \\(due 9\\d(\\.\\d)?s ago, 3 failed attempt\\(s\\), 2 event\\(s\\) waiting\\)`,
      ),
    );
    expect(text).toContain(`likely fix: events lease release --stream ${PAYMENTS} --role consumer:${CHAOS_GROUP}`);
    // Every configured partition is listed, with or without a key.
    expect(text).toContain('stream:chaos:orders (4 partitions)');

    // Printed last, after everything else the evidence logged; the same text on disk.
    expect(lines[lines.length - 1]).toBe(`--- events status of the run (also in ${path.join(dir, 'events-status.txt')}):\n${text}`);
    expect(fs.readFileSync(path.join(dir, 'events-status.txt'), 'utf8')).toBe(`${text}\n`);
    const json = JSON.parse(fs.readFileSync(path.join(dir, 'events-status.json'), 'utf8')) as { problems: { kind: string }[] };
    expect(json.problems.map((p) => p.kind)).toEqual(expect.arrayContaining(['lease_owner_dead', 'parked_key_overdue']));

    // Redis: both streams (on different hash slots: on a Cluster, different masters), with groups, pending lists and entries.
    const streams = JSON.parse(fs.readFileSync(path.join(dir, 'redis-streams.json'), 'utf8')) as Record<string, { groups: unknown[][]; pending: Record<string, unknown[]>; entries: unknown[] }>;
    expect(Object.keys(streams).sort()).toEqual([ORDERS_P1, PAYMENTS]);
    expect(streams[PAYMENTS]!.entries).toHaveLength(5);
    expect(streams[PAYMENTS]!.groups[0]).toEqual(expect.arrayContaining(['name', CHAOS_GROUP, 'pending', 2, 'lag', 3]));
    expect(streams[PAYMENTS]!.pending[CHAOS_GROUP]).toEqual([expect.arrayContaining([DEAD_OWNER]), expect.arrayContaining([DEAD_OWNER])]);
    expect(streams[ORDERS_P1]!.entries).toHaveLength(2);
    expect(lines).toContain(`chaos: Redis streams dumped to ${path.join(dir, 'redis-streams.json')} (2 stream(s))`);
    if (kind === 'cluster') {
      const slots = await Promise.all([PAYMENTS, ORDERS_P1].map(async (key) => Number(await redis.call('CLUSTER', 'KEYSLOT', key))));
      const owners = await Promise.all(slots.map(async (slot) => (redis as import('ioredis').Cluster).slots[slot]?.[0]));
      expect(owners[0]).not.toBe(owners[1]);
    }

    // The database dump holds the parked keys.
    expect(fs.readFileSync(path.join(dir, 'chaos-db.sql'), 'utf8')).toContain('payments-12');
  });
});

test('a Redis that accepts connections and never answers costs each step its bound, and the rest is still kept', async () => {
  const silent = net.createServer(() => undefined);
  await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
  const held: net.Socket[] = [];
  silent.on('connection', (socket) => held.push(socket));
  const port = (silent.address() as net.AddressInfo).port;
  try {
    const dir = tempDir();
    const lines: string[] = [];
    const started = Date.now();
    const evidence = await keepFailureEvidence({
      dir,
      databaseUrl: testDb.url,
      redis: { url: `redis://127.0.0.1:${port}/0`, cluster: false },
      partitions: {},
      log: (line) => lines.push(line),
      stepTimeoutMs: 2_000,
    });
    // Two Redis steps of 2 s each, and a pg_dump.
    expect(Date.now() - started).toBeLessThan(15_000);
    expect(evidence.statusText).toBeNull();
    expect(lines).toEqual(
      expect.arrayContaining([
        'chaos: could not run events status: events status exceeded its 2 s budget',
        'chaos: could not dump the Redis streams: Redis dump exceeded its 2 s budget',
        `chaos: database dumped to ${path.join(dir, 'chaos-db.sql')}`,
      ]),
    );
  } finally {
    for (const socket of held) socket.destroy();
    await new Promise((resolve) => silent.close(resolve));
  }
});
