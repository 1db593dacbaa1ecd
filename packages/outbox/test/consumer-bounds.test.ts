/**
 * The consumer under hostile conditions (issue 14), in-process on real
 * Postgres and Redis: handler deadlines, reads bounded in bytes, retries that
 * do not hold a concurrency slot, dead letters that always land (or a
 * partition reported stuck), exactly-once around dead letters, replay to one
 * group, one bad partition key isolated, inbox retention.
 * Real processes (watchdog takeover, memory) live in apps/events-consumer/test.
 */
import { sql } from 'drizzle-orm';
import { z } from 'zod';
import {
  createHandlerRegistry,
  partitionStreamName,
  redisStreamKey,
  replayDeadLetter,
  type HandlerRegistry,
} from '../src';
import { pruneInboxBatch } from '../src/consumer/inbox-retention';
import { readGroup } from '../src/consumer/redis-group';
import { readStuckPartitions } from '../src/consumer/stuck-partitions';
import {
  appendTestEvents,
  testStreamEvent,
  uniqueGroupName,
  uniqueStreamName,
  waitFor,
} from '../src/testing';
import { useConsumerHarness, type TestConsumerOptions } from './consumer-harness';
import { capturingLogger } from './publisher-helpers';

const harness = useConsumerHarness();
const { recordEffects, effectsOf, waitForEffects, pendingOf } = harness;
const usePrefix = harness.nextPrefix;
const counter = harness.metricSum;

const payloadSchema = z.object({ seq: z.number().int(), text: z.string().optional() });

function recordingRegistry(behaviour?: (attempt: number, seq: number, signal: AbortSignal) => Promise<void> | void, options: { timeoutMs?: number } = {}): HandlerRegistry {
  return createHandlerRegistry().register('Recorded', {
    schema: payloadSchema,
    timeoutMs: options.timeoutMs,
    async handle(event, ctx) {
      await recordEffects(ctx, [event]);
      await behaviour?.(ctx.attempt, event.payload.seq, ctx.signal);
    },
  });
}

/** A consumer whose log lines the test reads. */
function startConsumer(options: TestConsumerOptions) {
  const { logger, lines } = capturingLogger();
  return { consumer: harness.startConsumer({ logger, ...options }), lines };
}

const lettersOf = (group: string) =>
  harness.testDb.sql<{ id: string; event_id: string | null; attempts: number; error_message: string; payload: unknown; raw_entry: Record<string, string> | null; status: string }[]>`
    SELECT id::text, event_id::text, attempts, error_message, payload, raw_entry, status FROM events.dead_letter WHERE group_name = ${group} ORDER BY id`;

async function waitForLetters(group: string, count: number) {
  return waitFor(async () => {
    const rows = await lettersOf(group);
    return rows.length >= count ? rows : null;
  }, { timeoutMs: 20_000, description: `${count} dead letters for ${group}` });
}

const seqEvent = (seq: number, extra: Record<string, unknown> = {}) => testStreamEvent({ type: 'Recorded', payload: { seq, ...extra } });

describe('handler deadline', () => {
  test('a handler that never resolves is abandoned at its deadline (signal aborted, nothing committed), retried, then dead-lettered; the partition moves on', async () => {
    const stream = uniqueStreamName();
    const prefix = usePrefix();
    const group = uniqueGroupName();
    const key = redisStreamKey(stream, prefix);
    const aborted: boolean[] = [];
    const registry = recordingRegistry((_attempt, seq, signal) => {
      if (seq !== 2) return;
      signal.addEventListener('abort', () => aborted.push(signal.aborted));
      return new Promise<void>(() => undefined); // hangs, ignoring its signal
    });
    await appendTestEvents(harness.redis, key, [1, 2, 3].map((seq) => seqEvent(seq)));
    const { consumer, lines } = startConsumer({ registry, streams: [{ name: stream }], group, keyPrefix: prefix, handlerTimeoutMs: 300, maxAttempts: 2 });
    const rows = await waitForEffects(group, 2);
    // seq 2's insert never committed: both its attempts were rolled back.
    expect(rows.map((r) => r.seq)).toEqual([1, 3]);
    const [letter] = await waitForLetters(group, 1);
    expect(letter!.attempts).toBe(2);
    expect(letter!.error_message).toContain('did not finish within its 300 ms deadline');
    expect(aborted).toEqual([true, true]);
    expect(await counter(consumer, 'petcover_consumer_handler_timeouts_total')).toBe(2);
    expect(await counter(consumer, 'petcover_consumer_dead_lettered_total', { reason: 'timeout' })).toBe(1);
    const timeoutLines = lines.filter((l) => String(l.msg).includes('ran past its deadline'));
    expect(timeoutLines).toHaveLength(1);
    expect(timeoutLines[0]).toMatchObject({ group, stream, eventType: 'Recorded' });
    expect(timeoutLines[0]!.eventId).toBeDefined();
    await waitFor(async () => (await pendingOf(key, group)) === 0, { description: 'all acknowledged' });
  });

  test('a statement that outlives the deadline is cancelled by the server (statement_timeout), and a per-handler override wins', async () => {
    const stream = uniqueStreamName();
    const prefix = usePrefix();
    const group = uniqueGroupName();
    const key = redisStreamKey(stream, prefix);
    const errors: string[] = [];
    const registry = createHandlerRegistry().register('Recorded', {
      schema: payloadSchema,
      // The consumer's deadline is long; this override (1 s) bounds the handler and its statements.
      timeoutMs: 1_000,
      async handle(event, ctx) {
        if (event.payload.seq === 1 && ctx.attempt === 1) {
          try {
            await ctx.tx.execute(sql`SELECT pg_sleep(30)`);
          } catch (error) {
            errors.push(String((error as { cause?: { code?: string } }).cause?.code)); // drizzle wraps the driver error
            throw error;
          }
        }
        await recordEffects(ctx, [event]);
      },
    });
    await appendTestEvents(harness.redis, key, [seqEvent(1), seqEvent(2)]);
    const started = Date.now();
    startConsumer({ registry, streams: [{ name: stream }], group, keyPrefix: prefix, handlerTimeoutMs: 60_000 });
    const rows = await waitForEffects(group, 2);
    expect(Date.now() - started).toBeLessThan(20_000);
    expect(rows.map((r) => [r.seq, r.attempt])).toEqual([[1, 2], [2, 1]]);
    // Cancelled by statement_timeout (57014) or abandoned at the deadline first; either way within ~1 s, not 30.
    expect(errors.length === 0 || errors[0] === '57014').toBe(true);
  });
});

describe('a worker that cannot end', () => {
  test('a Postgres backend frozen in a batch transaction (SIGSTOP): the watchdog gives the partition up, the stuck worker is abandoned and the partition leased again; thawed, every event is handled once', async () => {
    const stream = uniqueStreamName();
    const prefix = usePrefix();
    const group = uniqueGroupName();
    const key = redisStreamKey(stream, prefix);
    let frozenPid: number | undefined;
    const registry = createHandlerRegistry().register('Recorded', {
      schema: payloadSchema,
      async handle(event, ctx) {
        await recordEffects(ctx, [event]);
        if (event.payload.seq !== 2 || frozenPid !== undefined) return;
        const [row] = (await ctx.tx.execute(sql`SELECT pg_backend_pid() AS pid`)) as unknown as { pid: number }[];
        frozenPid = row!.pid;
        process.kill(frozenPid, 'SIGSTOP');
        // Never answered; after the deadline the worker waits on its ROLLBACK, which nothing answers either.
        await ctx.tx.execute(sql`SELECT 1`);
      },
    });
    await appendTestEvents(harness.redis, key, [1, 2, 3].map((seq) => seqEvent(seq)));
    try {
      // Watchdog bound: deadline 0.5 s + lease TTL 1 s.
      const { lines } = startConsumer({ registry, streams: [{ name: stream }], group, keyPrefix: prefix, handlerTimeoutMs: 500, leaseTtlMs: 1_000 });
      const said = (text: string) => lines.some((l) => String(l.msg).includes(text));
      await waitFor(() => said('partition made no progress'), { timeoutMs: 30_000, description: 'the watchdog gives the partition up' });
      // pg_terminate_backend waits for the thaw too: without the bound the worker never ended and the partition was never leased again.
      await waitFor(() => said('abandoning it, so the partition may be leased again'), { timeoutMs: 30_000, description: 'the stuck worker abandoned' });
      await waitFor(() => lines.filter((l) => l.msg === 'partition leased').length >= 2, { timeoutMs: 30_000, description: 'the partition leased again while the backend is still frozen' });
    } finally {
      if (frozenPid !== undefined) process.kill(frozenPid, 'SIGCONT');
    }
    const rows = await waitForEffects(group, 3);
    expect(rows.map((r) => r.seq)).toEqual([1, 2, 3]);
  });

  test('a handed-over worker still working through a long batch (handler calls keep ending) is left to finish, not abandoned', async () => {
    const stream = uniqueStreamName();
    const prefix = usePrefix();
    const group = uniqueGroupName();
    const keys = [0, 1].map((p) => redisStreamKey(partitionStreamName(stream, p, 2), prefix));
    // Each handler call waits until A's next coordination round (its leases renewed) and then ends: A's batches keep
    // moving at the consumer's own pace, so a batch of 30 lasts about 30 rounds, well past the give-up bound
    // (deadline 0.5 s + TTL 1 s), while no call is ever stalled for long.
    let open = false;
    let calls = 0;
    const held: Array<() => void> = [];
    const registry = recordingRegistry(() => {
      calls++;
      return open ? undefined : new Promise<void>((resolve) => held.push(resolve));
    });
    for (const key of keys) await appendTestEvents(harness.redis, key, Array.from({ length: 30 }, (_, i) => seqEvent(i + 1)));
    const options = { registry, streams: [{ name: stream, partitions: 2 }], group, keyPrefix: prefix, batchSize: 30, handlerTimeoutMs: 500, leaseTtlMs: 1_000 };
    const a = startConsumer(options);
    const renewedAt = async () => {
      const [row] = await harness.testDb.sql<{ at: string | null }[]>`
        SELECT max(renewed_at)::text AS at FROM events.stream_lease WHERE owner_id = ${a.consumer.ownerId}`;
      return row?.at ?? null;
    };
    const pump = (async () => {
      let last: string | null = null;
      while (!open) {
        last = await waitFor(async () => {
          const at = await renewedAt();
          return open ? 'open' : at !== null && at !== last ? at : null;
        }, { timeoutMs: 20_000, description: 'A renews its leases (a coordination round)' });
        for (const release of held.splice(0)) release();
      }
    })();
    // Effects show only once a batch commits: count calls instead.
    await waitFor(() => calls >= 4, { description: 'A in the middle of its first batches' });
    // A second replica joins: A hands one partition over in the middle of its batch.
    startConsumer(options);
    await waitFor(() => a.lines.some((l) => l.msg === 'handing a partition over to rebalance'), { timeoutMs: 20_000, description: 'A hands a partition over' });
    // Past the bound with its batch still in hand: the lease is no longer renewed, the worker is left to finish.
    await waitFor(() => a.lines.some((l) => String(l.msg).includes('no longer renewing its lease')), { timeoutMs: 20_000, description: 'the handed-over worker still working past the bound' });
    open = true;
    for (const release of held.splice(0)) release();
    await pump;
    const rows = await waitForEffects(group, 60, 60_000);
    expect(rows).toHaveLength(60);
    expect(a.lines.filter((l) => String(l.msg).includes('may be leased again'))).toEqual([]);
  });
});

describe('bounded memory', () => {
  test('a read returns at most the byte budget (at least one entry); the rest is delivered pending and read from there', async () => {
    const stream = uniqueStreamName();
    const key = redisStreamKey(stream, usePrefix());
    const group = uniqueGroupName();
    await harness.redis.xgroup('CREATE', key, group, '0', 'MKSTREAM');
    await appendTestEvents(harness.redis, key, Array.from({ length: 10 }, (_, i) => seqEvent(i, { text: 'x'.repeat(10_000) })));
    const first = await readGroup(harness.redis, { key, group, consumer: 'c1', from: '>', count: 100, maxBytes: 25_000, firstChunk: 100 });
    expect(first.entries).toHaveLength(3);
    expect(first.more).toBe(true);
    expect(first.bytes).toBeGreaterThan(25_000);
    const rest = await readGroup(harness.redis, { key, group, consumer: 'c1', from: first.entries[2]!.id, count: 100, maxBytes: 25_000, firstChunk: 1 });
    expect(rest.entries).toHaveLength(3);
    const big = await readGroup(harness.redis, { key, group, consumer: 'c1', from: '0-0', count: 100, maxBytes: 10, firstChunk: 1 });
    expect(big.entries).toHaveLength(1);
  });

  test('a consumer with a small read budget handles large events, all of them, in order', async () => {
    const stream = uniqueStreamName();
    const prefix = usePrefix();
    const group = uniqueGroupName();
    const key = redisStreamKey(stream, prefix);
    await appendTestEvents(harness.redis, key, Array.from({ length: 40 }, (_, i) => seqEvent(i, { text: 'y'.repeat(50_000) })));
    startConsumer({ registry: recordingRegistry(), streams: [{ name: stream }], group, keyPrefix: prefix, readMaxBytes: 120_000 });
    const rows = await waitForEffects(group, 40);
    expect(rows.map((r) => r.seq)).toEqual(Array.from({ length: 40 }, (_, i) => i));
    await waitFor(async () => (await pendingOf(key, group)) === 0, { description: 'all acknowledged' });
  });

  test('a retry backoff does not hold the concurrency slot: with concurrency 1 another partition is handled meanwhile', async () => {
    const stream = uniqueStreamName();
    const prefix = usePrefix();
    const group = uniqueGroupName();
    const [p0, p1] = [0, 1].map((p) => redisStreamKey(partitionStreamName(stream, p, 2), prefix));
    let failedAt = 0;
    const handledDuringBackoff: number[] = [];
    const registry = recordingRegistry((attempt, seq) => {
      if (seq === 100 && attempt === 1) {
        failedAt = Date.now();
        throw new Error('first attempt fails');
      }
      if (seq !== 100 && failedAt > 0 && Date.now() - failedAt < 2_500) handledDuringBackoff.push(seq);
    });
    await appendTestEvents(harness.redis, p0!, [seqEvent(100)]);
    startConsumer({ registry, streams: [{ name: stream, partitions: 2 }], group, keyPrefix: prefix, concurrency: 1, retryBaseDelayMs: 3_000, retryMaxDelayMs: 3_000 });
    await waitFor(async () => failedAt > 0 || null, { description: 'first attempt failed' });
    await appendTestEvents(harness.redis, p1!, [seqEvent(1), seqEvent(2)]);
    const rows = await waitForEffects(group, 3);
    expect(rows.map((r) => r.seq).sort((a, b) => a - b)).toEqual([1, 2, 100]);
    expect(handledDuringBackoff).toEqual([1, 2]);
  });
});

describe('dead letters always land', () => {
  test('a payload with NUL fails its schema; jsonb refuses it, so a minimal letter lands and the partition flows', async () => {
    const stream = uniqueStreamName();
    const prefix = usePrefix();
    const group = uniqueGroupName();
    const key = redisStreamKey(stream, prefix);
    const nul = testStreamEvent({ type: 'Recorded', payload: { seq: 'not a number \u0000 with NUL' } });
    const nulHandled = seqEvent(2, { text: 'handler fails on \u0000' });
    const registry = recordingRegistry((_attempt, seq) => {
      if (seq === 2) throw new Error('cannot store \u0000');
    });
    await appendTestEvents(harness.redis, key, [nul, seqEvent(1), nulHandled, seqEvent(3)]);
    const { consumer } = startConsumer({ registry, streams: [{ name: stream }], group, keyPrefix: prefix, maxAttempts: 2 });
    const rows = await waitForEffects(group, 2);
    expect(rows.map((r) => r.seq)).toEqual([1, 3]);
    const letters = await waitForLetters(group, 2);
    expect(letters.map((l) => l.event_id)).toEqual([nul.eventId, nulHandled.eventId]);
    for (const letter of letters) {
      expect(letter.payload).toBeNull();
      expect(letter.error_message).toContain('the full dead letter was refused');
      expect(letter.raw_entry!.escaped).toContain('\\u0000');
    }
    // Two JSON levels: the entry's fields, and the payload field's own JSON text.
    expect(JSON.parse(JSON.parse(letters[0]!.raw_entry!.escaped!).payload).seq).toContain('\u0000');
    expect(letters[1]!.attempts).toBe(2);
    await waitFor(async () => (await pendingOf(key, group)) === 0, { description: 'all acknowledged' });
    expect(await counter(consumer, 'petcover_consumer_dead_lettered_total')).toBe(2);
  });

  test('if even the minimal letter is refused, the entry stays pending, is logged once, counted, and reported stuck; it lands once Postgres accepts it', async () => {
    const stream = uniqueStreamName();
    const prefix = usePrefix();
    const group = uniqueGroupName();
    const key = redisStreamKey(stream, prefix);
    await harness.testDb.sql.unsafe(`
      CREATE FUNCTION refuse_letters_${group.replace(/-/g, '_')}() RETURNS trigger LANGUAGE plpgsql AS $$
      BEGIN IF NEW.group_name = '${group}' THEN RAISE EXCEPTION 'dead letters refused for this test'; END IF; RETURN NEW; END $$;
      CREATE TRIGGER refuse_${group.replace(/-/g, '_')} BEFORE INSERT ON events.dead_letter
        FOR EACH ROW EXECUTE FUNCTION refuse_letters_${group.replace(/-/g, '_')}();`);
    const bad = testStreamEvent({ type: 'Recorded', payload: { seq: 'bad' } });
    await appendTestEvents(harness.redis, key, [bad, seqEvent(1)]);
    const { consumer, lines } = startConsumer({ registry: recordingRegistry(), streams: [{ name: stream }], group, keyPrefix: prefix });
    const [stuck] = await waitFor(async () => {
      const found = await readStuckPartitions(harness.redis, prefix, group);
      return found.length > 0 ? found : null;
    }, { description: 'partition reported stuck' });
    expect(stuck).toMatchObject({ partitionStream: stream, entryId: expect.stringMatching(/^\d+-\d+$/), ownerId: consumer.ownerId });
    expect(stuck!.cause).toContain('dead letters refused for this test');
    // Retried with backoff: several attempts, one log line for the entry, counted once.
    await waitFor(async () => (await counter(consumer, 'petcover_consumer_partition_errors_total', { cause: 'dead_letter_refused' })) >= 3 || null, {
      description: 'several attempts',
    });
    expect(lines.filter((l) => String(l.msg).startsWith('partition stuck'))).toHaveLength(1);
    expect(await counter(consumer, 'petcover_consumer_stuck_entries_total')).toBe(1);
    expect(await effectsOf(group)).toEqual([]);
    await harness.testDb.sql.unsafe(`DROP TRIGGER refuse_${group.replace(/-/g, '_')} ON events.dead_letter`);
    await waitForEffects(group, 1);
    expect((await lettersOf(group)).map((l) => l.event_id)).toEqual([bad.eventId]);
    await waitFor(async () => (await readStuckPartitions(harness.redis, prefix, group)).length === 0 || null, { description: 'stuck record cleared' });
  });
});

describe('exactly once around dead letters', () => {
  test('an event dead-lettered for a group is acknowledged as a duplicate when it comes again (Redis loss replay), not dead-lettered twice', async () => {
    const stream = uniqueStreamName();
    const prefix = usePrefix();
    const group = uniqueGroupName();
    const key = redisStreamKey(stream, prefix);
    let calls = 0;
    const registry = recordingRegistry((_attempt, seq) => {
      if (seq === 1) {
        calls++;
        throw new Error('always fails');
      }
    });
    const event = seqEvent(1);
    await appendTestEvents(harness.redis, key, [event]);
    const { consumer } = startConsumer({ registry, streams: [{ name: stream }], group, keyPrefix: prefix, maxAttempts: 2 });
    await waitForLetters(group, 1);
    const [inbox] = await harness.testDb.sql`SELECT count(*)::int AS n FROM events.processed_event WHERE group_name = ${group} AND event_id = ${event.eventId}`;
    expect(inbox!.n).toBe(1);
    // The same event again (as the publisher re-appends it after a Redis data loss), then a marker.
    await appendTestEvents(harness.redis, key, [event, seqEvent(2)]);
    await waitForEffects(group, 1);
    await waitFor(async () => (await pendingOf(key, group)) === 0, { description: 'all acknowledged' });
    expect(await lettersOf(group)).toHaveLength(1);
    expect(calls).toBe(2);
    expect(await counter(consumer, 'petcover_consumer_duplicates_total')).toBe(1);
  });

  test('replaying one group\'s dead letter re-delivers it to that group only; another group that dead-lettered it too does not retry it', async () => {
    const stream = uniqueStreamName();
    const prefix = usePrefix();
    const [g1, g2] = [uniqueGroupName('g1'), uniqueGroupName('g2')];
    let fixed = false;
    const calls: Record<string, number> = {};
    const registry = () =>
      createHandlerRegistry().register('Recorded', {
        schema: payloadSchema,
        async handle(event, ctx) {
          calls[ctx.group] = (calls[ctx.group] ?? 0) + 1;
          if (!fixed) throw new Error('broken until fixed');
          await recordEffects(ctx, [event]);
        },
      });
    // Through the outbox, so the replay path (re-enqueue, publish) is the real one: the test plays publisher.
    const key = redisStreamKey(stream, prefix);
    const event = seqEvent(1);
    await appendTestEvents(harness.redis, key, [event]);
    startConsumer({ registry: registry(), streams: [{ name: stream }], group: g1, keyPrefix: prefix, maxAttempts: 1 });
    startConsumer({ registry: registry(), streams: [{ name: stream }], group: g2, keyPrefix: prefix, maxAttempts: 1 });
    const [letter1] = await waitForLetters(g1, 1);
    await waitForLetters(g2, 1);
    fixed = true;
    const replayed = await replayDeadLetter(harness.testDb.db, letter1!.id, { by: 'test' });
    const [row] = await harness.testDb.sql<{ headers: Record<string, string>; event_id: string }[]>`SELECT headers, event_id::text FROM events.outbox_event WHERE id = ${replayed.outboxId}`;
    expect(row!.headers).toMatchObject({ replayForGroup: g1, replayOfDeadLetter: letter1!.id });
    await appendTestEvents(harness.redis, key, [{ ...event, headers: row!.headers, outboxId: replayed.outboxId }, seqEvent(2)]);
    await waitForEffects(g1, 2);
    await waitForEffects(g2, 1);
    await waitFor(async () => (await pendingOf(key, g2)) === 0, { description: 'g2 acknowledged the replay' });
    expect((await effectsOf(g1)).map((r) => r.seq)).toEqual([1, 2]);
    expect((await effectsOf(g2)).map((r) => r.seq)).toEqual([2]);
    expect(await lettersOf(g2)).toHaveLength(1);
    expect(calls[g2]).toBe(2); // its one failed attempt, then seq 2
  });
});

describe('faults stay in their partition', () => {
  test('a wrong-type key on one partition: the other partitions are consumed; the fault is logged once with the stream and cause, counted, and reported', async () => {
    const stream = uniqueStreamName();
    const prefix = usePrefix();
    const group = uniqueGroupName();
    const bad = partitionStreamName(stream, 0, 3);
    await harness.redis.set(redisStreamKey(bad, prefix), 'not a stream');
    const good = [1, 2].map((p) => redisStreamKey(partitionStreamName(stream, p, 3), prefix));
    await appendTestEvents(harness.redis, good[0]!, [seqEvent(1)]);
    await appendTestEvents(harness.redis, good[1]!, [seqEvent(2)]);
    const { consumer, lines } = startConsumer({ registry: recordingRegistry(), streams: [{ name: stream, partitions: 3 }], group, keyPrefix: prefix });
    await waitForEffects(group, 2);
    await waitFor(async () => (await counter(consumer, 'petcover_consumer_partition_errors_total', { stream: bad, cause: 'wrong_key_type' })) >= 2 || null, {
      description: 'retried with backoff',
    });
    expect(consumer.status().faulty).toEqual([{ partition: bad, cause: 'wrong_key_type', message: expect.stringContaining('WRONGTYPE') }]);
    expect(consumer.status().leased.sort()).toEqual([partitionStreamName(stream, 1, 3), partitionStreamName(stream, 2, 3)]);
    expect(lines.filter((l) => l.stream === bad && l.level === 50)).toHaveLength(1);
    expect(lines.some((l) => String(l.msg).includes('redis unreachable'))).toBe(false);
    // Fixed by hand: the partition is picked up.
    await harness.redis.del(redisStreamKey(bad, prefix));
    await appendTestEvents(harness.redis, redisStreamKey(bad, prefix), [seqEvent(3)]);
    await waitForEffects(group, 3, 60_000);
    expect(consumer.status().faulty).toEqual([]);
  });
});

describe('inbox retention', () => {
  test('prunes old inbox rows in batches; keeps recent rows and any row whose event the outbox still holds (a replay must still dedupe)', async () => {
    const group = uniqueGroupName();
    await harness.testDb.sql`
      INSERT INTO events.processed_event (group_name, event_id, processed_at)
      SELECT ${group}, gen_random_uuid(), now() - interval '10 days' FROM generate_series(1, 25)`;
    await harness.testDb.sql`INSERT INTO events.processed_event (group_name, event_id) SELECT ${group}, gen_random_uuid() FROM generate_series(1, 3)`;
    // An old inbox row of an event still in the outbox.
    const [kept] = await harness.testDb.sql<{ event_id: string }[]>`
      INSERT INTO events.outbox_event (event_id, stream_name, partition_key, event_type, payload, published_at)
      VALUES (gen_random_uuid(), 'stream:t:inbox', 'k', 'T', '{}', now()) RETURNING event_id::text`;
    await harness.testDb.sql`INSERT INTO events.processed_event (group_name, event_id, processed_at) VALUES (${group}, ${kept!.event_id}, now() - interval '10 days')`;
    const retention = 8 * 24 * 3_600_000;
    expect(await pruneInboxBatch(harness.testDb.sql, retention, 10)).toBe(10);
    expect(await pruneInboxBatch(harness.testDb.sql, retention, 10)).toBe(10);
    expect(await pruneInboxBatch(harness.testDb.sql, retention, 10)).toBe(5);
    expect(await pruneInboxBatch(harness.testDb.sql, retention, 10)).toBe(0);
    const left = await harness.testDb.sql<{ event_id: string; old: boolean }[]>`
      SELECT event_id::text, processed_at < now() - interval '1 day' AS old FROM events.processed_event WHERE group_name = ${group}`;
    expect(left).toHaveLength(4);
    expect(left.filter((r) => r.old).map((r) => r.event_id)).toEqual([kept!.event_id]);
  });

  test('a running consumer prunes under the maintenance lease and counts it', async () => {
    const group = uniqueGroupName();
    await harness.testDb.sql`
      INSERT INTO events.processed_event (group_name, event_id, processed_at)
      SELECT ${group}, gen_random_uuid(), now() - interval '2 hours' FROM generate_series(1, 7)`;
    const { consumer, lines } = startConsumer({
      registry: recordingRegistry(),
      streams: [{ name: uniqueStreamName() }],
      group,
      keyPrefix: usePrefix(),
      inboxRetentionMs: 3_600_000,
      inboxPruneIntervalMs: 200,
    });
    await waitFor(async () => (await counter(consumer, 'petcover_consumer_inbox_pruned_total')) >= 7 || null, { description: 'pruned' });
    const [left] = await harness.testDb.sql`SELECT count(*)::int AS n FROM events.processed_event WHERE group_name = ${group}`;
    expect(left!.n).toBe(0);
    expect(lines.some((l) => String(l.msg).startsWith('pruned processed_event rows'))).toBe(true);
    const [lease] = await harness.testDb.sql`SELECT owner_id FROM events.stream_lease WHERE stream_name = 'stream:events:inbox' AND role = 'maintenance'`;
    expect(lease!.owner_id).toBe(consumer.ownerId);
  });
});
