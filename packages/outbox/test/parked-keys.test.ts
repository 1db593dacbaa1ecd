/**
 * Halted keys and the operator's actions on them (issue 19, item 2), on a
 * real consumer: `events key list|release|discard`, `events status` naming a
 * halted key with its head event and error, and the halted-keys gauge.
 */
import { z } from 'zod';
import { collectEventsStatus, createHandlerRegistry, redisStreamKey, type HandledEvent, type HandlerContext } from '../src';
import { verifyPipeline } from '../src/verify';
import {
  appendTestEvents,
  testStreamEvent,
  uniqueGroupName,
  uniqueStreamName,
  waitFor,
} from '../src/testing';
import { useConsumerHarness } from './consumer-harness';
import { eventsCliEnv, runEventsCliCaptured } from './events-cli-runner';

const harness = useConsumerHarness({ poolSize: 12 });

const payloadSchema = z.object({ seq: z.number().int() });

const cli = (argv: string[], keyPrefix: string) => runEventsCliCaptured(argv, eventsCliEnv(harness.testDb.url, keyPrefix));

/** A group whose handler fails for the keys in `failing`, halting them after two attempts. */
async function haltedSetup(failing: Set<string>) {
  const stream = uniqueStreamName();
  const keyPrefix = harness.nextPrefix();
  const group = uniqueGroupName();
  const registry = createHandlerRegistry().register('Recorded', {
    schema: payloadSchema,
    async handle(event: HandledEvent<{ seq: number }>, ctx: HandlerContext) {
      if (failing.has(event.partitionKey)) throw new Error(`payment provider down for ${event.partitionKey}`);
      await harness.recordEffects(ctx, [event]);
    },
  });
  const consumer = harness.startConsumer({
    registry, streams: [{ name: stream }], group, keyPrefix,
    retryBaseDelayMs: 20, maxAttempts: 2, onExhausted: 'halt', parkingRecheckMs: 100,
  });
  const events = [1, 2, 3].flatMap((seq) => ['owner-a', 'owner-b'].map((partitionKey) => testStreamEvent({ type: 'Recorded', partitionKey, payload: { seq } })));
  await appendTestEvents(harness.redis, redisStreamKey(stream, keyPrefix), events);
  await waitFor(async () => (await seqsOf(group, 'owner-b')).length === 3, { description: 'owner-b done' });
  await waitFor(async () => {
    const [row] = await harness.testDb.sql`SELECT 1 FROM events.parked_key WHERE group_name = ${group} AND halted_at IS NOT NULL`;
    return row !== undefined;
  }, { description: 'owner-a halted' });
  return { stream, keyPrefix, group, consumer, headEventId: events[0]!.eventId };
}

async function seqsOf(group: string, key: string): Promise<number[]> {
  const rows = await harness.testDb.sql<{ seq: number }[]>`SELECT seq FROM test_effect WHERE group_name = ${group} AND partition_key = ${key} ORDER BY id`;
  return rows.map((r) => r.seq);
}

describe('halted keys', () => {
  test('status names the halted key with its head and error; key list shows it; release retries it and the key completes in order', async () => {
    const failing = new Set(['owner-a']);
    const { stream, keyPrefix, group, consumer, headEventId } = await haltedSetup(failing);

    const status = await collectEventsStatus({ sql: harness.testDb.sql, redis: harness.redis, keyPrefix, stream });
    expect(status.healthy).toBe(false);
    const problem = status.problems.find((p) => p.kind === 'halted_keys');
    expect(problem).toMatchObject({ group, stream, partition: stream });
    expect(problem!.message).toContain(`key owner-a halted in group ${group}`);
    expect(problem!.message).toContain(`head Recorded ${headEventId}`);
    expect(problem!.message).toContain('3 event(s) waiting');
    expect(problem!.message).toContain('payment provider down for owner-a');
    expect(problem!.fix).toContain(`events key release --group ${group} --stream ${stream} --key owner-a`);
    const text = await cli(['status', '--stream', stream], keyPrefix);
    expect(text.code).toBe(1);
    expect(text.stdout).toContain('parked key owner-a');
    expect(text.stdout).toContain('HALTED since');

    const listed = await cli(['key', 'list', '--group', group, '--halted', '--json'], keyPrefix);
    expect(listed.code).toBe(0);
    expect(JSON.parse(listed.stdout)).toEqual([
      expect.objectContaining({ group, stream, key: 'owner-a', state: 'halted', attempts: 2, parkedEvents: 3, head: expect.objectContaining({ eventId: headEventId, eventType: 'Recorded' }) }),
    ]);
    await waitFor(async () => {
      const metric = (await consumer.metricsRegistry.getMetricsAsJSON()).find((m) => m.name === 'petcover_consumer_halted_keys');
      return metric?.values.some((v) => v.value === 1) ?? false;
    }, { description: 'halted gauge is 1' });

    failing.clear();
    const released = await cli(['key', 'release', '--group', group, '--stream', stream, '--key', 'owner-a'], keyPrefix);
    expect(released).toMatchObject({ code: 0, stdout: expect.stringContaining('retried now') });
    await waitFor(async () => (await seqsOf(group, 'owner-a')).length === 3, { description: 'owner-a completes' });
    expect(await seqsOf(group, 'owner-a')).toEqual([1, 2, 3]);
    await waitFor(async () => (await cli(['key', 'list', '--group', group], keyPrefix)).stdout.includes('no parked keys match'), { description: 'key released' });
    expect(await cli(['key', 'release', '--group', group, '--stream', stream, '--key', 'owner-a'], keyPrefix)).toMatchObject({
      code: 1,
      stderr: expect.stringContaining('no parked key "owner-a"'),
    });
  });

  test('discard drops the head (kept as a discarded dead letter); the key goes on with its next event', async () => {
    const failing = new Set(['owner-a']);
    const { stream, keyPrefix, group, headEventId } = await haltedSetup(failing);
    failing.clear();
    const discarded = await cli(['key', 'discard', '--group', group, '--stream', stream, '--key', 'owner-a'], keyPrefix);
    expect(discarded).toMatchObject({ code: 0, stdout: expect.stringContaining(`head event ${headEventId} discarded`) });
    await waitFor(async () => (await seqsOf(group, 'owner-a')).length === 2, { description: 'owner-a goes on' });
    expect(await seqsOf(group, 'owner-a')).toEqual([2, 3]);
    const letters = await harness.testDb.sql`SELECT event_id::text, status, resolved_by, attempts, error_message FROM events.dead_letter WHERE group_name = ${group}`;
    expect(letters).toEqual([
      { event_id: headEventId, status: 'discarded', resolved_by: expect.stringMatching(/^cli:/), attempts: 2, error_message: 'payment provider down for owner-a' },
    ]);
  });

  test('events verify and lookup do not count a parked event as handled (its inbox row is written when it is parked)', async () => {
    const stream = uniqueStreamName();
    const group = uniqueGroupName();
    const [row] = await harness.testDb.sql<{ event_id: string }[]>`
      INSERT INTO events.outbox_event (event_id, stream_name, partition_key, event_type, payload, published_at)
      VALUES (gen_random_uuid(), ${stream}, 'owner-a', 'Recorded', '{"seq":1}', now()) RETURNING event_id::text`;
    const eventId = row!.event_id;
    await harness.testDb.sql`INSERT INTO events.processed_event (group_name, event_id) VALUES (${group}, ${eventId})`;
    await harness.testDb.sql`INSERT INTO events.parked_key (group_name, stream_name, partition_key, attempts, last_error) VALUES (${group}, ${stream}, 'owner-a', 1, 'down')`;
    await harness.testDb.sql`INSERT INTO events.parked_event (group_name, stream_name, partition_key, redis_entry_id, event_id, event_type, outbox_id, payload, headers, event_created_at)
      VALUES (${group}, ${stream}, 'owner-a', '1-0', ${eventId}, 'Recorded', '1', '{"seq":1}', '{}', now()::text)`;
    const subscriptions = [{ group, stream }];
    const parked = await verifyPipeline(harness.testDb.sql, null, { subscriptions });
    expect(parked).toMatchObject({ ok: false, missing: 1 });
    const lookup = await cli(['lookup', eventId, '--json'], harness.nextPrefix());
    expect(JSON.parse(lookup.stdout).events[0].groups).toEqual([expect.objectContaining({ group, state: 'delivered', handledAt: null })]);

    await harness.testDb.sql`DELETE FROM events.parked_event WHERE event_id = ${eventId}`;
    expect(await verifyPipeline(harness.testDb.sql, null, { subscriptions })).toMatchObject({ ok: true, missing: 0 });
  });

  test('bad input: usage errors exit 2 and change nothing', async () => {
    const keyPrefix = harness.nextPrefix();
    expect(await cli(['key', 'release', '--stream', 'stream:a:b', '--key', 'k'], keyPrefix)).toMatchObject({ code: 2, stderr: expect.stringContaining('--group <name> is required') });
    expect(await cli(['key', 'release', '--group', 'g', '--stream', 'nope', '--key', 'k'], keyPrefix)).toMatchObject({ code: 2, stderr: expect.stringContaining('--stream must be') });
    expect(await cli(['key', 'discard', '--group', 'g', '--stream', 'stream:a:b'], keyPrefix)).toMatchObject({ code: 2, stderr: expect.stringContaining('--key <partition key> is required') });
    expect(await cli(['key', 'list', '--limit', '0'], keyPrefix)).toMatchObject({ code: 2, stderr: expect.stringContaining('--limit must be a positive integer') });
    expect(await cli(['key', 'discard', '--group', 'g', '--stream', 'stream:a:b', '--key', 'nobody'], keyPrefix)).toMatchObject({ code: 1, stderr: expect.stringContaining('no parked key') });
  });
});
