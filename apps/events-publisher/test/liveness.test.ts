/**
 * The on-call case: a publisher SIGKILLed while holding a lease with
 * a long TTL, another publisher running. `events status` must call the owner
 * dead within one heartbeat interval (not "alive" for 0.75 × TTL), and the
 * fix it names must hand the stream over at once.
 */
import type { RedisClient } from '@petcover/service-kit';
import { collectEventsStatus, NODE_HEARTBEAT_DEFAULTS, releaseLeasesOfDeadOwners } from '@petcover/outbox';
import { createTestDatabase, createTestRedis, trackedRedisPrefixes, uniqueStreamName, testRedisUrl, waitFor, type TestDatabase } from '@petcover/outbox/testing';
import { fillOutbox, spawnPublisher, unpublishedCount, type PublisherProcess } from './spawn-publisher';

let db: TestDatabase;
let redis: RedisClient;
const processes: PublisherProcess[] = [];
const prefixes = trackedRedisPrefixes();

beforeAll(async () => {
  db = await createTestDatabase();
  redis = createTestRedis();
});
afterAll(async () => {
  for (const p of processes.splice(0)) {
    p.child.kill('SIGKILL');
    await p.exited;
  }
  await prefixes.deleteAll(redis);
  await db.drop();
  redis.disconnect();
});

test('SIGKILL of the owner of a 10-minute lease: lease_owner_dead within one heartbeat interval; --all-dead hands the stream to the running publisher', async () => {
  const keyPrefix = prefixes.next();
  const stream = uniqueStreamName('deadowner');
  const args = ['--poll-interval', '0.2', '--lease-ttl', '600'];
  await fillOutbox(db, stream, 10);
  const owner = await spawnPublisher({ databaseUrl: db.url, redisUrl: testRedisUrl(), keyPrefix, args });
  processes.push(owner);
  await waitFor(async () => (await unpublishedCount(db, [stream])) === 0, { timeoutMs: 20_000, description: 'first publisher drained' });
  const [lease] = await db.sql<{ owner_id: string }[]>`SELECT owner_id FROM events.stream_lease WHERE stream_name = ${stream} AND role = 'publisher'`;
  const standby = await spawnPublisher({ databaseUrl: db.url, redisUrl: testRedisUrl(), keyPrefix, args });
  processes.push(standby);
  await standby.waitForLog((l) => l.msg === 'publisher starting', 'standby started');

  owner.child.kill('SIGKILL');
  await owner.exited;
  await fillOutbox(db, stream, 5);
  const killedAt = Date.now();
  const status = await waitFor(
    async () => {
      const s = await collectEventsStatus({ sql: db.sql, redis, keyPrefix, stream });
      return s.problems.some((p) => p.kind === 'lease_owner_dead') ? s : undefined;
    },
    { timeoutMs: NODE_HEARTBEAT_DEFAULTS.intervalMs, intervalMs: 100, description: 'lease_owner_dead within one heartbeat interval' },
  );
  expect(Date.now() - killedAt).toBeLessThan(NODE_HEARTBEAT_DEFAULTS.intervalMs);
  expect(status.streams[0]!.publisherLease).toMatchObject({ ownerId: lease!.owner_id, owner: 'dead', expired: false });
  expect(status.problems.find((p) => p.kind === 'lease_owner_dead')!.fix).toContain('events lease release --all-dead');
  // The dead owner is not also reported as a live publisher that does not drain.
  expect(status.problems.map((p) => p.kind)).not.toContain('publisher_not_draining');

  const released = await releaseLeasesOfDeadOwners(db.sql);
  expect(released).toEqual([{ streamName: stream, role: 'publisher', ownerId: lease!.owner_id, ownerState: 'dead' }]);
  await waitFor(async () => (await unpublishedCount(db, [stream])) === 0, { timeoutMs: 20_000, description: 'standby took over and drained' });
  const after = await collectEventsStatus({ sql: db.sql, redis, keyPrefix, stream });
  expect(after.streams[0]!.publisherLease).toMatchObject({ owner: 'alive' });
  expect(after.problems.map((p) => p.kind)).not.toContain('lease_owner_dead');
  expect(await standby.stop()).toBe(0);
});
