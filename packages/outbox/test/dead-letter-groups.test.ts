/**
 * Dead letters grouped by fingerprint (event type + error class + first
 * application stack frame), the bulk actions on a group, and event lookup
 * with its journey — the shared implementation behind `events dlq groups`,
 * `events lookup`, the console and the admin JSON routes.
 */
import { randomUUID } from 'node:crypto';
import type { RedisClient } from '@petcover/service-kit';
import { fingerprintOf, listDeadLetterGroups, lookupEvents, resolveDeadLetters } from '../src';
import { runEventsCli } from '../src/cli/events';
import { createTestDatabase, createTestRedis, testRedisUrl, trackedRedisPrefixes, uniqueStreamName, type TestDatabase } from '../src/testing';

let testDb: TestDatabase;
let redis: RedisClient;
const prefixes = trackedRedisPrefixes();

beforeAll(async () => {
  testDb = await createTestDatabase();
  redis = createTestRedis();
});
afterAll(async () => {
  await prefixes.deleteAll(redis);
  redis.disconnect();
  await testDb.drop();
});

function stack(errorClass: string, message: string, appFrame: string, column: number): string {
  return [
    `${errorClass}: ${message}`,
    `    at ${appFrame}:${column}`,
    '    at settleOne (/app/packages/outbox/dist/consumer/settle-entries.js:120:7)',
    '    at process.processTicksAndRejections (node:internal/process/task_queues:95:5)',
  ].join('\n');
}

async function insertLetter(group: string, stream: string, type: string, errorClass: string, frame: string, column = 9): Promise<string> {
  const [row] = await testDb.sql<{ id: string }[]>`
    INSERT INTO events.dead_letter (group_name, stream_name, redis_entry_id, event_id, event_type, partition_key, payload, headers,
                                    error_message, error_stack, attempts, first_failed_at)
    VALUES (${group}, ${stream}, ${`${Date.now()}-${Math.floor(Math.random() * 1e9)}`}, ${randomUUID()}, ${type}, 'key-1', '{"n":1}'::jsonb, '{}'::jsonb,
            ${`${type} failed with ${errorClass}`}, ${stack(errorClass, `${type} failed`, frame, column)}, 5, now())
    RETURNING id::text`;
  return row!.id;
}

test('fingerprints: two error classes and two event types land in the right groups; columns and pipeline frames do not split a group', async () => {
  const stream = uniqueStreamName('dlq');
  const group = `g-${randomUUID().slice(0, 8)}`;
  const enrollFrame = 'enrollPet (/app/packages/domain/dist/handlers/enroll.js:41';
  const auditFrame = 'recordAudit (/app/packages/domain/dist/handlers/audit.js:12';
  const a = [
    await insertLetter(group, stream, 'ContractCreated', 'TypeError', enrollFrame, 9),
    await insertLetter(group, stream, 'ContractCreated', 'TypeError', enrollFrame, 17),
    await insertLetter(group, stream, 'ContractCreated', 'TypeError', enrollFrame, 9),
  ];
  const b = [await insertLetter(group, stream, 'ContractCreated', 'PayloadSchemaError', enrollFrame)];
  const c = [
    await insertLetter(group, stream, 'SignatureReceived', 'TypeError', auditFrame),
    await insertLetter(group, stream, 'SignatureReceived', 'TypeError', auditFrame),
  ];

  const groups = (await listDeadLetterGroups(testDb.sql, { group })).map((g) => ({
    type: g.eventType,
    errorClass: g.errorClass,
    frame: g.frame,
    count: g.count,
    ids: g.ids,
  }));
  expect(groups).toEqual([
    { type: 'ContractCreated', errorClass: 'TypeError', frame: `${enrollFrame})`.replace(/\)$/, ''), count: 3, ids: a },
    { type: 'SignatureReceived', errorClass: 'TypeError', frame: auditFrame, count: 2, ids: c },
    { type: 'ContractCreated', errorClass: 'PayloadSchemaError', frame: enrollFrame, count: 1, ids: b },
  ]);
  expect(fingerprintOf({ eventType: 'X', errorMessage: 'boom', errorStack: null })).toMatchObject({ errorClass: 'Error', frame: null });

  // The CLI prints the same groups and replays one whole group by its fingerprint, oldest first.
  const fingerprint = (await listDeadLetterGroups(testDb.sql, { group }))[1]!.fingerprint;
  let stdout = '';
  const io = { env: { DATABASE_URL: testDb.url, REDIS_URL: testRedisUrl() }, stdout: (t: string) => (stdout += `${t}\n`), stderr: () => undefined };
  expect(await runEventsCli(['dlq', 'groups', '--group', group], io)).toBe(0);
  expect(stdout).toContain(`${fingerprint}\t2\tSignatureReceived\tTypeError`);
  expect(await runEventsCli(['dlq', 'replay', '--fingerprint', fingerprint], io)).toBe(0);
  expect(stdout).toContain(`2 of 2 dead letter(s) of fingerprint ${fingerprint} replayed`);
  const replayed = await testDb.sql<{ id: string; status: string }[]>`SELECT id::text, status FROM events.dead_letter WHERE id = ANY(${`{${c.join(',')}}`}::bigint[]) ORDER BY id`;
  expect(replayed.map((r) => r.status)).toEqual(['replayed', 'replayed']);
  expect(await runEventsCli(['dlq', 'replay', '--fingerprint', 'nothex'], io)).toBe(2);

  // A selection: one refused (already replayed), one discarded; the rest of the run goes on.
  const outcomes = await resolveDeadLetters(testDb.db, 'discard', [c[0]!, b[0]!], { by: 'test' });
  expect(outcomes).toEqual([
    { id: c[0], ok: false, error: expect.stringContaining('its status is replayed') },
    { id: b[0], ok: true },
  ]);
  expect((await listDeadLetterGroups(testDb.sql, { group })).map((g) => g.count)).toEqual([3]);
});

test('lookup: by event id, outbox id, Redis entry id and partition key, with the journey per group', async () => {
  const keyPrefix = prefixes.next();
  const stream = uniqueStreamName('lookup');
  const key = `contract-${randomUUID()}`;
  const ids = await testDb.sql<{ id: string; event_id: string }[]>`
    INSERT INTO events.outbox_event (event_id, stream_name, partition_key, event_type, payload, published_at)
    VALUES (${randomUUID()}, ${stream}, ${key}, 'ContractCreated', '{"n":1}'::jsonb, now()),
           (${randomUUID()}, ${stream}, ${key}, 'ContractAmended', '{"n":2}'::jsonb, NULL)
    RETURNING id::text, event_id::text`;
  const first = ids[0]!;
  const second = ids[1]!;
  const entryId = (await redis.xadd(`${keyPrefix}${stream}`, '*', 'outbox_id', first.id, 'event_id', first.event_id)) as string;
  await redis.xgroup('CREATE', `${keyPrefix}${stream}`, 'billing', '0');
  await redis.xgroup('CREATE', `${keyPrefix}${stream}`, 'mailer', '0');
  await redis.xreadgroup('GROUP', 'mailer', 'c1', 'COUNT', 10, 'STREAMS', `${keyPrefix}${stream}`, '>');
  await testDb.sql`INSERT INTO events.processed_event (group_name, event_id) VALUES ('audit', ${first.event_id})`;
  await testDb.sql`
    INSERT INTO events.dead_letter (group_name, stream_name, redis_entry_id, event_id, event_type, partition_key, payload, error_message, attempts, first_failed_at)
    VALUES ('billing', ${stream}, ${entryId}, ${first.event_id}, 'ContractCreated', ${key}, '{}'::jsonb, 'ContractCreated references missing Plan x', 5, now())`;
  await testDb.sql`INSERT INTO events.processed_event (group_name, event_id) VALUES ('billing', ${first.event_id})`;
  const options = { sql: testDb.sql, redis, keyPrefix };

  for (const [query, kind] of [[first.event_id, 'event_id'], [first.id, 'outbox_id'], [entryId, 'redis_entry_id']] as const) {
    const result = await lookupEvents(options, query);
    expect(result.matchedAs).toBe(kind);
    expect(result.events).toHaveLength(1);
    const journey = result.events[0]!;
    expect(journey).toMatchObject({ outboxId: first.id, eventId: first.event_id, redisEntryId: entryId, type: 'ContractCreated' });
    expect(journey.groups).toEqual([
      expect.objectContaining({ group: 'audit', state: 'handled' }),
      expect.objectContaining({ group: 'billing', state: 'dead', deadLetter: expect.objectContaining({ attempts: 5, errorMessage: 'ContractCreated references missing Plan x' }) }),
      expect.objectContaining({ group: 'mailer', state: 'delivered' }),
    ]);
  }
  const byKey = await lookupEvents(options, key);
  expect(byKey.matchedAs).toBe('partition_key');
  expect(byKey.events.map((e) => [e.outboxId, e.publishedAt === null])).toEqual([[first.id, false], [second.id, true]]);
  expect(byKey.events[1]!.groups.find((g) => g.group === 'mailer')).toMatchObject({ state: 'waiting' });
  expect((await lookupEvents(options, 'no-such-thing')).events).toEqual([]);
});
