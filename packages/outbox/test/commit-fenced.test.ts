/**
 * commitFenced: the lease fence travels with COMMIT (one round trip), so
 * these tests check what that must not change: an effect commits only while
 * the partition lease is the worker's grant, and a takeover that happens
 * while the batch transaction is open is never overtaken by its commit.
 *
 * The fault modelled: a consumer replica paused (SIGSTOP, a GC pause) with a
 * batch transaction open while another replica takes its partition over.
 */
import { sql } from 'drizzle-orm';
import { drizzle } from 'drizzle-orm/postgres-js';
import postgres from 'postgres';
import { acquireLease, partitionStreamName } from '../src';
import { commitFenced, PartitionLeaseLostError, type PartitionLeaseRef } from '../src/consumer/inbox';
import { consumerRole, makeOwnerId } from '../src/lease/lease';
import { createTestDatabase, uniqueGroupName, uniqueStreamName, type TestDatabase, waitFor } from '../src/testing';

let testDb: TestDatabase;
beforeAll(async () => {
  testDb = await createTestDatabase({ poolSize: 4 });
  await testDb.sql`CREATE TABLE public.effect (note text NOT NULL)`;
});
afterAll(async () => testDb.drop());

async function leasedPartition(): Promise<PartitionLeaseRef> {
  const group = uniqueGroupName();
  const streamName = partitionStreamName(uniqueStreamName(), 0, 1);
  const ownerId = makeOwnerId();
  const grant = await acquireLease(testDb.sql, { streamName, role: consumerRole(group), ownerId, ttlMs: 30_000 });
  return { streamName, role: consumerRole(group), ownerId, fencingToken: grant!.fencingToken, group };
}

async function effects(note: string): Promise<number> {
  const [row] = await testDb.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM public.effect WHERE note = ${note}`;
  return row!.n;
}

const insertEffect = (note: string) => (tx: Parameters<Parameters<typeof commitFenced>[2]>[0]) => tx.execute(sql`INSERT INTO public.effect (note) VALUES (${note})`);

test('commits under its own lease and returns what the work returned', async () => {
  const lease = await leasedPartition();
  const value = await commitFenced(testDb.db, lease, async (tx) => {
    await insertEffect('own lease')(tx);
    return 42;
  });
  expect(value).toBe(42);
  expect(await effects('own lease')).toBe(1);
});

test.each([
  ['another owner', (l: PartitionLeaseRef) => ({ ...l, ownerId: 'other:1:abc' })],
  ['an older grant of the same owner (another fencing token)', (l: PartitionLeaseRef) => ({ ...l, fencingToken: String(BigInt(l.fencingToken) - 1n) })],
  ['a partition nobody leased', (l: PartitionLeaseRef) => ({ ...l, streamName: partitionStreamName(uniqueStreamName(), 0, 1) })],
])('refuses to commit under %s: PartitionLeaseLostError, nothing written', async (_case, change) => {
  const lease = change(await leasedPartition());
  const note = `refused ${Math.random()}`;
  await expect(commitFenced(testDb.db, lease, insertEffect(note))).rejects.toBeInstanceOf(PartitionLeaseLostError);
  expect(await effects(note)).toBe(0);
  // The connection is healthy afterwards: the aborted transaction ended with the COMMIT-turned-ROLLBACK.
  await expect(commitFenced(testDb.db, await leasedPartition(), insertEffect(`${note} after`))).resolves.toBeDefined();
  expect(await effects(`${note} after`)).toBe(1);
});

test('a takeover while the batch transaction is open: the stale commit is refused, the new owner is not blocked afterwards', async () => {
  const lease = await leasedPartition();
  const note = `paused ${Math.random()}`;
  let resume!: () => void;
  const paused = new Promise<void>((resolve) => (resume = resolve));
  const stale = commitFenced(testDb.db, lease, async (tx) => {
    await insertEffect(note)(tx);
    // The replica is paused here, its transaction open, while another replica takes the partition.
    await paused;
  });
  stale.catch(() => undefined);
  await testDb.sql`
    UPDATE events.stream_lease SET owner_id = 'other:2:def', fencing_token = fencing_token + 1
    WHERE stream_name = ${lease.streamName} AND role = ${lease.role}`;
  resume();
  await expect(stale).rejects.toBeInstanceOf(PartitionLeaseLostError);
  expect(await effects(note)).toBe(0);
});

test('an error of the work rolls back without sending the fence, and is what the caller sees', async () => {
  const lease = await leasedPartition();
  const note = `failing ${Math.random()}`;
  const failure = new Error('handler failed');
  await expect(
    commitFenced(testDb.db, lease, async (tx) => {
      await insertEffect(note)(tx);
      throw failure;
    }),
  ).rejects.toBe(failure);
  expect(await effects(note)).toBe(0);
});

test('many in a row on a small pool, alternating own and lost leases: each commit follows its own fence', async () => {
  // A fence sent after COMMIT would run outside the transaction and let a refused commit through.
  const lease = await leasedPartition();
  const wrong = { ...lease, ownerId: 'other:3:ghi' };
  const notes = Array.from({ length: 40 }, (_, i) => `burst ${i} ${Math.random()}`);
  const outcomes = await Promise.allSettled(notes.map((note, i) => commitFenced(testDb.db, i % 2 === 0 ? lease : wrong, insertEffect(note))));
  outcomes.forEach((outcome, i) => {
    if (i % 2 === 0) expect(outcome.status).toBe('fulfilled');
    else expect(outcome.status === 'rejected' && outcome.reason instanceof PartitionLeaseLostError).toBe(true);
  });
  for (const [i, note] of notes.entries()) expect(await effects(note)).toBe(i % 2 === 0 ? 1 : 0);
});

test('COMMIT is sent before the fence answers (one round trip), and waits behind it on the server', async () => {
  const lease = await leasedPartition();
  const note = `pipelined ${Math.random()}`;
  const sent: string[] = [];
  const client = postgres(testDb.url, { max: 1, onnotice: () => undefined, debug: (_id, text) => void sent.push(text.trim().toLowerCase()) });
  const locker = postgres(testDb.url, { max: 1, onnotice: () => undefined });
  try {
    // postgres.js describes a statement on its first use on a connection before sending it (a round trip
    // that holds back what follows); from then on the fence is a known statement, as in a running consumer.
    await commitFenced(drizzle(client), lease, insertEffect(`${note} warm-up`));
    sent.length = 0;
    // Another session holds the lease row: the fence's FOR SHARE waits for it.
    const unlock = await new Promise<() => void>((ready) => {
      locker
        .begin(async (tx) => {
          await tx`SELECT 1 FROM events.stream_lease WHERE stream_name = ${lease.streamName} AND role = ${lease.role} FOR UPDATE`;
          await new Promise<void>((release) => ready(release));
        })
        .catch(() => undefined);
    });
    const committing = commitFenced(drizzle(client), lease, insertEffect(note));
    committing.catch(() => undefined);
    // The fence cannot have answered (its row is locked), yet COMMIT is already on the wire.
    await waitFor(() => sent.includes('commit'), { timeoutMs: 5_000, description: 'COMMIT sent while the fence waits for its row lock' }).catch((error: Error) => {
      throw new Error(`${error.message}; statements sent: ${JSON.stringify(sent)}`);
    });
    expect(await effects(note)).toBe(0);
    unlock();
    await committing;
    expect(await effects(note)).toBe(1);
  } finally {
    await client.end({ timeout: 5 });
    await locker.end({ timeout: 5 });
  }
});
