/**
 * Partition leases across coordination rounds, under the faults that make
 * them move: a lease lost and taken back between two rounds, and a handover
 * whose worker is slow to finish.
 *
 * A partition lease lost and taken back between two coordination rounds.
 *
 * The fault: a consumer replica stalls (CPU starvation, a GC pause, SIGSTOP)
 * longer than its lease TTL. Another replica takes the partition over, works
 * on it (parks a key whose handler fails), and gives it up again (its own
 * lease lapses, or it hands the partition back on a rebalance). The first
 * replica wakes up and renews "its" lease, which succeeds: the row is free.
 * Its old partition worker never saw the other owner, so everything it knew
 * was stale: that the partition had no parked key, its read position, what
 * it had in hand. Seen in `pnpm chaos` (older snapshot restore + WRONGTYPE
 * plant on a loaded machine): event 586 of orders-11 handled after 1099, the
 * later event run while the earlier one was parked by the other replica.
 *
 * The other replica's tenure is compressed here into one SQL transaction
 * (take the lease over, park a key as its worker would, give the lease up),
 * so the first replica observes exactly what it would after a stall.
 */
import { sql } from 'drizzle-orm';
import { z } from 'zod';
import { createHandlerRegistry, partitionFor, partitionStreamName, redisStreamKey, type HandledEvent, type HandlerContext } from '../src';
import { markProcessed } from '../src/consumer/inbox';
import { releaseParkedKey } from '../src/consumer/parked-keys';
import { parkEntries, parkKey } from '../src/consumer/parking';
import { consumerRole } from '../src/lease/lease';
import { appendTestEvents, testStreamEvent, uniqueGroupName, uniqueStreamName, waitFor } from '../src/testing';
import { useConsumerHarness } from './consumer-harness';

const harness = useConsumerHarness({ poolSize: 10, consumerDefaults: { blockMs: 100 } });

const payloadSchema = z.object({ seq: z.number().int() });

function record(event: HandledEvent<z.infer<typeof payloadSchema>>, ctx: HandlerContext) {
  return harness.recordEffects(ctx, [event]);
}

async function seqsOf(group: string, key: string): Promise<number[]> {
  return (await harness.effectsOf(group)).filter((r) => r.partition_key === key).map((r) => r.seq);
}

async function leaseOf(partitionStream: string, group: string) {
  const [row] = await harness.testDb.sql<{ owner_id: string; fencing_token: string }[]>`
    SELECT owner_id, fencing_token::text FROM events.stream_lease WHERE stream_name = ${partitionStream} AND role = ${consumerRole(group)}`;
  return row;
}

test('a lease lost and taken back between two rounds: the stale worker is replaced, and a key the other owner parked meanwhile keeps its order', async () => {
  const stream = uniqueStreamName();
  const prefix = harness.nextPrefix();
  const group = uniqueGroupName();
  const key = redisStreamKey(stream, prefix);
  const partitionStream = partitionStreamName(stream, 0, 1);
  const registry = createHandlerRegistry().register('Recorded', {
    schema: payloadSchema,
    async handle(event, ctx) {
      await record(event, ctx);
    },
  });
  const consumer = harness.startConsumer({ registry, group, keyPrefix: prefix, streams: [{ name: stream }] });

  // Seq 1 is handled: the worker has looked at its parking (none) and is waiting for entries.
  const [first] = [testStreamEvent({ type: 'Recorded', partitionKey: 'owner-a', payload: { seq: 1 } })];
  await appendTestEvents(harness.redis, key, [first!]);
  await waitFor(async () => (await seqsOf(group, 'owner-a')).length === 1, { description: 'seq 1 handled' });
  const ours = await leaseOf(partitionStream, group);
  expect(ours?.owner_id).toBe(consumer.ownerId);

  // Another replica's whole tenure: it takes the partition over, its handler fails on seq 2 of owner-a, so it
  // parks the key (due in an hour: only the order matters here), then it gives the lease up.
  const second = testStreamEvent({ type: 'Recorded', partitionKey: 'owner-a', payload: { seq: 2 } });
  await harness.testDb.db.transaction(async (tx) => {
    await tx.execute(sql`UPDATE events.stream_lease SET owner_id = 'other-replica', fencing_token = fencing_token + 1
      WHERE stream_name = ${partitionStream} AND role = ${consumerRole(group)}`);
    await markProcessed(tx, group, [second.eventId]);
    const scope = { group, partitionStream };
    await parkKey(tx, scope, { partitionKey: 'owner-a', attempts: 1, delayMs: 3_600_000, error: 'downstream refuses owner-a', halted: false });
    await parkEntries(tx, scope, [{ entryId: '1-1', event: second }]);
    await tx.execute(sql`DELETE FROM events.stream_lease WHERE stream_name = ${partitionStream} AND role = ${consumerRole(group)}`);
  });

  // The first replica's next round renews its lease: free, so it is taken again, with a new fencing token.
  const regained = await waitFor(async () => {
    const lease = await leaseOf(partitionStream, group);
    return lease?.owner_id === consumer.ownerId ? lease : null;
  }, { description: 'the lease taken back by the first replica' });
  expect(BigInt(regained.fencing_token)).toBeGreaterThan(BigInt(ours!.fencing_token));

  // Seq 3 of the parked key arrives: it must park behind seq 2, not run before it.
  const third = testStreamEvent({ type: 'Recorded', partitionKey: 'owner-a', payload: { seq: 3 } });
  await appendTestEvents(harness.redis, key, [third]);
  await waitFor(async () => {
    const [row] = await harness.testDb.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM events.parked_event WHERE group_name = ${group} AND partition_key = 'owner-a'`;
    return row!.n === 2 ? true : (await seqsOf(group, 'owner-a')).length > 1 ? true : null;
  }, { description: 'seq 3 parked behind seq 2 (or, wrongly, handled)' });
  expect(await seqsOf(group, 'owner-a')).toEqual([1]);

  // An operator retries the key now (events key release): it completes in order.
  await releaseParkedKey(harness.testDb.db, { group, stream: partitionStream, key: 'owner-a' });
  await waitFor(async () => (await seqsOf(group, 'owner-a')).length === 3, { description: 'owner-a completed' });
  expect(await seqsOf(group, 'owner-a')).toEqual([1, 2, 3]);
});

test('a handover to rebalance whose worker is busy for longer than the lease TTL does not cost the replica its other partitions', async () => {
  const stream = uniqueStreamName();
  const prefix = harness.nextPrefix();
  const group = uniqueGroupName();
  const [p0, p1] = [0, 1].map((i) => partitionStreamName(stream, i, 2)) as [string, string];
  const slowKey = Array.from({ length: 100 }, (_, i) => `owner-${i}`).find((k) => partitionFor(k, 2) === 1)!;
  // The first event of slowKey holds its handler until the test lets it go.
  let releaseSlow!: () => void;
  const slowGate = new Promise<void>((resolve) => (releaseSlow = resolve));
  let markStarted!: () => void;
  const slowStarted = new Promise<void>((resolve) => (markStarted = resolve));
  const registry = createHandlerRegistry().register('Recorded', {
    schema: payloadSchema,
    timeoutMs: 60_000,
    async handle(event, ctx) {
      if (event.partitionKey === slowKey && event.payload.seq === 1) {
        markStarted();
        await slowGate;
      }
      await record(event, ctx);
    },
  });
  const consumerOptions = { registry, group, keyPrefix: prefix, streams: [{ name: stream, partitions: 2 }], leaseTtlMs: 3_000 };
  const first = harness.startConsumer(consumerOptions);
  await waitFor(async () => (first.status().leased.length === 2 ? true : null), { description: 'the first replica holds both partitions' });
  const p0Lease = await leaseOf(p0, group);
  await appendTestEvents(harness.redis, redisStreamKey(p1, prefix), [testStreamEvent({ type: 'Recorded', partitionKey: slowKey, payload: { seq: 1 } })]);
  await slowStarted;

  // A second replica joins: the first hands one partition over (p1, whose worker is busy in the slow handler).
  expect(p0Lease?.owner_id).toBe(first.ownerId);
  const [joined] = await harness.testDb.sql<{ at: Date }[]>`SELECT now() AS at`;
  const second = harness.startConsumer(consumerOptions);
  // The condition: the first replica has renewed p0 more than 2.5 lease TTLs after the join, while p1's worker is
  // still held; any change of owner or token before that ends the wait and fails below.
  const p0Meanwhile = await waitFor(async () => {
    const [row] = await harness.testDb.sql<{ owner_id: string; fencing_token: string; renewed_late: boolean }[]>`
      SELECT owner_id, fencing_token::text, renewed_at > ${joined!.at}::timestamptz + interval '7.5 seconds' AS renewed_late
      FROM events.stream_lease WHERE stream_name = ${p0} AND role = ${consumerRole(group)}`;
    const unchanged = row?.owner_id === p0Lease!.owner_id && row.fencing_token === p0Lease!.fencing_token;
    return !unchanged || row!.renewed_late ? row ?? { owner_id: 'none', fencing_token: 'none' } : null;
  }, { timeoutMs: 30_000, description: 'p0 renewed by the first replica 2.5 lease TTLs after the second joined' });
  expect({ owner_id: p0Meanwhile.owner_id, fencing_token: p0Meanwhile.fencing_token }).toEqual(p0Lease);
  releaseSlow();
  await waitFor(async () => ((await leaseOf(p1, group))?.owner_id === second.ownerId ? true : null), { description: 'p1 taken by the second replica after the handover' });
  expect(first.status().leased).toEqual([p0]);
  expect(await leaseOf(p0, group)).toEqual(p0Lease);
  expect(await seqsOf(group, slowKey)).toEqual([1]);
});
