/**
 * Liveness: processes register in events.relay_node and heartbeat; a lease
 * whose owner is not a live node is `lease_owner_dead` at once, and
 * `events lease release --all-dead` clears every such lease in one command.
 * (The SIGKILL of a real publisher process is in apps/events-publisher/test/liveness.test.ts.)
 */
import pino from 'pino';
import { Registry } from 'prom-client';
import type { RedisClient } from '@petcover/service-kit';
import { collectEventsStatus, connectDatabase, createNodeHeartbeat, createPublisher, enqueue, listNodes } from '../src';
import { createTestDatabase, createTestRedis, trackedRedisPrefixes, uniqueStreamName, waitFor, type TestDatabase } from '../src/testing';
import { eventsCliEnv, runEventsCliCaptured } from './events-cli-runner';

let testDb: TestDatabase;
let redis: RedisClient;
const prefixes = trackedRedisPrefixes();
const logger = pino({ level: 'silent' });

beforeAll(async () => {
  testDb = await createTestDatabase();
  redis = createTestRedis();
});
afterAll(async () => {
  await prefixes.deleteAll(redis);
  redis.disconnect();
  await testDb.drop();
});

const cli = (argv: string[], keyPrefix = '') => runEventsCliCaptured(argv, eventsCliEnv(testDb.url, keyPrefix));

async function enqueueOne(stream: string): Promise<void> {
  await testDb.db.transaction((tx) => enqueue(tx, { stream, type: 'TestHappened', partitionKey: 'k', payload: {} }));
}

test('a lease inserted by hand for an owner that never registered is lease_owner_dead at once, with the fix; --all-dead releases it', async () => {
  const stream = uniqueStreamName('handmade');
  const keyPrefix = prefixes.next();
  await enqueueOne(stream);
  // What someone might paste in psql: a lease that runs for an hour, owned by nobody.
  await testDb.sql`
    INSERT INTO events.stream_lease (stream_name, role, owner_id, lease_until, fencing_token)
    VALUES (${stream}, 'publisher', 'ghost-host:999:abcdef', now() + interval '1 hour', 1)`;

  const status = await collectEventsStatus({ sql: testDb.sql, redis, keyPrefix, stream });
  expect(status.healthy).toBe(false);
  expect(status.streams[0]!.publisherLease).toMatchObject({ ownerId: 'ghost-host:999:abcdef', owner: 'unregistered', expired: false });
  expect(status.problems).toEqual([
    expect.objectContaining({
      kind: 'lease_owner_dead',
      stream,
      message: expect.stringContaining('never registered'),
      fix: expect.stringContaining(`events lease release --stream ${stream} --role publisher`),
    }),
  ]);
  expect(status.problems[0]!.fix).toContain('--all-dead');

  const text = await cli(['status', '--stream', stream], keyPrefix);
  expect(text.code).toBe(1);
  expect(text.stdout).toContain('[lease_owner_dead]');
  expect(text.stdout).toContain('OWNER NEVER REGISTERED');

  const released = await cli(['lease', 'release', '--all-dead']);
  expect(released.code).toBe(0);
  expect(released.stdout).toContain(`released the publisher lease on ${stream} of ghost-host:999:abcdef (never registered)`);
  const [row] = await testDb.sql`SELECT 1 FROM events.stream_lease WHERE stream_name = ${stream}`;
  expect(row).toBeUndefined();
  expect((await cli(['lease', 'release', '--all-dead'])).stdout).toContain('nothing released');
  expect((await cli(['lease', 'release', '--all-dead', '--stream', stream])).code).toBe(2);
});

test('a publisher registers before leasing, shows in events nodes with its lease, and removes itself on graceful stop', async () => {
  const stream = uniqueStreamName('registered');
  const keyPrefix = prefixes.next();
  await enqueueOne(stream);
  const publisher = createPublisher({
    sql: testDb.sql,
    redis,
    logger,
    registry: new Registry(),
    keyPrefix,
    pollIntervalMs: 100,
    version: '9.9.9',
  });
  await publisher.start();
  try {
    await waitFor(() => publisher.heldStreams().includes(stream), { timeoutMs: 10_000, description: 'publisher holds the stream' });
    const nodes = await listNodes(testDb.sql);
    expect(nodes).toContainEqual(
      expect.objectContaining({ ownerId: publisher.ownerId, role: 'publisher', pid: process.pid, version: '9.9.9', alive: true, deadReason: null }),
    );
    const status = await collectEventsStatus({ sql: testDb.sql, redis, keyPrefix, stream });
    expect(status.streams[0]!.publisherLease).toMatchObject({ ownerId: publisher.ownerId, owner: 'alive' });
    expect(status.problems.filter((p) => p.kind === 'lease_owner_dead')).toEqual([]);

    const listed = await cli(['nodes']);
    expect(listed.code).toBe(0);
    expect(listed.stdout).toMatch(new RegExp(`alive\\tpublisher\\t${publisher.ownerId}\\t9\\.9\\.9\\t.*publisher@${stream}`));
    const json = JSON.parse((await cli(['nodes', '--json'])).stdout) as { nodes: Array<{ ownerId: string }> };
    expect(json.nodes.map((n) => n.ownerId)).toContain(publisher.ownerId);
  } finally {
    await publisher.stop();
  }
  expect((await listNodes(testDb.sql)).map((n) => n.ownerId)).not.toContain(publisher.ownerId);
  const leases = await testDb.sql`SELECT 1 FROM events.stream_lease WHERE owner_id = ${publisher.ownerId}`;
  expect(leases).toHaveLength(0);
});

test('a node whose Postgres session ends (process gone) is dead at once; one that stops heartbeating is dead after its TTL', async () => {
  const stream = uniqueStreamName('session');
  // The node heartbeats on its own pool, as a separate process would.
  const other = connectDatabase(testDb.url, { max: 2 });
  const node = createNodeHeartbeat({ sql: other.sql, ownerId: 'other-host:4242:feed01', role: 'publisher', logger, intervalMs: 60_000 });
  await node.start();
  await testDb.sql`
    INSERT INTO events.stream_lease (stream_name, role, owner_id, lease_until, fencing_token)
    VALUES (${stream}, 'publisher', 'other-host:4242:feed01', now() + interval '10 minutes', 1)`;
  expect((await listNodes(testDb.sql)).find((n) => n.ownerId === 'other-host:4242:feed01')).toMatchObject({ alive: true });

  // Closing the pool ends the sessions the way a SIGKILL does; the heartbeat is only seconds old.
  await other.close(0);
  // The backend exits right after its socket closes; one heartbeat interval (default 5 s) is the bound promised.
  const dead = await waitFor(
    async () => (await listNodes(testDb.sql)).find((n) => n.ownerId === 'other-host:4242:feed01' && !n.alive),
    { timeoutMs: 5_000, description: 'node seen dead after its session ended' },
  );
  expect(dead).toMatchObject({ alive: false, deadReason: 'session_gone' });
  expect(dead!.secondsSinceHeartbeat).toBeLessThan(60);
  const status = await collectEventsStatus({ sql: testDb.sql, redis, keyPrefix: prefixes.next(), stream });
  expect(status.problems).toEqual([
    expect.objectContaining({ kind: 'lease_owner_dead', message: expect.stringContaining('its Postgres session ended') }),
  ]);

  // A frozen process keeps its session but stops heartbeating: dead once the heartbeat is older than its TTL.
  const frozen = createNodeHeartbeat({ sql: testDb.sql, ownerId: 'frozen-host:1:cafe01', role: 'consumer:billing', logger, intervalMs: 60_000 });
  await frozen.start();
  await testDb.sql`UPDATE events.relay_node SET heartbeat_at = now() - interval '181 seconds' WHERE owner_id = 'frozen-host:1:cafe01'`;
  expect((await listNodes(testDb.sql)).find((n) => n.ownerId === 'frozen-host:1:cafe01')).toMatchObject({ alive: false, deadReason: 'heartbeat_stale' });
  await frozen.stop();
  await node.stop();
});
