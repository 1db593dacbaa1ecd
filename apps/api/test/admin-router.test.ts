/**
 * The admin router on a bare express app, over a real database and Redis:
 * key checks, status, dead-letter replay/discard, lease release, parked keys
 * (list, release, discard on a real consumer's halted key), refusals, and
 * the audit log line of every action.
 */
import { randomUUID } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import { Writable } from 'node:stream';
import express from 'express';
import type { RedisClient } from '@petcover/service-kit';
import { acquireLease, createConsumer, createHandlerRegistry, redisStreamKey, type Consumer } from '@petcover/outbox';
import {
  appendTestEvents,
  createTestDatabase,
  createTestRedis,
  testStreamEvent,
  uniqueGroupName,
  uniqueRedisPrefix,
  uniqueStreamName,
  waitFor,
  type TestDatabase,
} from '@petcover/outbox/testing';
import { z } from 'zod';
import { createLogger } from '@petcover/service-kit';
import { createAdminRouter } from '../src/admin/router';

const ADMIN_KEY = `admin-${randomUUID()}`;
let testDb: TestDatabase;
let redis: RedisClient;
let server: Server;
let baseUrl: string;
const logLines: string[] = [];

function startApp(adminKey: string | undefined): Promise<{ server: Server; url: string }> {
  const logger = createLogger({
    name: 'api-test',
    destination: new Writable({
      write(chunk, _enc, done) {
        logLines.push(String(chunk));
        done();
      },
    }),
  });
  const app = express();
  app.use('/v1/admin', createAdminRouter({ adminKey, db: testDb.db, sql: testDb.sql, redis, logger, keyPrefix: uniqueRedisPrefix() }));
  return new Promise((resolve) => {
    const s = app.listen(0, '127.0.0.1', () => resolve({ server: s, url: `http://127.0.0.1:${(s.address() as AddressInfo).port}/v1/admin` }));
  });
}

beforeAll(async () => {
  testDb = await createTestDatabase();
  redis = createTestRedis();
  ({ server, url: baseUrl } = await startApp(ADMIN_KEY));
});
afterAll(async () => {
  await new Promise((resolve) => server.close(resolve));
  redis.disconnect();
  await testDb.drop();
});

async function call(method: string, path: string, options: { key?: string | null; body?: string; actor?: string } = {}) {
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  if (options.key !== null) headers['x-admin-key'] = options.key ?? ADMIN_KEY;
  if (options.actor) headers['x-admin-actor'] = options.actor;
  const res = await fetch(`${baseUrl}${path}`, { method, headers, body: options.body });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

async function insertDeadLetter(): Promise<{ id: string; eventId: string }> {
  const eventId = randomUUID();
  const [row] = await testDb.sql<{ id: string }[]>`
    INSERT INTO events.dead_letter (group_name, stream_name, redis_entry_id, event_id, event_type, partition_key, payload,
                                    error_message, attempts, first_failed_at)
    VALUES ('admin-g', ${uniqueStreamName()}, ${`${Date.now()}-${Math.floor(Math.random() * 1e6)}`}, ${eventId}, 'T', 'k',
            '{}'::jsonb, 'boom', 3, now())
    RETURNING id::text`;
  return { id: row!.id, eventId };
}

describe('admin key', () => {
  test('401 without the key or with a wrong one (also one of another length); nothing happens', async () => {
    const letter = await insertDeadLetter();
    expect(await call('GET', '/events/status', { key: null })).toMatchObject({ status: 401, body: { error: 'unauthorized' } });
    expect(await call('POST', `/dead-letters/${letter.id}/replay`, { key: 'wrong' })).toMatchObject({ status: 401 });
    expect(await call('POST', `/dead-letters/${letter.id}/discard`, { key: `${ADMIN_KEY}x` })).toMatchObject({ status: 401 });
    const [row] = await testDb.sql<{ status: string }[]>`SELECT status FROM events.dead_letter WHERE id = ${letter.id}::bigint`;
    expect(row!.status).toBe('dead');
    expect(logLines.join('')).not.toContain(ADMIN_KEY);
  });

  test('503 when no admin key is configured', async () => {
    const disabled = await startApp(undefined);
    try {
      const res = await fetch(`${disabled.url}/events/status`, { headers: { 'x-admin-key': '' } });
      expect(res.status).toBe(503);
      expect(await res.json()).toMatchObject({ error: 'admin_disabled' });
    } finally {
      await new Promise((resolve) => disabled.server.close(resolve));
    }
  });
});

describe('admin routes', () => {
  test('GET /events/status answers the EventsStatus JSON of `events status --json`', async () => {
    const stream = uniqueStreamName();
    await testDb.sql`INSERT INTO events.outbox_event (event_id, stream_name, partition_key, event_type, payload, created_at)
                     VALUES (${randomUUID()}, ${stream}, 'k', 'T', '{}'::jsonb, now() - interval '1 minute')`;
    const res = await call('GET', `/events/status?stream=${encodeURIComponent(stream)}`);
    expect(res.status).toBe(200);
    expect(res.body).toMatchObject({
      healthy: false,
      database: { ok: true, name: testDb.name },
      redis: { ok: true },
      streams: [{ stream, outbox: { unpublished: 1 }, publisherLease: null }],
      problems: [expect.objectContaining({ kind: 'no_publisher_lease' })],
    });
    expect(await call('GET', '/events/status?stream=bad')).toMatchObject({ status: 400 });
  });

  test('replay: 200 once, then 409; unknown id 404; malformed id 400; logged with who and what', async () => {
    const letter = await insertDeadLetter();
    const first = await call('POST', `/dead-letters/${letter.id}/replay`, { actor: 'alice' });
    expect(first).toMatchObject({ status: 200, body: { deadLetterId: letter.id, status: 'replayed', eventId: letter.eventId } });
    const [row] = await testDb.sql<{ status: string; resolved_by: string }[]>`
      SELECT status, resolved_by FROM events.dead_letter WHERE id = ${letter.id}::bigint`;
    expect(row).toMatchObject({ status: 'replayed', resolved_by: expect.stringMatching(/^admin:alice@/) });
    const line = logLines.find((l) => l.includes('"dead_letter.replay"') && l.includes(`"${letter.id}"`));
    expect(JSON.parse(line!)).toMatchObject({ action: 'dead_letter.replay', deadLetterId: letter.id, by: expect.stringContaining('admin:alice@') });

    expect(await call('POST', `/dead-letters/${letter.id}/replay`)).toMatchObject({ status: 409, body: { error: 'conflict' } });
    expect(await call('POST', '/dead-letters/987654321/replay')).toMatchObject({ status: 404, body: { error: 'not_found' } });
    expect(await call('POST', '/dead-letters/12abc/replay')).toMatchObject({ status: 400 });
    const [{ count }] = (await testDb.sql`SELECT count(*)::int AS count FROM events.outbox_event WHERE event_id = ${letter.eventId}`) as unknown as [{ count: number }];
    expect(count).toBe(1);
  });

  test('GET /dead-letters: newest first by numeric id, filtered, paginated; GET /dead-letters/:id; bad input 400, unknown 404, key required', async () => {
    // Twelve letters of one group, so ids cross a digit boundary somewhere (text order would put 9 after 10).
    await testDb.sql`ALTER SEQUENCE events.dead_letter_id_seq RESTART WITH 95`;
    const group = `list-${Date.now()}`;
    const ids: string[] = [];
    for (let i = 0; i < 12; i++) {
      const [row] = await testDb.sql<{ id: string }[]>`
        INSERT INTO events.dead_letter (group_name, stream_name, redis_entry_id, event_id, event_type, partition_key, payload, error_message, attempts, first_failed_at, status)
        VALUES (${group}, 'stream:a:b', ${`1-${i}`}, ${randomUUID()}, ${i % 2 ? 'Odd' : 'Even'}, 'k', '{}'::jsonb, 'boom', 1, now(), ${i === 0 ? 'discarded' : 'dead'})
        RETURNING id::text`;
      ids.push(row!.id);
    }
    const newestFirst = [...ids].reverse();
    const page1 = await call('GET', `/dead-letters?group=${group}&limit=5`);
    expect(page1.status).toBe(200);
    expect((page1.body.items as { id: string }[]).map((l) => l.id)).toEqual(newestFirst.slice(0, 5));
    expect(page1.body.next).toBe(newestFirst[4]);
    const page3 = await call('GET', `/dead-letters?group=${group}&limit=5&before=${newestFirst[9]}`);
    expect((page3.body.items as { id: string }[]).map((l) => l.id)).toEqual(newestFirst.slice(10));
    expect(page3.body.next).toBeNull();
    const odd = await call('GET', `/dead-letters?group=${group}&type=Odd&status=dead`);
    expect((odd.body.items as { id: string; eventType: string }[]).map((l) => l.id)).toEqual(newestFirst.filter((_, i) => i % 2 === 0));
    const discarded = await call('GET', `/dead-letters?group=${group}&status=discarded`);
    expect((discarded.body.items as { id: string }[]).map((l) => l.id)).toEqual([ids[0]]);

    const one = await call('GET', `/dead-letters/${ids[3]}`);
    expect(one).toMatchObject({ status: 200, body: { id: ids[3], groupName: group, eventType: 'Odd', errorMessage: 'boom', status: 'dead' } });
    expect(await call('GET', '/dead-letters/987654321')).toMatchObject({ status: 404, body: { error: 'not_found' } });
    expect(await call('GET', '/dead-letters/x1')).toMatchObject({ status: 400 });
    for (const query of ['status=gone', 'limit=0', 'limit=5000', 'before=abc', 'group=a%20b', 'colour=red']) {
      expect(await call('GET', `/dead-letters?${query}`)).toMatchObject({ status: 400, body: { error: 'bad_request' } });
    }
    expect(await call('GET', '/dead-letters', { key: null })).toMatchObject({ status: 401 });
    expect(await call('GET', `/dead-letters/${ids[3]}`, { key: 'wrong' })).toMatchObject({ status: 401 });
  });

  test('discard: 200 once, then 409 for discard and replay; unknown id 404', async () => {
    const letter = await insertDeadLetter();
    expect(await call('POST', `/dead-letters/${letter.id}/discard`)).toMatchObject({ status: 200, body: { status: 'discarded' } });
    expect(await call('POST', `/dead-letters/${letter.id}/discard`)).toMatchObject({ status: 409 });
    expect(await call('POST', `/dead-letters/${letter.id}/replay`)).toMatchObject({ status: 409 });
    expect(await call('POST', '/dead-letters/987654322/discard')).toMatchObject({ status: 404 });
    expect(logLines.some((l) => l.includes('"dead_letter.discard"') && l.includes(`"${letter.id}"`))).toBe(true);
  });

  test('lease release: 200 then 404; bad body 400 (wrong role, unknown field, malformed JSON) with nothing changed', async () => {
    const stream = uniqueStreamName();
    await acquireLease(testDb.sql, { streamName: stream, role: 'publisher', ownerId: 'host:9:old', ttlMs: 60_000 });
    const body = (value: unknown) => ({ body: JSON.stringify(value) });

    expect(await call('POST', '/leases/release', body({ stream, role: 'boss' }))).toMatchObject({ status: 400, body: { error: 'bad_request' } });
    expect(await call('POST', '/leases/release', body({ stream, role: 'publisher', extra: 1 }))).toMatchObject({ status: 400 });
    expect(await call('POST', '/leases/release', { body: '{"stream": ' })).toMatchObject({ status: 400 });
    expect(await call('POST', '/leases/release', body({ role: 'publisher' }))).toMatchObject({ status: 400 });
    expect(await testDb.sql`SELECT 1 FROM events.stream_lease WHERE stream_name = ${stream}`).toHaveLength(1);

    expect(await call('POST', '/leases/release', body({ stream, role: 'publisher' }))).toMatchObject({ status: 200, body: { released: true } });
    expect(await testDb.sql`SELECT 1 FROM events.stream_lease WHERE stream_name = ${stream}`).toHaveLength(0);
    expect(await call('POST', '/leases/release', body({ stream, role: 'publisher' }))).toMatchObject({ status: 404 });
    expect(logLines.some((l) => l.includes('"lease.release"') && l.includes(stream))).toBe(true);
  });
});

describe('parked keys', () => {
  /** A consumer whose handler fails for the keys in `failing`, halting them after two attempts (issue 19's `halt` policy). */
  async function haltedKey(failing: Set<string>) {
    const stream = uniqueStreamName();
    const group = uniqueGroupName('billing');
    const keyPrefix = uniqueRedisPrefix();
    const registry = createHandlerRegistry().register('Recorded', {
      schema: z.object({ seq: z.number().int() }),
      async handle(event) {
        if (failing.has(event.partitionKey)) throw new Error(`payment provider down for ${event.partitionKey}`);
        handled.push(`${event.partitionKey}:${event.payload.seq}`);
      },
    });
    const consumer = createConsumer({
      db: testDb.db, sql: testDb.sql, redis, logger: createLogger({ name: 'parked-test', level: 'silent' }), registry, streams: [{ name: stream }], group, keyPrefix,
      blockMs: 200, leaseTtlMs: 2_000, retryBaseDelayMs: 20, retryMaxDelayMs: 50, maxAttempts: 2, onExhausted: 'halt', parkingRecheckMs: 100,
    });
    consumers.push(consumer);
    consumer.start();
    const events = [1, 2, 3].map((seq) => testStreamEvent({ type: 'Recorded', partitionKey: 'owner-a', payload: { seq } }));
    await appendTestEvents(redis, redisStreamKey(stream, keyPrefix), events);
    await waitFor(async () => (await testDb.sql`SELECT 1 FROM events.parked_key WHERE group_name = ${group} AND halted_at IS NOT NULL`).length === 1, {
      description: 'owner-a halted',
    });
    return { stream, group, headEventId: events[0]!.eventId, secondEventId: events[1]!.eventId };
  }

  const handled: string[] = [];
  const consumers: Consumer[] = [];
  afterAll(async () => {
    await Promise.all(consumers.map((c) => c.stop()));
  });

  /** Everything an action could change: the key rows, the parked events, the group's dead letters. */
  const parkedState = (group: string) => testDb.sql`
    SELECT (SELECT json_agg(json_build_object('key', partition_key, 'attempts', attempts, 'halted', halted_at IS NOT NULL, 'next', next_attempt_at) ORDER BY partition_key)
              FROM events.parked_key WHERE group_name = ${group}) AS keys,
           (SELECT json_agg(event_id ORDER BY id) FROM events.parked_event WHERE group_name = ${group}) AS events,
           (SELECT count(*)::int FROM events.dead_letter WHERE group_name = ${group}) AS dead_letters`;
  const body = (value: unknown) => ({ body: JSON.stringify(value) });

  test('GET /parked-keys lists a halted key with its head event, error and waiting count; filters; bad query 400; key required', async () => {
    const { stream, group, headEventId } = await haltedKey(new Set(['owner-a']));
    const res = await call('GET', `/parked-keys?group=${group}`);
    expect(res.status).toBe(200);
    expect(res.body.items).toEqual([
      expect.objectContaining({
        group,
        stream,
        key: 'owner-a',
        state: 'halted',
        attempts: 2,
        parkedEvents: 3,
        lastError: expect.stringContaining('payment provider down for owner-a'),
        head: expect.objectContaining({ eventId: headEventId, eventType: 'Recorded' }),
      }),
    ]);
    expect((await call('GET', `/parked-keys?group=${group}&halted=true&stream=${encodeURIComponent(stream)}&key=owner-a`)).body.items).toHaveLength(1);
    expect((await call('GET', `/parked-keys?group=${group}&key=owner-b`)).body.items).toEqual([]);

    expect(await call('GET', '/parked-keys?halted=yes')).toMatchObject({ status: 400, body: { error: 'bad_request', message: expect.stringContaining('halted') } });
    expect(await call('GET', '/parked-keys?limit=0')).toMatchObject({ status: 400, body: { message: expect.stringContaining('limit: must be an integer from 1 to 1000') } });
    expect(await call('GET', '/parked-keys?group=bad%20group')).toMatchObject({ status: 400, body: { message: expect.stringContaining('group') } });
    expect(await call('GET', '/parked-keys?colour=red')).toMatchObject({ status: 400 });
    expect(await call('GET', '/parked-keys', { key: null })).toMatchObject({ status: 401, body: { error: 'unauthorized' } });
  });

  test('release and discard: refused without the key (401), malformed (400) or unknown (404, saying which) with nothing written; discard drops the head, release retries the key, in order', async () => {
    const failing = new Set(['owner-a']);
    const { stream, group, headEventId, secondEventId } = await haltedKey(failing);
    const ref = { group, stream, key: 'owner-a' };
    const before = await parkedState(group);

    for (const verb of ['release', 'discard']) {
      expect(await call('POST', `/parked-keys/${verb}`, { ...body(ref), key: null })).toMatchObject({ status: 401, body: { error: 'unauthorized' } });
      expect(await call('POST', `/parked-keys/${verb}`, { ...body(ref), key: 'wrong' })).toMatchObject({ status: 401 });
      expect(await call('POST', `/parked-keys/${verb}`, body({ ...ref, stream: 'orders' }))).toMatchObject({
        status: 400,
        body: { error: 'bad_request', message: expect.stringContaining('stream: must be the partition stream') },
      });
      expect(await call('POST', `/parked-keys/${verb}`, body({ group, stream }))).toMatchObject({ status: 400, body: { message: expect.stringContaining('key') } });
      expect(await call('POST', `/parked-keys/${verb}`, body({ ...ref, key: '' }))).toMatchObject({ status: 400, body: { message: 'key: must not be empty' } });
      expect(await call('POST', `/parked-keys/${verb}`, body({ ...ref, group: 'no spaces' }))).toMatchObject({ status: 400, body: { message: expect.stringContaining('group') } });
      expect(await call('POST', `/parked-keys/${verb}`, body({ ...ref, extra: 1 }))).toMatchObject({ status: 400 });
      expect(await call('POST', `/parked-keys/${verb}`, { body: '{"group": ' })).toMatchObject({ status: 400 });
      expect(await call('POST', `/parked-keys/${verb}`, body({ ...ref, key: 'owner-nobody' }))).toMatchObject({
        status: 404,
        body: { error: 'not_found', message: `no parked key "owner-nobody" in group ${group} on ${stream} (events key list shows the parked keys)` },
      });
      expect(await call('POST', `/parked-keys/${verb}`, body({ ...ref, stream: `${stream}:p1` }))).toMatchObject({ status: 404, body: { message: expect.stringContaining(`on ${stream}:p1`) } });
    }
    expect(await parkedState(group)).toEqual(before);

    // Discard the head: a discarded dead letter records it (with who), the key stays parked with its next event due now.
    const discarded = await call('POST', '/parked-keys/discard', { ...body(ref), actor: 'carol' });
    expect(discarded).toMatchObject({ status: 200, body: { ...ref, discardedEventId: headEventId, keyReleased: false } });
    const [letter] = await testDb.sql<{ event_id: string; status: string; resolved_by: string }[]>`
      SELECT event_id::text, status, resolved_by FROM events.dead_letter WHERE group_name = ${group}`;
    expect(letter).toEqual({ event_id: headEventId, status: 'discarded', resolved_by: expect.stringMatching(/^admin:carol@/) });
    expect(JSON.parse(logLines.find((l) => l.includes('"parked_key.discard"') && l.includes(group))!)).toMatchObject({ by: expect.stringContaining('admin:carol@'), discardedEventId: headEventId });

    // The next event fails too and halts again; the fix is deployed, then release: seq 2 and 3 follow in order.
    await waitFor(async () => {
      const [row] = (await call('GET', `/parked-keys?group=${group}&halted=true`)).body.items as Array<{ head: { eventId: string } }>;
      return row?.head.eventId === secondEventId;
    }, { description: 'owner-a halted again on its second event' });
    failing.clear();
    expect(await call('POST', '/parked-keys/release', body(ref))).toMatchObject({ status: 200, body: { ...ref, released: true } });
    await waitFor(async () => handled.filter((h) => h.startsWith('owner-a:')).length === 2, { description: 'owner-a completes' });
    expect(handled.filter((h) => h.startsWith('owner-a:'))).toEqual(['owner-a:2', 'owner-a:3']);
    await waitFor(async () => ((await call('GET', `/parked-keys?group=${group}`)).body.items as unknown[]).length === 0, { description: 'key released' });
    expect(await call('POST', '/parked-keys/release', body(ref))).toMatchObject({ status: 404 });
    expect(logLines.some((l) => l.includes('"parked_key.release"') && l.includes(group))).toBe(true);
  });
});
