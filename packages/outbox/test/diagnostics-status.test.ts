/**
 * `events status` over states built for real in Postgres and Redis: each rule
 * of the diagnosis, its JSON, and the CLI's exit code.
 */
import { randomUUID } from 'node:crypto';
import type { RedisClient } from '@petcover/service-kit';
import { acquireLease, collectEventsStatus, INBOX_MAINTENANCE_STREAM, formatEventsStatus, partitionStreamName, redisStreamKey, type EventsStatus } from '../src';
import { encodeEntry } from '../src/streams';
import { runEventsCli } from '../src/cli/events';
import { partitionFaultsKey, reportPartitionFault, reportStuckPartition, stuckPartitionsKey } from '../src/consumer/stuck-partitions';
import { createTestDatabase, createTestRedis, registerTestNode, uniqueRedisPrefix, uniqueStreamName, waitFor, type TestDatabase } from '../src/testing';
import { eventsCliEnv, runEventsCliCaptured } from './events-cli-runner';

let testDb: TestDatabase;
let redis: RedisClient;
const keyPrefix = uniqueRedisPrefix();

beforeAll(async () => {
  testDb = await createTestDatabase();
  redis = createTestRedis();
});
afterAll(async () => {
  const keys = await redis.keys(`${keyPrefix}*`);
  if (keys.length > 0) await redis.del(...keys);
  redis.disconnect();
  await testDb.drop();
});

/** Inserts outbox rows created `ageSeconds` ago; published (now) when asked. Returns their ids. */
async function insertRows(stream: string, count: number, options: { ageSeconds?: number; published?: boolean } = {}): Promise<string[]> {
  const ids: string[] = [];
  for (let i = 0; i < count; i += 1) {
    const [row] = await testDb.sql<{ id: string }[]>`
      INSERT INTO events.outbox_event (event_id, stream_name, partition_key, event_type, payload, created_at, published_at)
      VALUES (${randomUUID()}, ${stream}, ${`key-${i}`}, 'TestHappened', ${JSON.stringify({ i })}::jsonb,
              now() - make_interval(secs => ${options.ageSeconds ?? 0}),
              ${options.published ? testDb.sql`now()` : null})
      RETURNING id::text`;
    ids.push(row!.id);
  }
  return ids;
}

/** XADDs an entry for outbox row `outboxId` with an explicit id `ageSeconds` in the past. */
async function appendEntry(key: string, outboxId: string, ageSeconds = 0): Promise<string> {
  const createdAt = new Date(Date.now() - ageSeconds * 1000).toISOString();
  const fields = encodeEntry({
    outboxId,
    eventId: randomUUID(),
    type: 'TestHappened',
    partitionKey: 'key',
    payload: {},
    headers: {},
    createdAt,
  });
  const id = ageSeconds > 0 ? `${Date.now() - ageSeconds * 1000}-${outboxId}` : '*';
  return (await redis.xadd(key, id, ...fields)) as string;
}

/** A lease held by an owner registered as a live node (the owner is a name; its session is the test's pool). */
async function leaseOfLiveOwner(lease: Parameters<typeof acquireLease>[1]) {
  await registerTestNode(testDb.sql, lease.ownerId, lease.role === 'maintenance' ? 'publisher' : lease.role);
  return acquireLease(testDb.sql, lease);
}

async function status(stream: string): Promise<EventsStatus> {
  return collectEventsStatus({ sql: testDb.sql, redis, keyPrefix, stream });
}

const cli = (argv: string[]) => runEventsCliCaptured(argv, eventsCliEnv(testDb.url, keyPrefix));

describe('events status', () => {
  test('a healthy stream: published, in Redis, consumed under a live lease → exit 0', async () => {
    const stream = uniqueStreamName();
    const ids = await insertRows(stream, 3, { published: true });
    for (const id of ids) await appendEntry(`${keyPrefix}${stream}`, id);
    await redis.xgroup('CREATE', `${keyPrefix}${stream}`, 'billing', '0');
    await redis.xreadgroup('GROUP', 'billing', 'consumer-a', 'COUNT', 10, 'STREAMS', `${keyPrefix}${stream}`, '>');
    await redis.xack(`${keyPrefix}${stream}`, 'billing', ...((await redis.xrange(`${keyPrefix}${stream}`, '-', '+')) as [string, string[]][]).map(([id]) => id));
    await leaseOfLiveOwner({ streamName: stream, role: 'publisher', ownerId: 'host:1:aaa', ttlMs: 30_000 });
    await leaseOfLiveOwner({ streamName: stream, role: 'consumer:billing', ownerId: 'consumer-a', ttlMs: 30_000 });

    const report = await status(stream);
    expect(report.problems).toEqual([]);
    expect(report.healthy).toBe(true);
    const s = report.streams[0]!;
    expect(s).toMatchObject({
      stream,
      partitionCount: 1,
      outbox: { unpublished: 0, oldestUnpublishedAgeSeconds: null, lastPublishedId: ids[2] },
      publisherLease: { ownerId: 'host:1:aaa', expired: false, ownerRenewing: true },
      redis: [{ partition: stream, redisKey: `${keyPrefix}${stream}`, exists: true, length: 3, lastOutboxId: ids[2] }],
    });
    expect(s.groups).toMatchObject([
      { group: 'billing', lag: 0, pending: 0, partitions: [{ partition: stream, lag: 0, pending: 0, lease: { ownerId: 'consumer-a' } }] },
    ]);
    expect(s.groups[0]!.partitions[0]!.consumers).toMatchObject([{ name: 'consumer-a', pending: 0 }]);

    const run = await cli(['status', '--stream', stream, '--json']);
    expect(run.code).toBe(0);
    expect(JSON.parse(run.stdout)).toMatchObject({ healthy: true, streams: [{ stream }] });
    const human = await cli(['status', '--stream', stream]);
    expect(human.code).toBe(0);
    expect(human.stdout).toContain('HEALTHY');
  });

  test('rows queued and no publisher lease → no_publisher_lease, exit 1', async () => {
    const stream = uniqueStreamName();
    await insertRows(stream, 4, { ageSeconds: 60 });
    const report = await status(stream);
    expect(report.healthy).toBe(false);
    expect(report.streams[0]!.outbox.unpublished).toBe(4);
    expect(report.streams[0]!.outbox.oldestUnpublishedAgeSeconds).toBeGreaterThanOrEqual(60);
    expect(report.problems).toEqual([
      expect.objectContaining({ kind: 'no_publisher_lease', stream, message: expect.stringContaining('4 event(s) queued') }),
    ]);
    const run = await cli(['status', '--stream', stream, '--json']);
    expect(run.code).toBe(1);
    expect(JSON.parse(run.stdout).problems[0].kind).toBe('no_publisher_lease');
    expect((await cli(['status', '--stream', stream])).stdout).toContain('[no_publisher_lease]');
  });

  test('fresh rows within the grace period are normal traffic, not a problem', async () => {
    const stream = uniqueStreamName();
    await insertRows(stream, 2);
    expect((await status(stream)).problems).toEqual([]);
  });

  test('a lease whose owner stopped renewing, expired or not yet → publisher_stopped_renewing naming the owner', async () => {
    const expiredStream = uniqueStreamName();
    await insertRows(expiredStream, 1, { ageSeconds: 60 });
    await leaseOfLiveOwner({ streamName: expiredStream, role: 'publisher', ownerId: 'host:42:dead', ttlMs: 10_000 });
    await testDb.sql`UPDATE events.stream_lease SET renewed_at = now() - interval '40 seconds', lease_until = now() - interval '30 seconds'
                     WHERE stream_name = ${expiredStream}`;
    const expired = await status(expiredStream);
    expect(expired.streams[0]!.publisherLease).toMatchObject({ ownerId: 'host:42:dead', expired: true, ownerRenewing: false });
    expect(expired.problems).toEqual([
      expect.objectContaining({ kind: 'publisher_stopped_renewing', message: expect.stringContaining('host:42:dead') }),
    ]);

    // Alive on paper but renewed 9 s into a 10 s lease: its owner has stopped.
    const staleStream = uniqueStreamName();
    await insertRows(staleStream, 1, { ageSeconds: 60 });
    await leaseOfLiveOwner({ streamName: staleStream, role: 'publisher', ownerId: 'host:43:hung', ttlMs: 10_000 });
    await testDb.sql`UPDATE events.stream_lease SET renewed_at = now() - interval '9 seconds', lease_until = now() + interval '1 second'
                     WHERE stream_name = ${staleStream}`;
    const stale = await status(staleStream);
    expect(stale.streams[0]!.publisherLease).toMatchObject({ expired: false, ownerRenewing: false });
    expect(stale.problems.map((p) => p.kind)).toEqual(['publisher_stopped_renewing']);
  });

  test('a live, renewing lease with rows stuck → publisher_not_draining', async () => {
    const stream = uniqueStreamName();
    await insertRows(stream, 1, { ageSeconds: 60 });
    await leaseOfLiveOwner({ streamName: stream, role: 'publisher', ownerId: 'host:7:live', ttlMs: 30_000 });
    expect((await status(stream)).problems.map((p) => p.kind)).toEqual(['publisher_not_draining']);
  });

  test('a backlog being drained or consumed is not a problem: recent publications, an active consumer under a live lease', async () => {
    const stream = uniqueStreamName();
    const published = await insertRows(stream, 1, { published: true });
    await insertRows(stream, 3, { ageSeconds: 60 });
    await leaseOfLiveOwner({ streamName: stream, role: 'publisher', ownerId: 'host:8:busy', ttlMs: 30_000 });
    const key = `${keyPrefix}${stream}`;
    await appendEntry(key, published[0]!, 120);
    await redis.xgroup('CREATE', key, 'busy', '0');
    // The consumer is alive (it just read) and holds the lease, but an old entry still waits behind its batch.
    await appendEntry(key, published[0]!, 90);
    await redis.xreadgroup('GROUP', 'busy', 'busy-consumer', 'COUNT', 1, 'STREAMS', key, '>');
    await leaseOfLiveOwner({ streamName: stream, role: 'consumer:busy', ownerId: 'busy-consumer', ttlMs: 30_000 });

    const report = await status(stream);
    expect(report.streams[0]!.outbox).toMatchObject({ unpublished: 3 });
    expect(report.streams[0]!.groups[0]!.partitions[0]).toMatchObject({ lag: 1, pending: 1 });
    expect(report.streams[0]!.groups[0]!.partitions[0]!.oldestUndeliveredAgeSeconds).toBeGreaterThanOrEqual(60);
    expect(report.problems).toEqual([]);
  });

  test('rows marked published but no Redis key → redis_stream_missing', async () => {
    const stream = uniqueStreamName();
    await insertRows(stream, 2, { published: true });
    const report = await status(stream);
    expect(report.streams[0]!.redis).toEqual([expect.objectContaining({ exists: false, length: 0 })]);
    expect(report.problems).toEqual([expect.objectContaining({ kind: 'redis_stream_missing', stream })]);
    expect(report.problems[0]!.fix).toContain(`events outbox replay --stream ${stream}`);
  });

  test('Redis holds only older entries than the outbox marked published → redis_behind_outbox', async () => {
    const stream = uniqueStreamName();
    const ids = await insertRows(stream, 3, { published: true });
    await appendEntry(`${keyPrefix}${stream}`, ids[0]!);
    const report = await status(stream);
    expect(report.problems).toEqual([
      expect.objectContaining({ kind: 'redis_behind_outbox', message: expect.stringContaining(`outbox id ${ids[0]}`) }),
    ]);
  });

  test('a stream trimmed empty by retention is not mistaken for a Redis behind the outbox', async () => {
    const stream = uniqueStreamName();
    const ids = await insertRows(stream, 2, { published: true });
    const key = `${keyPrefix}${stream}`;
    for (const id of ids) await appendEntry(key, id);
    await redis.xtrim(key, 'MAXLEN', 0);
    const report = await status(stream);
    expect(report.streams[0]!.redis).toEqual([expect.objectContaining({ exists: true, length: 0, lastOutboxId: null })]);
    expect(report.problems).toEqual([]);

    // Re-created empty (MKSTREAM after a restart without persistence): behind.
    await redis.del(key);
    await redis.xgroup('CREATE', key, 'fresh', '0', 'MKSTREAM');
    expect((await status(stream)).problems).toEqual([expect.objectContaining({ kind: 'redis_behind_outbox', message: expect.stringContaining('is none') })]);
  });

  test('entries waiting for a group with no consumer → group_not_consuming, with lag and age', async () => {
    const stream = uniqueStreamName();
    const ids = await insertRows(stream, 2, { published: true });
    const key = `${keyPrefix}${stream}`;
    await redis.xgroup('CREATE', key, 'shipping', '0', 'MKSTREAM');
    for (const id of ids) await appendEntry(key, id, 120);
    const report = await status(stream);
    const partition = report.streams[0]!.groups[0]!.partitions[0]!;
    expect(partition).toMatchObject({ lag: 2, pending: 0, lease: null });
    expect(partition.oldestUndeliveredAgeSeconds).toBeGreaterThanOrEqual(100);
    expect(report.problems).toEqual([
      expect.objectContaining({ kind: 'group_not_consuming', group: 'shipping', message: expect.stringContaining('lag 2') }),
    ]);
  });

  test('a group reading a partition while holding no lease in this database → group_consuming_elsewhere', async () => {
    const stream = uniqueStreamName();
    const ids = await insertRows(stream, 1, { published: true });
    const key = `${keyPrefix}${stream}`;
    await appendEntry(key, ids[0]!);
    await redis.xgroup('CREATE', key, 'elsewhere', '0');
    await redis.xreadgroup('GROUP', 'elsewhere', 'other-db:1:abc', 'COUNT', 10, 'STREAMS', key, '>');
    const report = await status(stream);
    expect(report.problems).toEqual([
      expect.objectContaining({ kind: 'group_consuming_elsewhere', group: 'elsewhere', message: expect.stringContaining('other-db:1:abc') }),
    ]);
    expect(report.problems[0]!.fix).toContain('DATABASE_URL');
  });

  test('partitions are inferred from consumer leases and Redis keys, and listed per group', async () => {
    const stream = uniqueStreamName();
    await redis.xgroup('CREATE', redisStreamKey(partitionStreamName(stream, 3, 4), keyPrefix), 'g', '0', 'MKSTREAM');
    await leaseOfLiveOwner({ streamName: `${stream}:p1`, role: 'consumer:g', ownerId: 'c:1:x', ttlMs: 30_000 });
    const report = await status(stream);
    const s = report.streams[0]!;
    expect(s.partitionCount).toBe(4);
    expect(s.redis!.map((p) => [p.partition, p.exists])).toEqual([
      [`${stream}:p0`, false],
      [`${stream}:p1`, false],
      [`${stream}:p2`, false],
      [`${stream}:p3`, true],
    ]);
    expect(s.groups[0]!.partitions.map((p) => p.partition)).toEqual([`${stream}:p1`, `${stream}:p3`]);
    expect(s.groups[0]!.partitions[0]!.lease).toMatchObject({ ownerId: 'c:1:x' });
    expect(report.problems).toEqual([]);
  });

  test('a maintenance lease (outbox prune, inbox retention) is listed as a lease, never as a stream', async () => {
    const publisherOwner = `host:1:${randomUUID().slice(0, 8)}`;
    const consumerOwner = `consumer-${randomUUID().slice(0, 8)}`;
    await leaseOfLiveOwner({ streamName: 'stream:events:outbox', role: 'maintenance', ownerId: publisherOwner, ttlMs: 30_000 });
    await leaseOfLiveOwner({ streamName: INBOX_MAINTENANCE_STREAM, role: 'maintenance', ownerId: consumerOwner, ttlMs: 30_000 });
    try {
      // Every stream of this file's database: the maintenance leases must not add one.
      const report = await collectEventsStatus({ sql: testDb.sql, redis, keyPrefix });
      const streams = report.streams.map((s) => s.stream);
      expect(streams).not.toContain('stream:events:outbox');
      expect(streams).not.toContain(INBOX_MAINTENANCE_STREAM);
      expect(report.leases).toEqual(
        expect.arrayContaining([
          expect.objectContaining({ stream: 'stream:events:outbox', role: 'maintenance', ownerId: publisherOwner }),
          expect.objectContaining({ stream: INBOX_MAINTENANCE_STREAM, role: 'maintenance', ownerId: consumerOwner }),
        ]),
      );
    } finally {
      await testDb.sql`DELETE FROM events.stream_lease WHERE role = 'maintenance'`;
    }
  });

  test('dead letters still dead → dead_letters per group with their types', async () => {
    const stream = uniqueStreamName();
    for (const type of ['A', 'A', 'B']) {
      await testDb.sql`
        INSERT INTO events.dead_letter (group_name, stream_name, redis_entry_id, event_id, event_type, partition_key, payload, error_message, attempts, first_failed_at)
        VALUES ('billing', ${stream}, ${`${Math.random()}`}, ${randomUUID()}, ${type}, 'k', '{}', 'boom', 5, now())`;
    }
    const report = await status(stream);
    expect(report.streams[0]!.deadLetters).toEqual([
      expect.objectContaining({ group: 'billing', type: 'A', count: 2 }),
      expect.objectContaining({ group: 'billing', type: 'B', count: 1 }),
    ]);
    expect(report.problems).toEqual([
      expect.objectContaining({ kind: 'dead_letters', group: 'billing', message: '3 dead letter(s) in group billing: A x2, B x1' }),
    ]);
    expect(formatEventsStatus(report)).toContain('events dlq list --group billing');
  });

  test('Redis unreachable: the Postgres side is still reported, plus redis_unreachable; exit 1', async () => {
    const stream = uniqueStreamName();
    await insertRows(stream, 1);
    let stdout = '';
    const code = await runEventsCli(['status', '--json'], {
      env: { DATABASE_URL: testDb.url, REDIS_URL: 'redis://127.0.0.1:1/0' },
      stdout: (t) => (stdout += t),
      stderr: () => undefined,
    });
    expect(code).toBe(1);
    const report = JSON.parse(stdout) as EventsStatus;
    expect(report.redis.ok).toBe(false);
    expect(report.problems[0]).toMatchObject({ kind: 'redis_unreachable' });
    expect(report.streams.find((s) => s.stream === stream)).toMatchObject({ outbox: { unpublished: 1 }, redis: null });
  });

  test('a database without the events schema (wrong DATABASE_URL) → events_schema_missing; unreachable → database_unreachable', async () => {
    const url = new URL(testDb.url);
    url.pathname = '/postgres';
    let stdout = '';
    const code = await runEventsCli(['status', '--json'], { env: { DATABASE_URL: url.toString() }, stdout: (t) => (stdout += t), stderr: () => undefined });
    expect(code).toBe(1);
    expect(JSON.parse(stdout).problems).toEqual([expect.objectContaining({ kind: 'events_schema_missing' })]);

    stdout = '';
    const secretUrl = 'postgresql://someone:hunter2secret@127.0.0.1:1/petcover';
    const down = await runEventsCli(['status', '--json'], { env: { DATABASE_URL: secretUrl }, stdout: (t) => (stdout += t), stderr: () => undefined });
    expect(down).toBe(1);
    expect(JSON.parse(stdout).problems).toEqual([expect.objectContaining({ kind: 'database_unreachable' })]);
    expect(stdout).not.toContain('hunter2secret');
  });
});

describe('events status: consumer-side problems (issue 14)', () => {
  test('a partition stuck on an entry whose dead letter Postgres refuses → partition_stuck naming entry, group, cause and the fix', async () => {
    const stream = uniqueStreamName();
    const ids = await insertRows(stream, 1, { published: true });
    const key = `${keyPrefix}${stream}`;
    const entryId = await appendEntry(key, ids[0]!);
    await redis.xgroup('CREATE', key, 'stuckgroup', '0');
    await redis.xreadgroup('GROUP', 'stuckgroup', 'c:1:s', 'COUNT', 10, 'STREAMS', key, '>');
    await leaseOfLiveOwner({ streamName: stream, role: 'consumer:stuckgroup', ownerId: 'c:1:s', ttlMs: 30_000 });
    await reportStuckPartition(redis, stuckPartitionsKey(keyPrefix, 'stuckgroup'), {
      partitionStream: stream,
      entryId,
      cause: 'permission denied for table dead_letter',
      ownerId: 'c:1:s',
      since: new Date().toISOString(),
    });
    const report = await status(stream);
    expect(report.streams[0]!.groups[0]!.partitions[0]!.stuck).toMatchObject({ entryId, cause: 'permission denied for table dead_letter' });
    expect(report.problems).toEqual([
      expect.objectContaining({
        kind: 'partition_stuck',
        group: 'stuckgroup',
        partition: stream,
        message: expect.stringMatching(new RegExp(`entry ${entryId}.*permission denied for table dead_letter`)),
        fix: expect.stringContaining(`XACK ${key} stuckgroup ${entryId}`),
      }),
    ]);
    expect(formatEventsStatus(report)).toContain('[partition_stuck]');
  });

  test('a partition the group cannot be created on (WRONGTYPE) → consumer_partition_fault with the fix', async () => {
    const stream = uniqueStreamName();
    const partition = partitionStreamName(stream, 1, 2);
    const key = redisStreamKey(partition, keyPrefix);
    await redis.set(key, 'not a stream');
    await redis.xgroup('CREATE', redisStreamKey(partitionStreamName(stream, 0, 2), keyPrefix), 'faultgroup', '0', 'MKSTREAM');
    await reportPartitionFault(redis, partitionFaultsKey(keyPrefix, 'faultgroup'), {
      partitionStream: partition,
      redisKey: key,
      cause: 'wrong_key_type',
      message: 'WRONGTYPE Operation against a key holding the wrong kind of value',
      ownerId: 'c:2:f',
      since: new Date().toISOString(),
    });
    const report = await status(stream);
    expect(report.streams[0]!.groups[0]!.faults).toEqual([expect.objectContaining({ partition, redisKey: key, cause: 'wrong_key_type' })]);
    expect(report.problems).toEqual(
      expect.arrayContaining([
        expect.objectContaining({
          kind: 'consumer_partition_fault',
          group: 'faultgroup',
          partition,
          message: expect.stringContaining('WRONGTYPE'),
          fix: expect.stringContaining(`Redis key ${key} is not a stream`),
        }),
      ]),
    );
  });

  test('no live consumer for longer than the threshold → group_abandoned (configurable), not group_not_consuming', async () => {
    const stream = uniqueStreamName();
    const ids = await insertRows(stream, 2, { published: true });
    const key = `${keyPrefix}${stream}`;
    await appendEntry(key, ids[0]!);
    await redis.xgroup('CREATE', key, 'oneoff', '0');
    await redis.xreadgroup('GROUP', 'oneoff', 'laptop:1:x', 'COUNT', 10, 'STREAMS', key, '>');
    await redis.xack(key, 'oneoff', ...((await redis.xrange(key, '-', '+')) as [string, string[]][]).map(([id]) => id));
    await appendEntry(key, ids[1]!);
    // Under the default threshold (300 s) a consumer that read a moment ago is not abandoned.
    expect((await status(stream)).problems.map((p) => p.kind)).not.toContain('group_abandoned');
    const report = await waitFor(
      async () => {
        const r = await collectEventsStatus({ sql: testDb.sql, redis, keyPrefix, stream, thresholds: { abandonedAfterSeconds: 1 } });
        return r.problems.some((p) => p.kind === 'group_abandoned') ? r : null;
      },
      { timeoutMs: 30_000, description: 'the group idle past a 1 s threshold' },
    );
    expect(report.problems).toEqual([
      expect.objectContaining({
        kind: 'group_abandoned',
        group: 'oneoff',
        message: expect.stringContaining('last read by laptop:1:x'),
        fix: expect.stringContaining('events group delete --group oneoff'),
      }),
    ]);
    const run = await cli(['status', '--stream', stream, '--abandoned-after', '1', '--json']);
    expect(run.code).toBe(1);
    expect(JSON.parse(run.stdout).problems).toEqual([expect.objectContaining({ kind: 'group_abandoned' })]);
    expect(await cli(['status', '--abandoned-after', 'soon'])).toMatchObject({ code: 2, stderr: expect.stringContaining('--abandoned-after must be a whole number of seconds (got soon)') });
  });

  test('a live consumer holding the lease with an entry pending too long → group_stuck, not abandoned', async () => {
    const stream = uniqueStreamName();
    const ids = await insertRows(stream, 1, { published: true });
    const key = `${keyPrefix}${stream}`;
    await appendEntry(key, ids[0]!);
    await redis.xgroup('CREATE', key, 'hung', '0');
    await redis.xreadgroup('GROUP', 'hung', 'c:3:h', 'COUNT', 10, 'STREAMS', key, '>');
    await leaseOfLiveOwner({ streamName: stream, role: 'consumer:hung', ownerId: 'c:3:h', ttlMs: 60_000 });
    const report = await waitFor(
      async () => {
        const r = await collectEventsStatus({ sql: testDb.sql, redis, keyPrefix, stream, thresholds: { stuckPendingSeconds: 1, abandonedAfterSeconds: 1 } });
        return r.problems.some((p) => p.kind === 'group_stuck') ? r : null;
      },
      { timeoutMs: 30_000, description: 'the pending entry idle past a 1 s threshold' },
    );
    expect(report.problems).toEqual([
      expect.objectContaining({ kind: 'group_stuck', group: 'hung', message: expect.stringContaining('holds'), fix: expect.stringContaining('c:3:h') }),
    ]);
  });

  test('a lease row edited by hand into an impossible state → lease_impossible with the release command', async () => {
    const stream = uniqueStreamName();
    await leaseOfLiveOwner({ streamName: stream, role: 'publisher', ownerId: 'p:4:i', ttlMs: 30_000 });
    await leaseOfLiveOwner({ streamName: stream, role: 'consumer:edited', ownerId: 'c:4:i', ttlMs: 30_000 });
    await testDb.sql`UPDATE events.stream_lease SET fencing_token = 9223372036854775807 WHERE stream_name = ${stream} AND role = 'publisher'`;
    await testDb.sql`UPDATE events.stream_lease SET fencing_token = -1, owner_id = ' ' WHERE stream_name = ${stream} AND role = 'consumer:edited'`;
    const report = await status(stream);
    // Leases in (stream, role) order: consumer:edited, then publisher.
    expect(report.problems).toEqual([
      expect.objectContaining({
        kind: 'lease_impossible',
        group: 'edited',
        message: expect.stringContaining('owner_id is empty'),
        fix: expect.stringContaining(`events lease release --stream ${stream} --role consumer:edited`),
      }),
      expect.objectContaining({
        kind: 'lease_impossible',
        stream,
        message: expect.stringContaining('bigint maximum'),
        fix: `events lease release --stream ${stream} --role publisher; a running replica takes it with a fresh token within its poll interval`,
      }),
    ]);
    expect(formatEventsStatus(report)).toContain('IMPOSSIBLE ROW');
  });
});
