import { sql } from 'drizzle-orm';
import postgres from 'postgres';
import {
  DuplicateEventIdError,
  enqueue,
  enqueueMany,
  MAX_PAYLOAD_BYTES,
  OUTBOX_NOTIFY_CHANNEL,
  OutboxValidationError,
  type OutboxEventInput,
} from '../src';
import { createTestDatabase, uniqueStreamName, waitFor, type TestDatabase } from '../src/testing';

let testDb: TestDatabase;
beforeAll(async () => {
  testDb = await createTestDatabase();
  // A stand-in "domain" table, to prove the event shares the domain change's fate.
  await testDb.sql`CREATE TABLE public.widget (id serial PRIMARY KEY, name text NOT NULL)`;
});
afterAll(async () => testDb.drop());

const countRows = async (stream: string) =>
  Number((await testDb.sql`SELECT count(*)::int AS n FROM events.outbox_event WHERE stream_name = ${stream}`)[0]?.n);

function event(stream: string, overrides: Partial<OutboxEventInput> = {}): OutboxEventInput {
  return { stream, type: 'WidgetCreated', partitionKey: 'widget-1', payload: { name: 'w' }, ...overrides };
}

describe('enqueue inside the caller transaction', () => {
  test('a committed transaction leaves the row with every field set', async () => {
    const stream = uniqueStreamName('widgets');
    const result = await testDb.db.transaction(async (tx) => {
      await tx.execute(sql`INSERT INTO public.widget (name) VALUES ('w')`);
      return enqueue(tx, event(stream, { headers: { correlationId: 'c-1', tenant: 'fr' } }));
    });
    const [row] = await testDb.sql`SELECT * FROM events.outbox_event WHERE event_id = ${result.eventId}`;
    expect(row).toMatchObject({
      stream_name: stream,
      partition_key: 'widget-1',
      event_type: 'WidgetCreated',
      payload: { name: 'w' },
      headers: { correlationId: 'c-1', tenant: 'fr' },
      published_at: null,
    });
    expect(Number.isNaN(new Date(String(row?.created_at)).getTime())).toBe(false);
    expect(String(row?.id)).toBe(String(result.id));
    expect(result.eventId).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  });

  test('a rolled-back transaction leaves neither the domain row nor the event', async () => {
    const stream = uniqueStreamName('widgets');
    const name = `rollback-${stream}`;
    await expect(
      testDb.db.transaction(async (tx) => {
        await tx.execute(sql`INSERT INTO public.widget (name) VALUES (${name})`);
        await enqueue(tx, event(stream));
        throw new Error('domain rule failed after the insert');
      }),
    ).rejects.toThrow('domain rule failed');
    expect(await countRows(stream)).toBe(0);
    expect(await testDb.sql`SELECT 1 FROM public.widget WHERE name = ${name}`).toHaveLength(0);
  });

  test('enqueueMany keeps array order in ids and honours a given event id', async () => {
    const stream = uniqueStreamName('widgets');
    const given = '0190b7c2-5f3a-7d21-8c4e-1a2b3c4d5e6f';
    const result = await testDb.db.transaction((tx) =>
      enqueueMany(tx, [event(stream, { eventId: given }), event(stream, { partitionKey: 'widget-2' })]),
    );
    expect(result[0]?.eventId).toBe(given);
    expect(result[0]!.id < result[1]!.id).toBe(true);
    expect(await countRows(stream)).toBe(2);
  });

  test('refuses a database handle that is not a transaction', async () => {
    const stream = uniqueStreamName('widgets');
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    await expect(enqueue(testDb.db as any, event(stream))).rejects.toMatchObject({ field: 'tx' });
    expect(await countRows(stream)).toBe(0);
  });
});

describe('invalid input: typed error naming the field, nothing written', () => {
  const circular: Record<string, unknown> = { a: 1 };
  circular.self = circular;
  const cases: Array<[string, (stream: string) => Partial<OutboxEventInput>, string]> = [
    ['bad stream name', () => ({ stream: 'contract_changes' }), 'stream'],
    ['stream name with too many parts', () => ({ stream: 'stream:a:b:c' }), 'stream'],
    ['empty type', () => ({ type: '' }), 'type'],
    ['blank type', () => ({ type: '   ' }), 'type'],
    ['empty partition key', () => ({ partitionKey: '' }), 'partitionKey'],
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    ['undefined payload', () => ({ payload: undefined as any }), 'payload'],
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    ['null payload', () => ({ payload: null as any }), 'payload'],
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    ['array payload', () => ({ payload: [1, 2] as any }), 'payload'],
    ['undefined nested value', () => ({ payload: { owner: { name: undefined } } }), 'payload.owner.name'],
    ['circular payload', () => ({ payload: circular }), 'payload.self'],
    ['NaN in payload', () => ({ payload: { premium: Number.NaN } }), 'payload.premium'],
    ['bigint in payload', () => ({ payload: { n: BigInt(1) } }), 'payload.n'],
    ['oversized payload', () => ({ payload: { blob: 'x'.repeat(MAX_PAYLOAD_BYTES) } }), 'payload'],
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    ['non-object headers', () => ({ headers: 'trace=1' as any }), 'headers'],
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    ['array headers', () => ({ headers: ['a'] as any }), 'headers'],
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    ['non-string header value', () => ({ headers: { retries: 3 as any } }), 'headers.retries'],
    ['malformed event id', () => ({ eventId: 'not-a-uuid' }), 'eventId'],
  ];

  test.each(cases)('%s', async (_name, override, field) => {
    const stream = uniqueStreamName('widgets');
    const input = event(stream, override(stream));
    const error = await testDb.db
      .transaction(async (tx) => {
        await enqueue(tx, input);
      })
      .catch((e: unknown) => e);
    expect(error).toBeInstanceOf(OutboxValidationError);
    expect((error as OutboxValidationError).field).toBe(field);
    expect(await countRows(stream)).toBe(0);
    expect(await testDb.sql`SELECT 1 FROM events.outbox_event WHERE stream_name = ${input.stream}`).toHaveLength(0);
  });

  test('a bad event in enqueueMany writes none of the batch', async () => {
    const stream = uniqueStreamName('widgets');
    const error = await testDb.db
      .transaction((tx) => enqueueMany(tx, [event(stream), event(stream, { type: '' })]))
      .catch((e: unknown) => e);
    expect(error).toMatchObject({ field: 'events[1].type' });
    expect(await countRows(stream)).toBe(0);
  });

  test('a duplicate event_id is refused and the transaction stays usable', async () => {
    const stream = uniqueStreamName('widgets');
    const first = await testDb.db.transaction((tx) => enqueue(tx, event(stream)));
    const outcome = await testDb.db.transaction(async (tx) => {
      const error = await enqueueMany(tx, [event(stream, { partitionKey: 'other' }), event(stream, { eventId: first.eventId })]).catch(
        (e: unknown) => e,
      );
      // Still usable: the caller decides what to do with its transaction.
      await tx.execute(sql`SELECT 1`);
      return error;
    });
    expect(outcome).toBeInstanceOf(DuplicateEventIdError);
    expect((outcome as DuplicateEventIdError).eventIds).toEqual([first.eventId]);
    expect(await countRows(stream)).toBe(1);
  });

  test('the same event_id twice in one call is refused', async () => {
    const stream = uniqueStreamName('widgets');
    const id = '0190b7c2-5f3a-7d21-8c4e-000000000001';
    await expect(
      testDb.db.transaction((tx) => enqueueMany(tx, [event(stream, { eventId: id }), event(stream, { eventId: id })])),
    ).rejects.toBeInstanceOf(DuplicateEventIdError);
    expect(await countRows(stream)).toBe(0);
  });
});

describe('NOTIFY at commit', () => {
  let listener: postgres.Sql;
  const received: string[] = [];
  beforeAll(async () => {
    listener = postgres(testDb.url, { max: 1 });
    await listener.listen(OUTBOX_NOTIFY_CHANNEL, (payload) => received.push(payload));
  });
  afterAll(async () => listener.end({ timeout: 5 }));

  test('arrives only after commit, carrying the stream name', async () => {
    const stream = uniqueStreamName('widgets');
    let seenBeforeCommit = true;
    await testDb.db.transaction(async (tx) => {
      await enqueue(tx, event(stream));
      // Give a notification every chance to (wrongly) arrive before commit.
      await tx.execute(sql`SELECT pg_sleep(0.2)`);
      seenBeforeCommit = received.includes(stream);
    });
    expect(seenBeforeCommit).toBe(false);
    await waitFor(() => received.includes(stream), { description: `NOTIFY for ${stream}` });
  });

  test('never arrives on rollback', async () => {
    const rolledBack = uniqueStreamName('widgets');
    const committed = uniqueStreamName('widgets');
    await testDb.db
      .transaction(async (tx) => {
        await enqueue(tx, event(rolledBack));
        tx.rollback();
      })
      .catch(() => undefined);
    // Notifications are delivered in commit order: once the later commit's
    // arrives, the rolled-back one would have arrived before it.
    await testDb.db.transaction((tx) => enqueue(tx, event(committed)));
    await waitFor(() => received.includes(committed), { description: `NOTIFY for ${committed}` });
    expect(received).not.toContain(rolledBack);
  });

  test('enqueueMany sends one NOTIFY per stream, however many rows it writes', async () => {
    const first = uniqueStreamName('widgets');
    const second = uniqueStreamName('widgets');
    const marker = uniqueStreamName('widgets');
    await testDb.db.transaction((tx) => enqueueMany(tx, [event(first), event(second), event(first), event(first)]));
    // Delivered in commit order: once the later commit's arrives, all of the first one's have.
    await testDb.db.transaction((tx) => enqueue(tx, event(marker)));
    await waitFor(() => received.includes(marker), { description: `NOTIFY for ${marker}` });
    expect(received.filter((s) => s === first)).toHaveLength(1);
    expect(received.filter((s) => s === second)).toHaveLength(1);
  });
});
