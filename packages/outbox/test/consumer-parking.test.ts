/**
 * Parking (issue 19): a failing event blocks only its own key. Its key is
 * parked in Postgres with the event, the entry is acknowledged, later events
 * of the key wait behind it in order, other keys flow; the partition's lease
 * holder retries the key when due, and releases it on success. Ordering per
 * key is checked under per-event handlers, handleBatch, concurrency > 1,
 * several partitions and a takeover mid-retry; exactly once and replay too.
 */
import { z } from 'zod';
import {
  createHandlerRegistry,
  partitionFor,
  partitionStreamName,
  redisStreamKey,
  replayDeadLetter,
  type HandledEvent,
  type HandlerContext,
  type HandlerRegistry,
} from '../src';
import {
  appendTestEvents,
  testStreamEvent,
  uniqueGroupName,
  uniqueStreamName,
  waitFor,
} from '../src/testing';
import { useConsumerHarness } from './consumer-harness';

const harness = useConsumerHarness({
  consumerDefaults: { retryBaseDelayMs: 20, retryMaxDelayMs: 100, maxAttempts: 1_000, parkingRecheckMs: 100 },
});
const { startConsumer, recordEffects, effectsOf, waitForEffects, pendingOf, metricSum } = harness;

const payloadSchema = z.object({ seq: z.number().int() });
type Payload = z.infer<typeof payloadSchema>;

/** Fails every event of a key in `failing` (a downstream outage for that entity); records the others. */
function faultyRegistry(failing: Set<string>, options: { batch?: boolean; onExhausted?: 'halt' | 'dead-letter-and-continue' } = {}): HandlerRegistry {
  const check = (event: HandledEvent<Payload>) => {
    if (failing.has(event.partitionKey)) throw new Error(`downstream refuses ${event.partitionKey}`);
  };
  return createHandlerRegistry().register('Recorded', {
    schema: payloadSchema,
    onExhausted: options.onExhausted,
    async handle(event, ctx) {
      check(event);
      await recordEffects(ctx, [event]);
    },
    ...(options.batch
      ? {
          async handleBatch(events: HandledEvent<Payload>[], ctx: HandlerContext) {
            for (const event of events) check(event);
            await recordEffects(ctx, events);
          },
        }
      : {}),
  });
}

function seqsOf(rows: { partition_key: string; seq: number }[], key: string): number[] {
  return rows.filter((r) => r.partition_key === key).map((r) => r.seq);
}

async function parkedOf(group: string) {
  return harness.testDb.sql<{ partition_key: string; parked: number; attempts: number; halted: boolean; last_error: string | null }[]>`
    SELECT k.partition_key, (SELECT count(*)::int FROM events.parked_event e WHERE e.group_name = k.group_name
      AND e.stream_name = k.stream_name AND e.partition_key = k.partition_key) AS parked,
      k.attempts, k.halted_at IS NOT NULL AS halted, k.last_error
    FROM events.parked_key k WHERE k.group_name = ${group} ORDER BY k.partition_key`;
}

/** Events seq 1..n of each key, interleaved (a1 b1 a2 b2 ...), as one partition receives them. */
function interleaved(keys: readonly string[], n: number) {
  const events = [];
  for (let seq = 1; seq <= n; seq++) for (const partitionKey of keys) events.push(testStreamEvent({ type: 'Recorded', partitionKey, payload: { seq } }));
  return events;
}

describe.each([
  ['per-event handler', false],
  ['handleBatch', true],
])('parking with a %s', (_name, batch) => {
  test('a failing key is parked with its later events; other keys flow; when the fault clears the key completes in order, and is released', async () => {
    const stream = uniqueStreamName();
    const prefix = harness.nextPrefix();
    const group = uniqueGroupName();
    const key = redisStreamKey(stream, prefix);
    const failing = new Set(['owner-a']);
    const consumer = startConsumer({ registry: faultyRegistry(failing, { batch }), streams: [{ name: stream }], group, keyPrefix: prefix });
    await appendTestEvents(harness.redis, key, interleaved(['owner-a', 'owner-b', 'owner-c'], 5));

    // With in-place retries this would wait forever: owner-a fails until the others are done.
    const others = await waitForEffects(group, 10);
    expect(seqsOf(others, 'owner-b')).toEqual([1, 2, 3, 4, 5]);
    expect(seqsOf(others, 'owner-c')).toEqual([1, 2, 3, 4, 5]);
    expect(seqsOf(others, 'owner-a')).toEqual([]);
    // Durable: the key and its five events are in Postgres, and Redis holds nothing pending.
    await waitFor(async () => ((await parkedOf(group))[0]?.attempts ?? 0) >= 2, { description: 'owner-a retried' });
    const [parked] = await parkedOf(group);
    expect(parked).toMatchObject({ partition_key: 'owner-a', parked: 5, halted: false, last_error: 'downstream refuses owner-a' });
    await waitFor(async () => (await pendingOf(key, group)) === 0, { description: 'everything acknowledged' });
    expect(await metricSum(consumer, 'petcover_consumer_parked_total')).toBe(5);

    failing.clear();
    const rows = await waitForEffects(group, 15);
    expect(seqsOf(rows, 'owner-a')).toEqual([1, 2, 3, 4, 5]);
    expect(rows.filter((r) => r.partition_key === 'owner-a' && r.seq === 1)[0]!.attempt).toBeGreaterThan(1);
    expect(rows.filter((r) => r.partition_key === 'owner-a' && r.seq > 1).every((r) => r.attempt === 1)).toBe(true);
    await waitFor(async () => (await parkedOf(group)).length === 0, { description: 'owner-a released' });
    const [left] = await harness.testDb.sql`SELECT count(*)::int AS n FROM events.parked_event WHERE group_name = ${group}`;
    expect(left!.n).toBe(0);
    await waitFor(async () => (await metricSum(consumer, 'petcover_consumer_parked_entries')) === 0, { description: 'gauge back to 0' });
    expect(await metricSum(consumer, 'petcover_consumer_handled_total')).toBe(15);
  });
});

describe('parking', () => {
  test('new events of a parked key park behind it while it waits; a re-delivered parked event is a duplicate', async () => {
    const stream = uniqueStreamName();
    const prefix = harness.nextPrefix();
    const group = uniqueGroupName();
    const key = redisStreamKey(stream, prefix);
    const failing = new Set(['owner-a']);
    const consumer = startConsumer({ registry: faultyRegistry(failing), streams: [{ name: stream }], group, keyPrefix: prefix });
    const first = testStreamEvent({ type: 'Recorded', partitionKey: 'owner-a', payload: { seq: 1 } });
    await appendTestEvents(harness.redis, key, [first]);
    await waitFor(async () => (await parkedOf(group)).length === 1, { description: 'owner-a parked' });
    // Later events of the key, and the parked one again (a replay of the outbox, Redis data loss...).
    await appendTestEvents(harness.redis, key, [
      testStreamEvent({ type: 'Recorded', partitionKey: 'owner-a', payload: { seq: 2 } }),
      first,
      testStreamEvent({ type: 'Recorded', partitionKey: 'owner-b', payload: { seq: 1 } }),
    ]);
    await waitForEffects(group, 1);
    await waitFor(async () => (await parkedOf(group))[0]?.parked === 2, { description: 'seq 2 parked behind seq 1' });
    expect(await metricSum(consumer, 'petcover_consumer_duplicates_total')).toBe(1);
    failing.clear();
    const rows = await waitForEffects(group, 3);
    expect(seqsOf(rows, 'owner-a')).toEqual([1, 2]);
    await waitFor(async () => (await parkedOf(group)).length === 0, { description: 'released' });
    // Exactly once: one inbox row per event, none left behind.
    const [inbox] = await harness.testDb.sql`SELECT count(*)::int AS n FROM events.processed_event WHERE group_name = ${group}`;
    expect(inbox!.n).toBe(3);
    expect(await effectsOf(group)).toHaveLength(3);
  });

  test('several partitions, concurrency 2, keys failing transiently at random: every event once, in order per key', async () => {
    const stream = uniqueStreamName();
    const prefix = harness.nextPrefix();
    const group = uniqueGroupName();
    const P = 3;
    const keys = Array.from({ length: 9 }, (_, i) => `pet-${i}`);
    const perKey = 12;
    // Each (key, seq) fails its first 1-3 attempts for a third of the events: deterministic per event.
    const failuresLeft = new Map<string, number>();
    for (const k of keys) for (let seq = 1; seq <= perKey; seq++) if ((k.length + seq * 7 + Number(k.slice(4))) % 3 === 0) failuresLeft.set(`${k}/${seq}`, 1 + (seq % 3));
    const registry = createHandlerRegistry().register('Recorded', {
      schema: payloadSchema,
      async handle(event, ctx) {
        const id = `${event.partitionKey}/${event.payload.seq}`;
        const left = failuresLeft.get(id) ?? 0;
        if (left > 0) {
          failuresLeft.set(id, left - 1);
          throw new Error(`transient failure of ${id}`);
        }
        await recordEffects(ctx, [event]);
      },
      async handleBatch(events, ctx) {
        for (const event of events) if ((failuresLeft.get(`${event.partitionKey}/${event.payload.seq}`) ?? 0) > 0) throw new Error('a batch with a failing event');
        await recordEffects(ctx, events);
      },
    });
    const streams = [{ name: stream, partitions: P }];
    startConsumer({ registry, streams, group, keyPrefix: prefix, concurrency: 2, batchSize: 5 });
    const byPartition = new Map<number, ReturnType<typeof testStreamEvent>[]>();
    for (const event of interleaved(keys, perKey)) {
      const p = partitionFor(event.partitionKey, P);
      byPartition.set(p, [...(byPartition.get(p) ?? []), event]);
    }
    for (const [p, events] of byPartition) await appendTestEvents(harness.redis, redisStreamKey(partitionStreamName(stream, p, P), prefix), events);
    const rows = await waitForEffects(group, keys.length * perKey, 60_000);
    expect(rows).toHaveLength(keys.length * perKey);
    expect(new Set(rows.map((r) => r.event_id)).size).toBe(keys.length * perKey);
    for (const k of keys) expect(seqsOf(rows, k)).toEqual(Array.from({ length: perKey }, (_, i) => i + 1));
    await waitFor(async () => (await parkedOf(group)).length === 0, { description: 'no key left parked' });
  });

  test('takeover mid-retry: parked keys belong to the group and partition; the next lease owner continues them in order', async () => {
    const stream = uniqueStreamName();
    const prefix = harness.nextPrefix();
    const group = uniqueGroupName();
    const key = redisStreamKey(stream, prefix);
    const failing = new Set(['owner-a']);
    const first = startConsumer({ registry: faultyRegistry(failing), streams: [{ name: stream }], group, keyPrefix: prefix });
    await appendTestEvents(harness.redis, key, interleaved(['owner-a', 'owner-b'], 3));
    await waitForEffects(group, 3);
    await waitFor(async () => (await parkedOf(group))[0]?.parked === 3, { description: 'owner-a parked with 3 events' });
    await first.stop();
    failing.clear();
    // A new owner (another process): the parked rows say what to continue.
    const second = startConsumer({ registry: faultyRegistry(failing), streams: [{ name: stream }], group, keyPrefix: prefix });
    expect(second.ownerId).not.toBe(first.ownerId);
    await appendTestEvents(harness.redis, key, [testStreamEvent({ type: 'Recorded', partitionKey: 'owner-a', payload: { seq: 4 } })]);
    const rows = await waitForEffects(group, 7);
    expect(seqsOf(rows, 'owner-a')).toEqual([1, 2, 3, 4]);
    expect(seqsOf(rows, 'owner-b')).toEqual([1, 2, 3]);
    await waitFor(async () => (await parkedOf(group)).length === 0, { description: 'released by the new owner' });
  });

  test('out of attempts under dead-letter-and-continue: the head is dead-lettered, the key goes on in order; replay re-delivers it once', async () => {
    const stream = uniqueStreamName();
    const prefix = harness.nextPrefix();
    const group = uniqueGroupName();
    const key = redisStreamKey(stream, prefix);
    const registry = createHandlerRegistry().register('Recorded', {
      schema: payloadSchema,
      async handle(event, ctx) {
        if (event.partitionKey === 'owner-a' && event.payload.seq === 2 && !event.headers.replayOfDeadLetter) throw new Error('seq 2 is broken');
        await recordEffects(ctx, [event]);
      },
    });
    const consumer = startConsumer({ registry, streams: [{ name: stream }], group, keyPrefix: prefix, maxAttempts: 3 });
    await appendTestEvents(harness.redis, key, interleaved(['owner-a', 'owner-b'], 3));
    const rows = await waitForEffects(group, 5);
    expect(seqsOf(rows, 'owner-a')).toEqual([1, 3]);
    expect(seqsOf(rows, 'owner-b')).toEqual([1, 2, 3]);
    const letters = await harness.testDb.sql<{ id: string; attempts: number; partition_key: string }[]>`
      SELECT id::text, attempts, partition_key FROM events.dead_letter WHERE group_name = ${group}`;
    expect(letters).toEqual([{ id: expect.any(String), attempts: 3, partition_key: 'owner-a' }]);
    await waitFor(async () => (await parkedOf(group)).length === 0, { description: 'key released' });
    expect(await metricSum(consumer, 'petcover_consumer_dead_lettered_total')).toBe(1);

    // Replay goes through the outbox; relay its row as the publisher would.
    const replayed = await replayDeadLetter(harness.testDb.db, letters[0]!.id, { by: 'test' });
    const [row] = await harness.testDb.sql<{ event_id: string; partition_key: string; payload: Payload; headers: Record<string, string> }[]>`
      SELECT event_id::text, partition_key, payload, headers FROM events.outbox_event WHERE id = ${replayed.outboxId}`;
    await appendTestEvents(harness.redis, key, [testStreamEvent({ type: 'Recorded', eventId: row!.event_id, partitionKey: row!.partition_key, payload: row!.payload, headers: row!.headers })]);
    const after = await waitForEffects(group, 6);
    expect(seqsOf(after, 'owner-a')).toEqual([1, 3, 2]);
  });

  test('out of attempts under halt (per handler): the key halts with its later events parked; other keys go on', async () => {
    const stream = uniqueStreamName();
    const prefix = harness.nextPrefix();
    const group = uniqueGroupName();
    const key = redisStreamKey(stream, prefix);
    const failing = new Set(['owner-a']);
    const consumer = startConsumer({ registry: faultyRegistry(failing, { onExhausted: 'halt' }), streams: [{ name: stream }], group, keyPrefix: prefix, maxAttempts: 2 });
    await appendTestEvents(harness.redis, key, interleaved(['owner-a', 'owner-b'], 3));
    await waitFor(async () => (await parkedOf(group))[0]?.halted === true, { description: 'owner-a halted' });
    const [halted] = await parkedOf(group);
    expect(halted).toMatchObject({ partition_key: 'owner-a', parked: 3, attempts: 2, last_error: 'downstream refuses owner-a' });
    const rows = await waitForEffects(group, 3);
    expect(seqsOf(rows, 'owner-b')).toEqual([1, 2, 3]);
    expect(await harness.testDb.sql`SELECT 1 FROM events.dead_letter WHERE group_name = ${group}`).toHaveLength(0);
    await waitFor(async () => (await metricSum(consumer, 'petcover_consumer_halted_keys')) === 1, { description: 'halted gauge' });
    // Halted means no more attempts, even once the fault is gone, until an operator acts.
    failing.clear();
    await appendTestEvents(harness.redis, key, [testStreamEvent({ type: 'Recorded', partitionKey: 'owner-b', payload: { seq: 4 } })]);
    await waitForEffects(group, 4);
    expect(seqsOf(await effectsOf(group), 'owner-a')).toEqual([]);
    expect((await parkedOf(group))[0]).toMatchObject({ halted: true, attempts: 2 });
  });

  test('a PermanentError dead-letters at once under the default policy (no parking)', async () => {
    const stream = uniqueStreamName();
    const prefix = harness.nextPrefix();
    const group = uniqueGroupName();
    const key = redisStreamKey(stream, prefix);
    const { PermanentError } = await import('../src');
    const registry = createHandlerRegistry().register('Recorded', {
      schema: payloadSchema,
      async handle(event, ctx) {
        if (event.payload.seq === 1) throw new PermanentError('contract 1 does not exist');
        await recordEffects(ctx, [event]);
      },
    });
    startConsumer({ registry, streams: [{ name: stream }], group, keyPrefix: prefix });
    await appendTestEvents(harness.redis, key, [1, 2].map((seq) => testStreamEvent({ type: 'Recorded', partitionKey: 'owner-a', payload: { seq } })));
    const rows = await waitForEffects(group, 1);
    expect(rows.map((r) => r.seq)).toEqual([2]);
    expect(await harness.testDb.sql`SELECT 1 FROM events.dead_letter WHERE group_name = ${group} AND attempts = 1`).toHaveLength(1);
    expect(await parkedOf(group)).toEqual([]);
  });
});
