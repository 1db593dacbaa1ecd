import { Writable } from 'node:stream';
import pino from 'pino';
import { z } from 'zod';
import {
  createConsumer,
  createHandlerRegistry,
  partitionFor,
  partitionStreamName,
  PermanentError,
  redisStreamKey,
  type HandlerRegistry,
} from '../src';
import { encodeEntry } from '../src/streams';
import {
  appendRawEntry,
  appendTestEvents,
  startDedicatedRedis,
  testStreamEvent,
  uniqueGroupName,
  uniqueRedisPrefix,
  uniqueStreamName,
  waitFor,
} from '../src/testing';
import { useConsumerHarness } from './consumer-harness';
import { pruneIdleConsumers } from '../src/consumer/prune-idle-consumers';

const harness = useConsumerHarness();
const { startConsumer, recordEffects, effectsOf, waitForEffects, pendingOf, logger } = harness;
const usePrefix = harness.nextPrefix;
const counter = harness.metricSum;

const payloadSchema = z.object({ seq: z.number().int() });

/** A handler whose effect is one row in test_effect, written in the consumer's transaction. */
function recordingRegistry(type = 'Recorded', behaviour?: (attempt: number, seq: number) => void): HandlerRegistry {
  return createHandlerRegistry().register(type, {
    schema: payloadSchema,
    async handle(event, ctx) {
      await recordEffects(ctx, [event]);
      behaviour?.(ctx.attempt, event.payload.seq);
    },
  });
}

async function consumerPending(key: string, group: string, consumer: string): Promise<number> {
  return ((await harness.redis.call('XPENDING', key, group, '-', '+', '100', consumer)) as unknown[]).length;
}

async function deadLettersOf(group: string) {
  return harness.testDb.sql<{ event_id: string | null; event_type: string | null; attempts: number; error_message: string; error_stack: string | null; raw_entry: unknown; redis_entry_id: string; status: string }[]>`
    SELECT event_id::text, event_type, attempts, error_message, error_stack, raw_entry, redis_entry_id, status
    FROM events.dead_letter WHERE group_name = ${group} ORDER BY id`;
}

describe('consumer', () => {
  test('handles events appended before it first started, then new ones; nothing left pending', async () => {
    const stream = uniqueStreamName();
    const prefix = usePrefix();
    const group = uniqueGroupName();
    const key = redisStreamKey(stream, prefix);
    const early = [1, 2, 3].map((seq) => testStreamEvent({ type: 'Recorded', payload: { seq } }));
    await appendTestEvents(harness.redis, key, early);

    const consumer = startConsumer({ registry: recordingRegistry(), streams: [{ name: stream }], group, keyPrefix: prefix });
    await waitForEffects(group, 3);
    await appendTestEvents(harness.redis, key, [testStreamEvent({ type: 'Recorded', payload: { seq: 4 } })]);
    const rows = await waitForEffects(group, 4);
    expect(rows.map((r) => r.seq)).toEqual([1, 2, 3, 4]);
    await waitFor(async () => (await pendingOf(key, group)) === 0, { description: 'all acknowledged' });
    expect(await counter(consumer, 'petcover_consumer_handled_total')).toBe(4);
  });

  test('the same event appended twice (same event_id) has its effect once', async () => {
    const stream = uniqueStreamName();
    const prefix = usePrefix();
    const group = uniqueGroupName();
    const key = redisStreamKey(stream, prefix);
    const event = testStreamEvent({ type: 'Recorded', payload: { seq: 1 } });
    // Twice in one batch, and once more after it was handled.
    await appendTestEvents(harness.redis, key, [event, event]);
    const consumer = startConsumer({ registry: recordingRegistry(), streams: [{ name: stream }], group, keyPrefix: prefix });
    await waitForEffects(group, 1);
    await appendTestEvents(harness.redis, key, [event, testStreamEvent({ type: 'Recorded', payload: { seq: 2 } })]);
    await waitForEffects(group, 2);
    await waitFor(async () => (await pendingOf(key, group)) === 0, { description: 'duplicates acknowledged' });
    const rows = await effectsOf(group);
    expect(rows.filter((r) => r.event_id === event.eventId)).toHaveLength(1);
    expect(rows).toHaveLength(2);
    expect(await counter(consumer, 'petcover_consumer_duplicates_total')).toBe(2);
  });

  test('a handler failing transiently twice then succeeding is handled once, on attempt 3', async () => {
    const stream = uniqueStreamName();
    const prefix = usePrefix();
    const group = uniqueGroupName();
    const key = redisStreamKey(stream, prefix);
    const registry = recordingRegistry('Recorded', (attempt, seq) => {
      if (seq === 2 && attempt < 3) throw new Error(`transient failure on attempt ${attempt}`);
    });
    await appendTestEvents(harness.redis, key, [1, 2, 3].map((seq) => testStreamEvent({ type: 'Recorded', payload: { seq } })));
    const consumer = startConsumer({ registry, streams: [{ name: stream }], group, keyPrefix: prefix });
    const rows = await waitForEffects(group, 3);
    expect(rows.map((r) => [r.seq, r.attempt])).toEqual([[1, 1], [2, 3], [3, 1]]);
    expect(await counter(consumer, 'petcover_consumer_failed_total')).toBe(2);
    expect(await counter(consumer, 'petcover_consumer_retried_total')).toBe(2);
    expect(await deadLettersOf(group)).toEqual([]);
  });

  test('a handler failing always gives one dead letter with attempts = bound, and the partition moves on', async () => {
    const stream = uniqueStreamName();
    const prefix = usePrefix();
    const group = uniqueGroupName();
    const key = redisStreamKey(stream, prefix);
    const registry = recordingRegistry('Recorded', (_attempt, seq) => {
      if (seq === 2) throw new Error('contract 42 is broken for good');
    });
    const events = [1, 2, 3].map((seq) => testStreamEvent({ type: 'Recorded', payload: { seq } }));
    await appendTestEvents(harness.redis, key, events);
    startConsumer({ registry, streams: [{ name: stream }], group, keyPrefix: prefix, maxAttempts: 4 });
    const rows = await waitForEffects(group, 2);
    expect(rows.map((r) => r.seq)).toEqual([1, 3]);
    const letters = await deadLettersOf(group);
    expect(letters).toHaveLength(1);
    expect(letters[0]).toMatchObject({ event_id: events[1]!.eventId, event_type: 'Recorded', attempts: 4, status: 'dead', error_message: 'contract 42 is broken for good' });
    expect(letters[0]!.error_stack).toContain('contract 42 is broken for good');
    await waitFor(async () => (await pendingOf(key, group)) === 0, { description: 'dead letter acknowledged' });
    // The dead letter and the event's inbox row commit together: a redelivery is a duplicate (replay removes the row).
    const [processed] = await harness.testDb.sql`SELECT count(*)::int AS n FROM events.processed_event WHERE group_name = ${group} AND event_id = ${events[1]!.eventId}`;
    expect(processed!.n).toBe(1);
  });

  test('a batch handler takes a whole read in one call, effects in entry order; when it fails, the run is handled one by one and only the failing entry is retried', async () => {
    const stream = uniqueStreamName();
    const prefix = usePrefix();
    const group = uniqueGroupName();
    const key = redisStreamKey(stream, prefix);
    const batchCalls: number[][] = [];
    let seq150Attempts = 0;
    const registry = createHandlerRegistry().register('Recorded', {
      schema: payloadSchema,
      async handle(event, ctx) {
        if (event.payload.seq === 150 && ++seq150Attempts === 1) throw new Error('seq 150 fails once');
        await recordEffects(ctx, [event]);
      },
      async handleBatch(events, ctx) {
        batchCalls.push(events.map((e) => e.payload.seq));
        if (events.some((e) => e.payload.seq === 150)) throw new Error('a batch holding seq 150 always fails');
        await recordEffects(ctx, events);
      },
    });
    const seqs = Array.from({ length: 300 }, (_, i) => i + 1);
    await appendTestEvents(harness.redis, key, seqs.map((seq) => testStreamEvent({ type: 'Recorded', payload: { seq } })));
    const consumer = startConsumer({ registry, streams: [{ name: stream }], group, keyPrefix: prefix, batchSize: 300 });
    // 300 handler calls one by one, twice (the failing run, then its prefix again): slow on a loaded machine.
    const rows = await waitForEffects(group, 300, 60_000);
    expect(rows.map((r) => r.seq)).toEqual(seqs);
    expect(rows.filter((r) => r.attempt !== 1).map((r) => [r.seq, r.attempt])).toEqual([[150, 2]]);
    // One call for the whole read; after it failed, the entries before 150 went through handle();
    // 150 was parked (151-300 parked behind it, without a call); when due it is retried alone, then the rest is a batch again.
    expect(batchCalls).toEqual([seqs, seqs.slice(150)]);
    expect(await counter(consumer, 'petcover_consumer_failed_total')).toBe(1);
    expect(await counter(consumer, 'petcover_consumer_handled_total')).toBe(300);
    expect(await deadLettersOf(group)).toEqual([]);

    // The next read uses the batch handler again.
    await appendTestEvents(harness.redis, key, [301, 302, 303].map((seq) => testStreamEvent({ type: 'Recorded', payload: { seq } })));
    await waitForEffects(group, 303);
    expect(batchCalls.slice(2)).toEqual([[301, 302, 303]]);
    await waitFor(async () => (await pendingOf(key, group)) === 0, { description: 'all acknowledged' });
  });

  test('a batch handler gets only runs of consecutive entries of its type; duplicates are left out; order across types holds', async () => {
    const stream = uniqueStreamName();
    const prefix = usePrefix();
    const group = uniqueGroupName();
    const key = redisStreamKey(stream, prefix);
    const batchCalls: number[][] = [];
    const registry = createHandlerRegistry()
      .register('Fast', {
        schema: payloadSchema,
        handle: async (event, ctx) => void (await recordEffects(ctx, [event])),
        async handleBatch(events, ctx) {
          batchCalls.push(events.map((e) => e.payload.seq));
          for (const event of events) await recordEffects(ctx, [event]);
        },
      })
      .register('Slow', { schema: payloadSchema, handle: async (event, ctx) => void (await recordEffects(ctx, [event])) });
    const types = ['Fast', 'Fast', 'Slow', 'Fast', 'Slow', 'Slow', 'Fast', 'Fast', 'Fast'];
    const events = types.map((type, i) => testStreamEvent({ type, payload: { seq: i + 1 } }));
    // The 8th entry repeats the 7th's event: a duplicate inside the run.
    events[7] = { ...events[6]! };
    await appendTestEvents(harness.redis, key, events);
    startConsumer({ registry, streams: [{ name: stream }], group, keyPrefix: prefix });
    const rows = await waitForEffects(group, 8);
    expect(rows.map((r) => r.seq)).toEqual([1, 2, 3, 4, 5, 6, 7, 9]);
    expect(batchCalls).toEqual([[1, 2], [7, 9]]);
  });

  test('schema failure, missing fields and PermanentError are dead-lettered at once; an unknown type is skipped', async () => {
    const stream = uniqueStreamName();
    const prefix = usePrefix();
    const group = uniqueGroupName();
    const key = redisStreamKey(stream, prefix);
    const registry = recordingRegistry('Recorded', (_attempt, seq) => {
      if (seq === 13) throw new PermanentError('seq 13 refers to a pet that will never exist');
    });
    const badSchema = testStreamEvent({ type: 'Recorded', payload: { seq: 'one' } });
    const permanent = testStreamEvent({ type: 'Recorded', payload: { seq: 13 } });
    await appendTestEvents(harness.redis, key, [badSchema]);
    const missingId = await appendRawEntry(harness.redis, key, { type: 'Recorded', payload: '{"seq":5}' });
    await appendTestEvents(harness.redis, key, [
      permanent,
      testStreamEvent({ type: 'NobodyHandlesThis', payload: { seq: 7 } }),
      testStreamEvent({ type: 'Recorded', payload: { seq: 8 } }),
    ]);
    const consumer = startConsumer({ registry, streams: [{ name: stream }], group, keyPrefix: prefix, maxAttempts: 5 });
    const rows = await waitForEffects(group, 1);
    expect(rows.map((r) => r.seq)).toEqual([8]);
    const letters = await waitFor(async () => {
      const found = await deadLettersOf(group);
      return found.length === 3 ? found : null;
    }, { description: 'three dead letters' });
    expect(letters.map((l) => l.attempts)).toEqual([1, 1, 1]);
    expect(letters[0]).toMatchObject({ event_id: badSchema.eventId });
    expect(letters[0]!.error_message).toContain('payload.seq');
    expect(letters[1]).toMatchObject({ event_id: null, redis_entry_id: missingId });
    expect(letters[1]!.error_message).toContain('missing field(s): outbox_id, event_id');
    expect(letters[1]!.raw_entry).toEqual({ type: 'Recorded', payload: '{"seq":5}' });
    expect(letters[2]).toMatchObject({ event_id: permanent.eventId, error_message: 'seq 13 refers to a pet that will never exist' });
    await waitFor(async () => (await pendingOf(key, group)) === 0, { description: 'everything acknowledged' });
    expect(await counter(consumer, 'petcover_consumer_skipped_total')).toBe(1);
    expect(await counter(consumer, 'petcover_consumer_dead_lettered_total')).toBe(3);
  });

  test('two groups on one stream each handle every event once', async () => {
    const stream = uniqueStreamName();
    const prefix = usePrefix();
    const [billing, emails] = [uniqueGroupName('billing'), uniqueGroupName('emails')];
    const key = redisStreamKey(stream, prefix);
    const events = Array.from({ length: 20 }, (_, i) => testStreamEvent({ type: 'Recorded', payload: { seq: i } }));
    await appendTestEvents(harness.redis, key, events);
    startConsumer({ registry: recordingRegistry(), streams: [{ name: stream }], group: billing, keyPrefix: prefix });
    startConsumer({ registry: recordingRegistry(), streams: [{ name: stream }], group: emails, keyPrefix: prefix });
    for (const group of [billing, emails]) {
      const rows = await waitForEffects(group, 20);
      expect(new Set(rows.map((r) => r.event_id)).size).toBe(20);
      expect(rows).toHaveLength(20);
    }
  });

  test('two replicas of one group share a 4-partition stream: every event once, order per key kept', async () => {
    const stream = uniqueStreamName();
    const prefix = usePrefix();
    const group = uniqueGroupName();
    const P = 4;
    const keys = Array.from({ length: 12 }, (_, i) => `contract-${i}`);
    const perKey = 25;
    const byPartition = new Map<number, ReturnType<typeof testStreamEvent>[]>();
    for (let seq = 0; seq < perKey; seq++) {
      for (const partitionKey of keys) {
        const p = partitionFor(partitionKey, P);
        const list = byPartition.get(p) ?? [];
        list.push(testStreamEvent({ type: 'Recorded', partitionKey, payload: { seq } }));
        byPartition.set(p, list);
      }
    }
    const streams = [{ name: stream, partitions: P }];
    const a = startConsumer({ registry: recordingRegistry(), streams, group, keyPrefix: prefix, batchSize: 7 });
    const b = startConsumer({ registry: recordingRegistry(), streams, group, keyPrefix: prefix, batchSize: 7 });
    await waitFor(() => a.status().leased.length === 2 && b.status().leased.length === 2, { description: 'partitions shared 2/2' });
    for (const [p, events] of byPartition) await appendTestEvents(harness.redis, redisStreamKey(partitionStreamName(stream, p, P), prefix), events);

    const rows = await waitForEffects(group, keys.length * perKey, 30_000);
    expect(rows).toHaveLength(keys.length * perKey);
    expect(new Set(rows.map((r) => r.event_id)).size).toBe(keys.length * perKey);
    for (const partitionKey of keys) {
      const seqs = rows.filter((r) => r.partition_key === partitionKey).map((r) => r.seq);
      expect(seqs).toEqual(Array.from({ length: perKey }, (_, i) => i));
    }
    expect(new Set([...a.status().leased, ...b.status().leased]).size).toBe(P);
  });

  test('a replica that stops hands its partitions to the other, which picks up new entries', async () => {
    const stream = uniqueStreamName();
    const prefix = usePrefix();
    const group = uniqueGroupName();
    const streams = [{ name: stream, partitions: 2 }];
    const a = startConsumer({ registry: recordingRegistry(), streams, group, keyPrefix: prefix });
    const b = startConsumer({ registry: recordingRegistry(), streams, group, keyPrefix: prefix });
    await waitFor(() => a.status().leased.length === 1 && b.status().leased.length === 1, { description: 'one partition each' });
    await a.stop();
    const [leases] = await harness.testDb.sql`SELECT count(*)::int AS n FROM events.stream_lease WHERE owner_id = ${a.ownerId}`;
    expect(leases!.n).toBe(0);
    await waitFor(() => b.status().leased.length === 2, { description: 'b takes both partitions' });
    for (let p = 0; p < 2; p++) {
      await appendTestEvents(harness.redis, redisStreamKey(partitionStreamName(stream, p, 2), prefix), [testStreamEvent({ type: 'Recorded', payload: { seq: p } })]);
    }
    await waitForEffects(group, 2);
  });

  test('a replica whose lease was taken over while in a handler commits nothing (fence) and leaves the partition', async () => {
    const stream = uniqueStreamName();
    const prefix = usePrefix();
    const group = uniqueGroupName();
    const key = redisStreamKey(stream, prefix);
    let entered!: () => void;
    const inHandler = new Promise<void>((resolve) => (entered = resolve));
    let releaseHandler!: () => void;
    const handlerMayFinish = new Promise<void>((resolve) => (releaseHandler = resolve));
    const registry = createHandlerRegistry().register('Recorded', {
      schema: payloadSchema,
      async handle(event, ctx) {
        await recordEffects(ctx, [event]);
        entered();
        await handlerMayFinish;
      },
    });
    await appendTestEvents(harness.redis, key, [testStreamEvent({ type: 'Recorded', payload: { seq: 1 } })]);
    const zombie = startConsumer({ registry, streams: [{ name: stream }], group, keyPrefix: prefix, leaseTtlMs: 60_000 });
    await inHandler;
    // Another replica takes the partition over (as after an expiry while this one was paused).
    await harness.testDb.sql`UPDATE events.stream_lease SET owner_id = 'other-host:1:abcdef', lease_until = now() + interval '1 minute'
      WHERE stream_name = ${stream} AND role = ${`consumer:${group}`}`;
    releaseHandler();
    await waitFor(() => zombie.status().leased.length === 0, { description: 'zombie leaves the partition' });
    expect(await effectsOf(group)).toEqual([]);
    expect(await pendingOf(key, group)).toBe(1);
  });

  test('entries a zombie read after losing its lease are swept to the owner and handled', async () => {
    const stream = uniqueStreamName();
    const prefix = usePrefix();
    const group = uniqueGroupName();
    const key = redisStreamKey(stream, prefix);
    startConsumer({ registry: recordingRegistry(), streams: [{ name: stream }], group, keyPrefix: prefix, leaseTtlMs: 1_000 });
    await waitFor(async () => ((await harness.redis.call('XINFO', 'GROUPS', key)) as unknown[]).length === 1, { description: 'group created' });
    // XADD and the zombie's read in one MULTI: Redis serves the owner's blocked read only after EXEC,
    // so the entry is delivered to the zombie and sits pending under its name.
    const replies = (await harness.redis
      .multi()
      .xadd(key, '*', ...encodeEntry(testStreamEvent({ type: 'Recorded', payload: { seq: 1 } })))
      .call('XREADGROUP', 'GROUP', group, 'zombie-host:1:abcdef', 'COUNT', '10', 'STREAMS', key, '>')
      .exec()) as [Error | null, unknown][];
    // Delivered to the zombie (its reply holds the entry). Not checked with XPENDING here: the owner's periodic sweep
    // (every lease TTL, 1 s) may already have taken it by the next round trip on a loaded machine (seen in CI).
    expect(JSON.stringify(replies[1]![1])).toContain('Recorded');
    const rows = await waitForEffects(group, 1, 10_000);
    expect(rows.map((r) => r.seq)).toEqual([1]);
    await waitFor(async () => (await pendingOf(key, group)) === 0, { description: 'swept entry acknowledged' });
    expect(await consumerPending(key, group, 'zombie-host:1:abcdef')).toBe(0);
  });

  test('entries a zombie read just before a newer one are handled first: per-key order holds across a handover', async () => {
    const stream = uniqueStreamName();
    const prefix = usePrefix();
    const group = uniqueGroupName();
    const key = redisStreamKey(stream, prefix);
    // A long TTL: the periodic sweep cannot be what puts the zombie's entry first.
    startConsumer({ registry: recordingRegistry(), streams: [{ name: stream }], group, keyPrefix: prefix, leaseTtlMs: 30_000 });
    await waitFor(async () => ((await harness.redis.call('XINFO', 'GROUPS', key)) as unknown[]).length === 1, { description: 'group created' });
    // Atomically: seq 1 is delivered to a zombie that lost the partition but does not know it yet,
    // then seq 2 (same key) is appended; the owner's blocked read gets only seq 2.
    await harness.redis
      .multi()
      .xadd(key, '*', ...encodeEntry(testStreamEvent({ type: 'Recorded', partitionKey: 'order-1', payload: { seq: 1 } })))
      .call('XREADGROUP', 'GROUP', group, 'zombie-host:2:abcdef', 'COUNT', '10', 'STREAMS', key, '>')
      .xadd(key, '*', ...encodeEntry(testStreamEvent({ type: 'Recorded', partitionKey: 'order-1', payload: { seq: 2 } })))
      .exec();
    const rows = await waitForEffects(group, 2, 10_000);
    expect(rows.map((r) => r.seq)).toEqual([1, 2]);
    await waitFor(async () => (await pendingOf(key, group)) === 0, { description: 'both entries acknowledged' });
  });

  test('rejects bad options with a typed error naming the option', () => {
    const base = { db: harness.testDb.db, sql: harness.testDb.sql, redis: harness.redis, logger, registry: createHandlerRegistry(), streams: [{ name: uniqueStreamName() }] };
    expect(() => createConsumer({ ...base, group: 'bad group!' })).toThrow(/invalid consumer option group/);
    expect(() => createConsumer({ ...base, concurrency: 0 })).toThrow(/invalid consumer option concurrency/);
    expect(() => createConsumer({ ...base, streams: [{ name: 'orders' }] })).toThrow(/stream:<context>:<name>/);
    expect(() => createConsumer({ ...base, streams: [] })).toThrow(/invalid consumer option streams/);
  });
});

describe('pruneIdleConsumers', () => {
  test('removes idle consumers with nothing pending, never the caller or one with pending entries', async () => {
    const key = `${uniqueRedisPrefix()}stream:prune:test`;
    const group = uniqueGroupName();
    await harness.redis.xgroup('CREATE', key, group, '0', 'MKSTREAM');
    await appendTestEvents(harness.redis, key, [testStreamEvent({ type: 'Recorded', payload: { seq: 1 } })]);
    await harness.redis.call('XREADGROUP', 'GROUP', group, 'holder', 'COUNT', '1', 'STREAMS', key, '>');
    await harness.redis.call('XGROUP', 'CREATECONSUMER', key, group, 'gone-long-ago');
    await harness.redis.call('XGROUP', 'CREATECONSUMER', key, group, 'me');
    expect(await pruneIdleConsumers(harness.redis, key, group, 'me', 0)).toBe(1);
    const names = ((await harness.redis.call('XINFO', 'CONSUMERS', key, group)) as unknown[][]).map((c) => c[1]).sort();
    expect(names).toEqual(['holder', 'me']);
    expect(await pruneIdleConsumers(harness.redis, key, group, 'me', 60_000)).toBe(0);
    await harness.redis.del(key);
  });
});

describe('consumer against a Redis that restarts', () => {
  test('reconnects, recreates its group and goes on', async () => {
    const dedicated = await startDedicatedRedis();
    const { default: IORedis } = await import('ioredis');
    const client = new IORedis(dedicated.url, { maxRetriesPerRequest: 3 });
    try {
      const stream = uniqueStreamName();
      const group = uniqueGroupName();
      const consumer = startConsumer({ redis: client, registry: recordingRegistry(), streams: [{ name: stream }], group });
      await appendTestEvents(client, stream, [testStreamEvent({ type: 'Recorded', payload: { seq: 1 } })]);
      await waitForEffects(group, 1);

      await dedicated.restart();
      // The restarted server is empty: no stream, no group. A publisher appends again.
      const appender = new IORedis(dedicated.url);
      try {
        await waitFor(async () => (await appender.ping()) === 'PONG', { description: 'restarted redis answers' });
        await appendTestEvents(appender, stream, [2, 3].map((seq) => testStreamEvent({ type: 'Recorded', payload: { seq } })));
        const rows = await waitForEffects(group, 3, 20_000);
        expect(rows.map((r) => r.seq)).toEqual([1, 2, 3]);
        const groups = (await appender.call('XINFO', 'GROUPS', stream)) as unknown[][];
        expect(groups.map((g) => g[1])).toContain(group);
      } finally {
        appender.disconnect();
      }
      await consumer.stop();
    } finally {
      client.disconnect();
      await dedicated.destroy();
    }
  });
});

test('stop() does not claim to have released leases it could not release: a DELETE refused by Postgres is logged per partition and in the last line', async () => {
  const lines: Array<{ msg: string; unreleased?: number; stream?: string }> = [];
  const captured = pino(new Writable({ write: (chunk, _encoding, done) => void (lines.push(JSON.parse(String(chunk))), done()) }));
  const stream = uniqueStreamName();
  const group = uniqueGroupName();
  const consumer = startConsumer({ registry: recordingRegistry(), streams: [{ name: stream, partitions: 2 }], group, keyPrefix: usePrefix(), logger: captured });
  await waitFor(() => consumer.status().leased.length === 2, { description: 'both partition leases held' });
  // The fault: Postgres refuses the release (here a trigger; in production a lost connection or a failover at stop).
  await harness.testDb.sql.unsafe(`
    CREATE FUNCTION refuse_release() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'release refused by the test'; END $$;
    CREATE TRIGGER refuse_release BEFORE DELETE ON events.stream_lease FOR EACH ROW WHEN (OLD.role = 'consumer:${group}') EXECUTE FUNCTION refuse_release();`);
  try {
    await consumer.stop();
  } finally {
    await harness.testDb.sql.unsafe('DROP TRIGGER refuse_release ON events.stream_lease; DROP FUNCTION refuse_release();');
  }
  expect(lines.filter((l) => l.msg.startsWith('releasing a partition lease failed')).map((l) => l.stream).sort()).toEqual(
    [partitionStreamName(stream, 0, 2), partitionStreamName(stream, 1, 2)].sort(),
  );
  const last = lines[lines.length - 1]!;
  expect(last.msg).toMatch(/some partition leases could not be released/);
  expect(last.unreleased).toBe(2);
  expect(lines.some((l) => l.msg === 'consumer loops ended; partition leases released')).toBe(false);
});
