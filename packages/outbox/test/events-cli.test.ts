/**
 * The operator actions of the `events` command on a real database: dead
 * letters, leases, outbox replay, and the exit codes of refusals and usage
 * errors. One test runs the built bin as a process.
 */
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import path from 'node:path';
import { promisify } from 'node:util';
import { acquireLease } from '../src';
import { parseTimeArgument, } from '../src/cli/events';
import type { RedisClient } from '@petcover/service-kit';
import { partitionStreamName, redisStreamKey } from '../src/streams';
import { createTestDatabase, createTestRedis, registerTestNode, testRedisUrl, uniqueGroupName, uniqueRedisPrefix, uniqueStreamName, type TestDatabase } from '../src/testing';
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

const cli = (argv: string[]) => runEventsCliCaptured(argv, eventsCliEnv(testDb.url, keyPrefix));

async function insertDeadLetter(group: string, stream: string, type = 'TestHappened'): Promise<{ id: string; eventId: string }> {
  const eventId = randomUUID();
  const [row] = await testDb.sql<{ id: string }[]>`
    INSERT INTO events.dead_letter (group_name, stream_name, redis_entry_id, event_id, event_type, partition_key, payload, headers,
                                    error_message, error_stack, attempts, first_failed_at)
    VALUES (${group}, ${stream}, ${`${Date.now()}-${Math.floor(Math.random() * 1e6)}`}, ${eventId}, ${type}, 'pet-1',
            '{"n":1}'::jsonb, '{"correlationId":"c-1"}'::jsonb, 'handler exploded', 'Error: handler exploded', 5, now())
    RETURNING id::text`;
  return { id: row!.id, eventId };
}

async function deadLetterStatus(id: string): Promise<{ status: string; resolved_by: string | null }> {
  const [row] = await testDb.sql<{ status: string; resolved_by: string | null }[]>`
    SELECT status, resolved_by FROM events.dead_letter WHERE id = ${id}::bigint`;
  return row!;
}

describe('events dlq', () => {
  test('list and show: filters by group and type, JSON or table; unknown id exits 1', async () => {
    const stream = uniqueStreamName();
    const a = await insertDeadLetter('list-g1', stream, 'TypeA');
    await insertDeadLetter('list-g1', stream, 'TypeB');
    await insertDeadLetter('list-g2', stream, 'TypeA');

    const listed = await cli(['dlq', 'list', '--group', 'list-g1', '--type', 'TypeA', '--json']);
    expect(listed.code).toBe(0);
    expect(JSON.parse(listed.stdout)).toEqual([expect.objectContaining({ id: a.id, groupName: 'list-g1', eventType: 'TypeA', status: 'dead' })]);
    const table = await cli(['dlq', 'list', '--group', 'list-g1']);
    expect(table.stdout.trim().split('\n')).toHaveLength(3);
    expect(table.stdout).toContain('handler exploded');

    const shown = await cli(['dlq', 'show', a.id]);
    expect(shown.code).toBe(0);
    expect(JSON.parse(shown.stdout)).toMatchObject({ id: a.id, eventId: a.eventId, errorStack: 'Error: handler exploded' });

    const missing = await cli(['dlq', 'show', '999999999']);
    expect(missing).toMatchObject({ code: 1, stderr: expect.stringContaining('dead letter 999999999 does not exist') });
    expect(await cli(['dlq', 'list', '--status', 'zombie'])).toMatchObject({ code: 2, stderr: expect.stringContaining('--status must be one of') });
  });

  test('replay re-enqueues with the original event_id and marks it replayed; a second replay is refused', async () => {
    const stream = uniqueStreamName();
    const letter = await insertDeadLetter('replay-g', stream);

    const run = await cli(['dlq', 'replay', letter.id]);
    expect(run.code).toBe(0);
    expect(run.stdout).toContain(`replayed dead letter ${letter.id}`);
    const [outbox] = await testDb.sql<{ stream_name: string; published_at: string | null; headers: Record<string, string> }[]>`
      SELECT stream_name, published_at, headers FROM events.outbox_event WHERE event_id = ${letter.eventId}`;
    expect(outbox).toMatchObject({ stream_name: stream, published_at: null });
    expect(outbox!.headers).toMatchObject({ correlationId: 'c-1' });
    expect(await deadLetterStatus(letter.id)).toMatchObject({ status: 'replayed', resolved_by: expect.stringMatching(/^cli:/) });

    const again = await cli(['dlq', 'replay', letter.id]);
    expect(again.code).toBe(1);
    expect(again.stderr).toContain('its status is replayed');
    const [{ count }] = (await testDb.sql`SELECT count(*)::int AS count FROM events.outbox_event WHERE event_id = ${letter.eventId}`) as unknown as [{ count: number }];
    expect(count).toBe(1);
  });

  test('replay --all --group replays every dead letter of that group only, oldest first', async () => {
    const stream = uniqueStreamName();
    const first = await insertDeadLetter('bulk-g', stream);
    const second = await insertDeadLetter('bulk-g', stream);
    const other = await insertDeadLetter('bulk-other', stream);

    const run = await cli(['dlq', 'replay', '--all', '--group', 'bulk-g']);
    expect(run.code).toBe(0);
    expect(run.stdout).toContain('2 of 2 dead letter(s) of group bulk-g replayed');
    const rows = await testDb.sql<{ event_id: string }[]>`
      SELECT event_id::text FROM events.outbox_event WHERE event_id IN (${first.eventId}, ${second.eventId}) ORDER BY id`;
    expect(rows.map((r) => r.event_id)).toEqual([first.eventId, second.eventId]);
    expect((await deadLetterStatus(other.id)).status).toBe('dead');

    expect(await cli(['dlq', 'replay', '--all'])).toMatchObject({ code: 2, stderr: expect.stringContaining('--all needs --group') });
    expect(await cli(['dlq', 'replay', other.id, '--all', '--group', 'x'])).toMatchObject({ code: 2 });
  });

  test('discard marks it discarded; discarding or replaying it afterwards is refused; unknown and malformed ids', async () => {
    const letter = await insertDeadLetter('discard-g', uniqueStreamName());
    expect(await cli(['dlq', 'discard', letter.id])).toMatchObject({ code: 0, stdout: expect.stringContaining(`discarded dead letter ${letter.id}`) });
    expect((await deadLetterStatus(letter.id)).status).toBe('discarded');

    expect(await cli(['dlq', 'discard', letter.id])).toMatchObject({ code: 1, stderr: expect.stringContaining('its status is discarded') });
    expect(await cli(['dlq', 'replay', letter.id])).toMatchObject({ code: 1, stderr: expect.stringContaining('its status is discarded') });
    const [{ count }] = (await testDb.sql`SELECT count(*)::int AS count FROM events.outbox_event WHERE event_id = ${letter.eventId}`) as unknown as [{ count: number }];
    expect(count).toBe(0);

    expect(await cli(['dlq', 'discard', '424242424'])).toMatchObject({ code: 1, stderr: expect.stringContaining('does not exist') });
    expect(await cli(['dlq', 'discard', 'abc'])).toMatchObject({ code: 2, stderr: expect.stringContaining('must be a number') });
    expect(await cli(['dlq', 'discard'])).toMatchObject({ code: 2 });
  });
});

describe('events lease release', () => {
  test('drops the lease whoever holds it; releasing nothing exits 1; bad role or stream exits 2', async () => {
    const stream = uniqueStreamName();
    await acquireLease(testDb.sql, { streamName: stream, role: 'publisher', ownerId: 'host:1:stale', ttlMs: 60_000 });
    await acquireLease(testDb.sql, { streamName: `${stream}:p2`, role: 'consumer:g1', ownerId: 'host:2:c', ttlMs: 60_000 });

    expect(await cli(['lease', 'release', '--stream', stream, '--role', 'publisher'])).toMatchObject({ code: 0 });
    expect(await cli(['lease', 'release', '--stream', `${stream}:p2`, '--role', 'consumer:g1'])).toMatchObject({ code: 0 });
    const left = await testDb.sql`SELECT 1 FROM events.stream_lease WHERE stream_name LIKE ${`${stream}%`}`;
    expect(left).toHaveLength(0);

    expect(await cli(['lease', 'release', '--stream', stream, '--role', 'publisher'])).toMatchObject({
      code: 1,
      stderr: expect.stringContaining('nothing released'),
    });
    expect(await cli(['lease', 'release', '--stream', stream, '--role', 'boss'])).toMatchObject({ code: 2, stderr: expect.stringContaining('--role must be') });
    expect(await cli(['lease', 'release', '--stream', 'contracts', '--role', 'publisher'])).toMatchObject({ code: 2 });
    expect(await cli(['lease', 'release', '--role', 'publisher'])).toMatchObject({ code: 2 });
  });
});

describe('events group', () => {
  /** The group on both partitions of a new 2-partition stream, one entry pending on p0; returns the keys. */
  async function groupOnTwoPartitions(group: string): Promise<{ stream: string; keys: string[] }> {
    const stream = uniqueStreamName();
    const keys = [0, 1].map((i) => redisStreamKey(partitionStreamName(stream, i, 2), keyPrefix));
    for (const key of keys) await redis.xgroup('CREATE', key, group, '0', 'MKSTREAM');
    await redis.xadd(keys[0]!, '*', 'outbox_id', '1');
    await redis.xadd(keys[1]!, '*', 'outbox_id', '2');
    await redis.xreadgroup('GROUP', group, 'c:1:a', 'COUNT', 1, 'STREAMS', keys[0]!, '>');
    return { stream, keys };
  }

  async function groupsOn(key: string): Promise<string[]> {
    return ((await redis.xinfo('GROUPS', key)) as unknown[][]).map((g) => String(g[1]));
  }

  test('list shows each group with its streams, live consumers, leases, pending, lag and dead letters', async () => {
    const group = uniqueGroupName();
    const { stream } = await groupOnTwoPartitions(group);
    await registerTestNode(testDb.sql, 'c:1:a', `consumer:${group}`);
    await acquireLease(testDb.sql, { streamName: partitionStreamName(stream, 0, 2), role: `consumer:${group}`, ownerId: 'c:1:a', ttlMs: 60_000 });
    await insertDeadLetter(group, partitionStreamName(stream, 1, 2));

    const listed = await cli(['group', 'list', '--json']);
    expect(listed.code).toBe(0);
    expect((JSON.parse(listed.stdout) as Array<{ group: string }>).find((g) => g.group === group)).toEqual({
      group,
      streams: [stream],
      partitions: [partitionStreamName(stream, 0, 2), partitionStreamName(stream, 1, 2)],
      liveConsumers: ['c:1:a'],
      leases: [{ partition: partitionStreamName(stream, 0, 2), ownerId: 'c:1:a', live: true }],
      pending: 1,
      lag: 1,
      deadLetters: 1,
      parkedKeys: 0,
      lastReadSecondsAgo: expect.any(Number),
    });
    const table = await cli(['group', 'list']);
    expect(table.stdout).toMatch(new RegExp(`^${group}\t${stream}\tc:1:a\t`, 'm'));
  });

  test('delete refuses while a live consumer holds a lease (nothing changed); --force removes the group on every partition and its leases', async () => {
    const group = uniqueGroupName();
    const { stream, keys } = await groupOnTwoPartitions(group);
    await registerTestNode(testDb.sql, 'c:2:live', `consumer:${group}`);
    await acquireLease(testDb.sql, { streamName: partitionStreamName(stream, 1, 2), role: `consumer:${group}`, ownerId: 'c:2:live', ttlMs: 60_000 });

    const refused = await cli(['group', 'delete', '--group', group]);
    expect(refused).toMatchObject({ code: 1, stderr: expect.stringContaining(`group ${group} is in use: a live consumer holds its lease on ${partitionStreamName(stream, 1, 2)} by c:2:live`) });
    for (const key of keys) expect(await groupsOn(key)).toEqual([group]);
    expect(await testDb.sql`SELECT 1 FROM events.stream_lease WHERE role = ${`consumer:${group}`}`).toHaveLength(1);

    const forced = await cli(['group', 'delete', '--group', group, '--force']);
    expect(forced).toMatchObject({ code: 0, stdout: expect.stringContaining(`deleted group ${group}: consumer group destroyed on 2 partition stream(s)`) });
    expect(forced.stderr).toContain('--force: deleted the live lease');
    for (const key of keys) expect(await groupsOn(key)).toEqual([]);
    expect(await testDb.sql`SELECT 1 FROM events.stream_lease WHERE role = ${`consumer:${group}`}`).toHaveLength(0);
    // The entries themselves stay: other groups still read them.
    expect(await redis.xlen(keys[0]!)).toBe(1);
  });

  test('delete without a live consumer needs no --force; a group that does not exist exits 1; bad input exits 2 and changes nothing', async () => {
    const group = uniqueGroupName();
    const { stream, keys } = await groupOnTwoPartitions(group);
    // The lease of a consumer that stopped long ago (expired): not live.
    await acquireLease(testDb.sql, { streamName: partitionStreamName(stream, 0, 2), role: `consumer:${group}`, ownerId: 'c:3:gone', ttlMs: 60_000 });
    await testDb.sql`UPDATE events.stream_lease SET lease_until = now() - interval '1 hour' WHERE role = ${`consumer:${group}`}`;

    expect(await cli(['group', 'delete'])).toMatchObject({ code: 2, stderr: expect.stringContaining('--group <name> is required') });
    expect(await cli(['group', 'delete', '--group', 'a b'])).toMatchObject({ code: 2, stderr: expect.stringContaining('--group must hold only letters, digits and _.- (got a b)') });
    expect(await cli(['group', 'delete', group])).toMatchObject({ code: 2, stderr: expect.stringContaining(`unexpected argument ${group}`) });
    expect(await cli(['group', 'delete', '--group', group, '--forse'])).toMatchObject({ code: 2 });
    expect(await cli(['group', 'list', 'extra'])).toMatchObject({ code: 2 });
    for (const key of keys) expect(await groupsOn(key)).toEqual([group]);

    // A key of the group parked on p1 is kept, and the output says so.
    await testDb.sql`INSERT INTO events.parked_key (group_name, stream_name, partition_key, attempts, last_error)
                     VALUES (${group}, ${partitionStreamName(stream, 1, 2)}, 'owner-a', 1, 'down')`;
    const deleted = await cli(['group', 'delete', '--group', group]);
    expect(deleted).toMatchObject({ code: 0, stdout: expect.stringContaining('1 lease row(s) removed') });
    expect(deleted.stdout).toContain(`1 parked key(s) of group ${group} are kept and no longer retried: events key list --group ${group}`);
    expect(await testDb.sql`SELECT 1 FROM events.parked_key WHERE group_name = ${group}`).toHaveLength(1);
    for (const key of keys) expect(await groupsOn(key)).toEqual([]);
    expect(await cli(['group', 'delete', '--group', group])).toMatchObject({ code: 1, stderr: expect.stringContaining(`group ${group} does not exist`) });
  });
});

describe('events outbox replay', () => {
  test('sets published_at back to NULL for rows published since the time, only on that stream', async () => {
    const stream = uniqueStreamName();
    const otherStream = uniqueStreamName();
    const insert = (s: string, publishedAgo: string) => testDb.sql`
      INSERT INTO events.outbox_event (event_id, stream_name, partition_key, event_type, payload, published_at)
      VALUES (${randomUUID()}, ${s}, 'k', 'T', '{}'::jsonb, now() - ${publishedAgo}::interval)`;
    await insert(stream, '3 hours');
    await insert(stream, '20 minutes');
    await insert(stream, '5 minutes');
    await insert(otherStream, '5 minutes');

    const run = await cli(['outbox', 'replay', '--stream', stream, '--since', '1h']);
    expect(run.code).toBe(0);
    expect(run.stdout).toContain('2 row(s)');
    const rows = await testDb.sql<{ stream_name: string; unpublished: boolean }[]>`
      SELECT stream_name, published_at IS NULL AS unpublished FROM events.outbox_event
      WHERE stream_name IN (${stream}, ${otherStream}) ORDER BY id`;
    expect(rows.map((r) => r.unpublished)).toEqual([false, true, true, false]);

    const iso = await cli(['outbox', 'replay', '--stream', stream, '--since', new Date(Date.now() - 4 * 3_600_000).toISOString()]);
    expect(iso.stdout).toContain('1 row(s)');

    expect(await cli(['outbox', 'replay', '--stream', stream, '--since', 'yesterday-ish'])).toMatchObject({ code: 2 });
    expect(await cli(['outbox', 'replay', '--since', '1h'])).toMatchObject({ code: 2 });
    expect(await cli(['outbox', 'replay', '--stream', stream, '--since', '1h', '--until', '2h'])).toMatchObject({ code: 2 });
  });

  test('parseTimeArgument reads durations ago and ISO-8601', () => {
    const now = Date.parse('2026-01-01T12:00:00Z');
    expect(parseTimeArgument('90s', '--since', now).toISOString()).toBe('2026-01-01T11:58:30.000Z');
    expect(parseTimeArgument('2h', '--since', now).toISOString()).toBe('2026-01-01T10:00:00.000Z');
    expect(parseTimeArgument('2026-01-01T00:00:00Z', '--since', now).toISOString()).toBe('2026-01-01T00:00:00.000Z');
    expect(() => parseTimeArgument(undefined, '--since', now)).toThrow('--since <time> is required');
  });
});

describe('events command line', () => {
  test('unknown command and flags exit 2 with the usage', async () => {
    expect(await cli([])).toMatchObject({ code: 2, stderr: expect.stringContaining('usage: events') });
    expect(await cli(['frobnicate'])).toMatchObject({ code: 2, stderr: expect.stringContaining('unknown command') });
    expect(await cli(['status', '--colour'])).toMatchObject({ code: 2, stderr: expect.stringContaining('--colour') });
    expect(await cli(['status', '--stream', 'nope'])).toMatchObject({ code: 2 });
    expect(await cli(['--help'])).toMatchObject({ code: 0, stdout: expect.stringContaining('dlq replay') });
  });

  test('the built bin runs as a process with its env and exit code', async () => {
    const bin = path.join(__dirname, '..', 'dist', 'cli', 'events.js');
    const run = promisify(execFile)(process.execPath, [bin, 'status', '--json'], {
      env: { ...process.env, DATABASE_URL: testDb.url, REDIS_URL: testRedisUrl(), REDIS_KEY_PREFIX: keyPrefix },
    });
    // Earlier tests left dead letters behind: a problem, so exit 1 with the JSON on stdout.
    const error = await run.then(() => null, (e: { code: number; stdout: string }) => e);
    expect(error?.code).toBe(1);
    expect(JSON.parse(error!.stdout).problems).toEqual(expect.arrayContaining([expect.objectContaining({ kind: 'dead_letters' })]));
  });
});
