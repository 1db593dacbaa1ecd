/**
 * verifyPipeline reconciles outbox, inbox, dead letters and the handled-order
 * log. Each test builds the state a correct pipeline leaves (every event
 * handled once, in order, in one transaction with its inbox row), checks that
 * verify passes on it, then plants one defect and checks verify names it.
 */
import { sql as drizzleSql } from 'drizzle-orm';
import { enqueue, type EnqueuedEvent } from '../src';
import { ensureHandledLogTable, formatVerifyReport, recordHandled, verifyPipeline } from '../src/verify';
import { createTestDatabase, uniqueGroupName, uniqueStreamName, type TestDatabase } from '../src/testing';

let testDb: TestDatabase;
beforeEach(async () => {
  testDb = await createTestDatabase();
  await ensureHandledLogTable(testDb.sql);
});
afterEach(async () => testDb.drop());

interface Produced extends EnqueuedEvent {
  partitionKey: string;
}

/** Enqueues `perKey` events for each key, interleaved, each in its own transaction; marks them published. */
async function produce(stream: string, keys: string[], perKey: number): Promise<Produced[]> {
  const produced: Produced[] = [];
  for (let seq = 1; seq <= perKey; seq++) {
    for (const partitionKey of keys) {
      const e = await testDb.db.transaction((tx) => enqueue(tx, { stream, type: 'ThingChanged', partitionKey, payload: { seq } }));
      produced.push({ ...e, partitionKey });
    }
  }
  await testDb.sql`UPDATE events.outbox_event SET published_at = now() WHERE stream_name = ${stream}`;
  return produced;
}

/** What the consumer does for one entry: inbox row and effect in one transaction. */
async function handle(group: string, event: Produced): Promise<void> {
  await testDb.db.transaction(async (tx) => {
    await tx.execute(drizzleSql`INSERT INTO events.processed_event (group_name, event_id) VALUES (${group}, ${event.eventId})`);
    await recordHandled(tx, { group, eventId: event.eventId, stream: event.stream, partitionKey: event.partitionKey, outboxId: String(event.id) });
  });
}

async function cleanRun(): Promise<{ group: string; stream: string; events: Produced[] }> {
  const stream = uniqueStreamName('things');
  const group = uniqueGroupName();
  const events = await produce(stream, ['k1', 'k2', 'k3'], 4);
  for (const e of events) await handle(group, e);
  return { group, stream, events };
}

const verify = (subs: Array<{ group: string; stream: string; eventTypes?: string[] }>, extra: Parameters<typeof verifyPipeline>[2] = {}) =>
  verifyPipeline(testDb.sql, null, { subscriptions: subs, ...extra });

describe('verifyPipeline', () => {
  test('passes on a clean run and counts every event once', async () => {
    const { group, stream } = await cleanRun();
    const report = await verify([{ group, stream }]);
    expect(report).toMatchObject({ ok: true, events: 12, expected: 12, processed: 12, missing: 0, doubled: 0, outOfOrder: 0, handledLogChecked: true });
    expect(formatVerifyReport(report)).toMatch(/^verify: OK/);
  });

  test('a deleted processed row is reported missing', async () => {
    const { group, stream, events } = await cleanRun();
    const victim = events[5]!;
    await testDb.sql`DELETE FROM events.processed_event WHERE group_name = ${group} AND event_id = ${victim.eventId}`;
    const report = await verify([{ group, stream }]);
    expect(report).toMatchObject({ ok: false, missing: 1, doubled: 0, outOfOrder: 0 });
    expect(report.examples.missing).toEqual([expect.objectContaining({ group, eventId: victim.eventId, outboxId: String(victim.id), published: true })]);
    expect(formatVerifyReport(report)).toContain(`missing: group ${group} event ${victim.eventId}`);
  });

  test('a duplicated handled record is reported doubled, not out of order', async () => {
    const { group, stream, events } = await cleanRun();
    const victim = events[2]!;
    await testDb.sql`
      INSERT INTO chaos.handled (group_name, event_id, stream_name, partition_key, outbox_id)
      SELECT group_name, event_id, stream_name, partition_key, outbox_id FROM chaos.handled WHERE event_id = ${victim.eventId}`;
    const report = await verify([{ group, stream }]);
    expect(report).toMatchObject({ ok: false, missing: 0, doubled: 1, outOfOrder: 0 });
    expect(report.examples.doubled).toEqual([{ group, eventId: victim.eventId, times: 2 }]);
  });

  test('two handled records of one key swapped are reported out of order', async () => {
    const { group, stream, events } = await cleanRun();
    const [first, second] = events.filter((e) => e.partitionKey === 'k2');
    // Swap which event each handled row stands for: k2's second event now appears handled first.
    await testDb.sql`
      UPDATE chaos.handled SET event_id = CASE event_id WHEN ${first!.eventId}::uuid THEN ${second!.eventId}::uuid ELSE ${first!.eventId}::uuid END
      WHERE event_id IN (${first!.eventId}, ${second!.eventId})`;
    const report = await verify([{ group, stream }]);
    expect(report).toMatchObject({ ok: false, missing: 0, doubled: 0, outOfOrder: 1 });
    expect(report.examples.outOfOrder).toEqual([
      expect.objectContaining({ eventId: first!.eventId, partitionKey: 'k2', handledAfterOutboxId: String(second!.id) }),
    ]);
  });

  test('order is per partition key: interleaving different keys is fine', async () => {
    const stream = uniqueStreamName('things');
    const group = uniqueGroupName();
    const events = await produce(stream, ['a', 'b'], 3);
    // Handle all of b before any of a: still in order per key.
    for (const e of [...events.filter((x) => x.partitionKey === 'b'), ...events.filter((x) => x.partitionKey === 'a')]) await handle(group, e);
    expect(await verify([{ group, stream }])).toMatchObject({ ok: true, outOfOrder: 0 });
  });

  test('an unpublished event is missing and named as not published', async () => {
    const { group, stream } = await cleanRun();
    const late = await testDb.db.transaction((tx) => enqueue(tx, { stream, type: 'ThingChanged', partitionKey: 'k9', payload: { seq: 1 } }));
    const report = await verify([{ group, stream }]);
    expect(report).toMatchObject({ ok: false, missing: 1, unpublished: 1 });
    expect(report.examples.missing[0]).toMatchObject({ eventId: late.eventId, published: false });
  });

  test('a dead-lettered event is accounted for, not missing', async () => {
    const stream = uniqueStreamName('things');
    const group = uniqueGroupName();
    const events = await produce(stream, ['k1'], 3);
    const [a, poison, c] = events;
    await handle(group, a!);
    await handle(group, c!);
    await testDb.sql`
      INSERT INTO events.dead_letter (group_name, stream_name, redis_entry_id, event_id, event_type, partition_key, payload, error_message, attempts, first_failed_at)
      VALUES (${group}, ${stream}, '1-2', ${poison!.eventId}, 'ThingChanged', 'k1', '{}'::jsonb, 'payload failed its schema', 1, now())`;
    // The consumer writes the inbox row in the dead letter's transaction (exactly once around dead letters).
    await testDb.sql`INSERT INTO events.processed_event (group_name, event_id) VALUES (${group}, ${poison!.eventId})`;
    const report = await verify([{ group, stream }]);
    expect(report).toMatchObject({ ok: true, missing: 0, deadLettered: 1, processed: 2, deadLetteredButProcessed: 0 });
    expect(report.examples.deadLettered[0]).toMatchObject({ eventId: poison!.eventId, status: 'dead', errorMessage: 'payload failed its schema' });
  });

  test('every subscribing group must handle every event; --group narrows to one', async () => {
    const { group, stream, events } = await cleanRun();
    const lagging = uniqueGroupName('lagging');
    for (const e of events.slice(0, 10)) await handle(lagging, e);
    const both = await verify([
      { group, stream },
      { group: lagging, stream },
    ]);
    expect(both).toMatchObject({ ok: false, expected: 24, missing: 2 });
    expect(both.groups.find((g) => g.group === lagging)).toMatchObject({ missing: 2, processed: 10 });
    expect(await verify([{ group, stream }, { group: lagging, stream }], { group })).toMatchObject({ ok: true, expected: 12 });
  });

  test('discovers subscriptions from consumer leases, including groups that handled nothing', async () => {
    const { group, stream } = await cleanRun();
    const silent = uniqueGroupName('silent');
    await testDb.sql`
      INSERT INTO events.stream_lease (stream_name, role, owner_id, lease_until, fencing_token)
      VALUES (${`${stream}:p0`}, ${`consumer:${silent}`}, 'host:1:abc', now(), 1)`;
    const report = await verifyPipeline(testDb.sql, null, {});
    expect(report.subscriptions).toEqual(
      expect.arrayContaining([
        { group, stream, source: 'processed-event', eventTypes: ['ThingChanged'], eventTypesSource: 'inferred' },
        { group: silent, stream, source: 'consumer-lease', eventTypes: null, eventTypesSource: 'all' },
      ]),
    );
    expect(report).toMatchObject({ ok: false, missing: 12 });
  });

  test('events of a type the group has no handler for are skipped, not missing', async () => {
    const { group, stream } = await cleanRun();
    for (const partitionKey of ['k1', 'k2', 'k3']) {
      await testDb.db.transaction((tx) => enqueue(tx, { stream, type: 'ThingAudited', partitionKey, payload: {} }));
    }
    await testDb.sql`UPDATE events.outbox_event SET published_at = now() WHERE stream_name = ${stream}`;

    // Discovered: the types it handles are inferred from what it processed.
    const inferred = await verifyPipeline(testDb.sql, null, { group });
    expect(inferred).toMatchObject({ ok: true, events: 15, expected: 12, processed: 12, missing: 0, skipped: 3 });
    expect(inferred.groups).toEqual([expect.objectContaining({ group, skipped: 3, skippedTypes: [{ type: 'ThingAudited', events: 3 }] })]);
    expect(formatVerifyReport(inferred)).toContain('skipped, types it never handled in this window (pass --handles to say which it does): ThingAudited 3');

    // Told: per subscription, or per group (the handler registry's types).
    expect(await verify([{ group, stream, eventTypes: ['ThingChanged'] }])).toMatchObject({ ok: true, skipped: 3, missing: 0 });
    expect(await verifyPipeline(testDb.sql, null, { group, handledTypes: { [group]: ['ThingChanged', 'ThingAudited'] } })).toMatchObject({
      ok: false,
      skipped: 0,
      missing: 3,
    });
    // A subscription given without types expects every type.
    expect(await verify([{ group, stream }])).toMatchObject({ ok: false, skipped: 0, missing: 3 });
  });

  test('a group that handled nothing is expected to handle every type (a stuck group is missing, not skipped)', async () => {
    const stream = uniqueStreamName('things');
    const stuck = uniqueGroupName('stuck');
    await produce(stream, ['k1'], 2);
    await testDb.sql`
      INSERT INTO events.stream_lease (stream_name, role, owner_id, lease_until, fencing_token)
      VALUES (${stream}, ${`consumer:${stuck}`}, 'host:1:abc', now(), 1)`;
    expect(await verifyPipeline(testDb.sql, null, { group: stuck })).toMatchObject({ ok: false, missing: 2, skipped: 0 });
  });

  test('--since leaves older events out of the window', async () => {
    const { group, stream, events } = await cleanRun();
    await testDb.sql`DELETE FROM events.processed_event WHERE event_id = ${events[0]!.eventId}`;
    await testDb.sql`UPDATE events.outbox_event SET created_at = now() - interval '1 hour' WHERE event_id = ${events[0]!.eventId}`;
    expect(await verify([{ group, stream }])).toMatchObject({ ok: false, missing: 1 });
    const recent = await verify([{ group, stream }], { since: new Date(Date.now() - 10 * 60_000) });
    expect(recent).toMatchObject({ ok: true, events: 11, missing: 0 });
  });

  test('without the handled-order log only missing is checked, and the report says so', async () => {
    const { group, stream } = await cleanRun();
    await testDb.sql`DROP TABLE chaos.handled`;
    const report = await verify([{ group, stream }]);
    expect(report).toMatchObject({ ok: true, handledLogChecked: false });
    expect(formatVerifyReport(report)).toContain('doubled effects and order were not checked');
  });
});
