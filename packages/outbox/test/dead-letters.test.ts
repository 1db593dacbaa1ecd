import { sql } from 'drizzle-orm';
import { z } from 'zod';
import {
  createHandlerRegistry,
  DeadLetterNotFoundError,
  DeadLetterStateError,
  discardDeadLetter,
  getDeadLetter,
  listDeadLetters,
  PermanentError,
  redisStreamKey,
  replayDeadLetter,
} from '../src';
import {
  appendRawEntry,
  appendTestEvents,
  testStreamEvent,
  uniqueGroupName,
  uniqueStreamName,
  waitFor,
} from '../src/testing';
import { useConsumerHarness } from './consumer-harness';

const harness = useConsumerHarness({ poolSize: 10 });
const usePrefix = harness.nextPrefix;

/** A one-partition stream with a handler that refuses seq 2 until `fixed` is set. */
async function consumeWithBrokenHandler(stream = uniqueStreamName('payments')) {
  const state = { fixed: false };
  const prefix = usePrefix();
  const group = uniqueGroupName();
  const key = redisStreamKey(stream, prefix);
  const registry = createHandlerRegistry().register('PaymentTaken', {
    schema: z.object({ seq: z.number() }),
    async handle(event, ctx) {
      if (event.payload.seq === 2 && !state.fixed) throw new PermanentError('payment 2 references a missing policy');
      await harness.recordEffects(ctx, [event]);
    },
  });
  harness.startConsumer({ registry, streams: [{ name: stream }], group, keyPrefix: prefix });
  const events = [1, 2, 3].map((seq) =>
    testStreamEvent({ type: 'PaymentTaken', partitionKey: 'policy-9', payload: { seq }, headers: { correlationId: `corr-${seq}` } }),
  );
  await appendTestEvents(harness.redis, key, events);
  const [letter] = await waitFor(async () => {
    const found = await listDeadLetters(harness.testDb.sql, { group });
    return found.length === 1 ? found : null;
  }, { description: 'one dead letter' });
  return { state, stream, key, group, events, letter: letter! };
}

const effects = harness.effectsOf;

describe('dead letters', () => {
  test('replay re-enqueues the original event once; the fixed handler handles it once; a second replay is refused', async () => {
    const { state, stream, key, group, events, letter } = await consumeWithBrokenHandler();
    expect(letter).toMatchObject({ groupName: group, streamName: stream, eventId: events[1]!.eventId, status: 'dead', attempts: 1 });
    expect(await getDeadLetter(harness.testDb.sql, letter.id)).toMatchObject({ id: letter.id, status: 'dead' });

    state.fixed = true;
    const replayed = await replayDeadLetter(harness.testDb.db, letter.id, { by: 'alice@oncall' });
    expect(replayed).toMatchObject({ deadLetterId: letter.id, eventId: events[1]!.eventId });
    const [row] = await harness.testDb.sql<{ id: string; event_id: string; stream_name: string; event_type: string; partition_key: string; payload: unknown; headers: Record<string, string>; published_at: string | null }[]>`
      SELECT id::text, event_id::text, stream_name, event_type, partition_key, payload, headers, published_at FROM events.outbox_event`;
    expect(row).toMatchObject({
      id: replayed.outboxId,
      event_id: events[1]!.eventId,
      stream_name: stream,
      event_type: 'PaymentTaken',
      partition_key: 'policy-9',
      payload: { seq: 2 },
      headers: { correlationId: 'corr-2', replayOfDeadLetter: letter.id },
      published_at: null,
    });
    expect(await getDeadLetter(harness.testDb.sql, letter.id)).toMatchObject({ status: 'replayed', resolvedBy: 'alice@oncall' });

    // What the publisher would append for that outbox row.
    const replayedEvent = { ...events[1]!, outboxId: row!.id, headers: row!.headers };
    await appendTestEvents(harness.redis, key, [replayedEvent, replayedEvent]);
    await waitFor(async () => (await effects(group)).length === 3, { description: 'replayed event handled' });
    await waitFor(async () => Number(((await harness.redis.xpending(key, group)) as [number])[0]) === 0, { description: 'all acknowledged' });
    const rows = await effects(group);
    expect(rows.map((r) => r.seq)).toEqual([1, 3, 2]);

    await expect(replayDeadLetter(harness.testDb.db, letter.id, { by: 'bob' })).rejects.toThrow(DeadLetterStateError);
    await expect(replayDeadLetter(harness.testDb.db, letter.id, { by: 'bob' })).rejects.toThrow(/its status is replayed/);
    await expect(discardDeadLetter(harness.testDb.db, letter.id, { by: 'bob' })).rejects.toThrow(/its status is replayed/);
    const [outboxCount] = await harness.testDb.sql`SELECT count(*)::int AS n FROM events.outbox_event`;
    expect(outboxCount!.n).toBe(1);
  });

  test('replay replaces an outbox row still holding that event_id (event_id stays unique)', async () => {
    const { stream, events, letter } = await consumeWithBrokenHandler();
    await harness.testDb.db.transaction(async (tx) => {
      await tx.execute(sql`INSERT INTO events.outbox_event (event_id, stream_name, partition_key, event_type, payload, published_at)
        VALUES (${events[1]!.eventId}::uuid, ${stream}, 'policy-9', 'PaymentTaken', '{"seq":2}', now())`);
    });
    const replayed = await replayDeadLetter(harness.testDb.db, BigInt(letter.id), { by: 'ops' });
    const rows = await harness.testDb.sql`SELECT id::text AS id, published_at FROM events.outbox_event WHERE event_id = ${events[1]!.eventId}`;
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ id: replayed.outboxId, published_at: null });
  });

  test('a stream whose name part looks like a partition suffix (stream:<ctx>:p1) replays to itself', async () => {
    // An older parser stripped `:p1` and replayed into `stream:<ctx>`, which enqueue refuses.
    const stream = uniqueStreamName('p1');
    const { letter } = await consumeWithBrokenHandler(stream);
    expect(letter.streamName).toBe(stream);
    const replayed = await replayDeadLetter(harness.testDb.db, letter.id, { by: 'ops' });
    const [row] = await harness.testDb.sql`SELECT stream_name FROM events.outbox_event WHERE id = ${replayed.outboxId}`;
    expect(row).toEqual({ stream_name: stream });
  });

  test('discard marks the letter discarded and is refused the second time; unknown ids are NotFound', async () => {
    const { group, letter } = await consumeWithBrokenHandler();
    await discardDeadLetter(harness.testDb.db, letter.id, { by: 'ops' });
    expect(await getDeadLetter(harness.testDb.sql, letter.id)).toMatchObject({ status: 'discarded', resolvedBy: 'ops' });
    expect(await listDeadLetters(harness.testDb.sql, { group, status: 'dead' })).toEqual([]);
    expect(await listDeadLetters(harness.testDb.sql, { group, status: 'discarded', type: 'PaymentTaken' })).toHaveLength(1);
    await expect(discardDeadLetter(harness.testDb.db, letter.id, { by: 'ops' })).rejects.toThrow(new DeadLetterStateError(letter.id, 'discarded', 'discarded'));
    await expect(replayDeadLetter(harness.testDb.db, letter.id, { by: 'ops' })).rejects.toThrow(/its status is discarded/);
    await expect(replayDeadLetter(harness.testDb.db, '999999999', { by: 'ops' })).rejects.toThrow(DeadLetterNotFoundError);
    await expect(discardDeadLetter(harness.testDb.db, 'not-a-number', { by: 'ops' })).rejects.toThrow(DeadLetterNotFoundError);
    expect(await getDeadLetter(harness.testDb.sql, '999999999')).toBeNull();
  });

  test('a dead letter of a malformed entry cannot be replayed (nothing to rebuild), only discarded', async () => {
    const stream = uniqueStreamName();
    const prefix = usePrefix();
    const group = uniqueGroupName();
    const registry = createHandlerRegistry().register('PaymentTaken', { schema: z.object({}), handle: async () => undefined });
    harness.startConsumer({ registry, streams: [{ name: stream }], group, keyPrefix: prefix });
    await appendRawEntry(harness.redis, redisStreamKey(stream, prefix), { garbage: 'yes' });
    const [letter] = await waitFor(async () => {
      const found = await listDeadLetters(harness.testDb.sql, { group });
      return found.length === 1 ? found : null;
    }, { description: 'dead letter of the malformed entry' });
    await expect(replayDeadLetter(harness.testDb.db, letter!.id, { by: 'ops' })).rejects.toThrow(/lacked event_id.*discard it instead/);
    expect(await getDeadLetter(harness.testDb.sql, letter!.id)).toMatchObject({ status: 'dead' });
    await discardDeadLetter(harness.testDb.db, letter!.id, { by: 'ops' });
  });
});
