/**
 * Waking the publisher without a NOTIFY per commit (issue 20, wake-lock.ts):
 * producers notify only while no drainer is awake on the stream, and a row
 * committed while the drainer falls asleep is still published without
 * waiting for the poll interval. Real Postgres and Redis; the poll interval
 * is a minute, so only the protocol can publish within the deadlines below.
 */
import type { RedisClient } from '@petcover/service-kit';
import postgres from 'postgres';
import { Registry } from 'prom-client';
import { createPublisher, enqueue, OUTBOX_NOTIFY_CHANNEL, OUTBOX_WAKE_LOCK_CLASS, type Publisher, type PublisherOptions } from '../src';
import { createTestDatabase, createTestRedis, trackedRedisPrefixes, uniqueStreamName, waitFor, type TestDatabase } from '../src/testing/index';
import { capturingLogger, unpublishedCount } from './publisher-helpers';

let db: TestDatabase;
let redis: RedisClient;
const running: Publisher[] = [];
const prefixes = trackedRedisPrefixes();

beforeAll(async () => {
  db = await createTestDatabase({ poolSize: 8 });
  redis = createTestRedis();
});
afterEach(async () => {
  await Promise.all(running.splice(0).map((p) => p.stop()));
});
afterAll(async () => {
  await prefixes.deleteAll(redis);
  await db.drop();
  redis.disconnect();
});

/** Each wake state the drainers report, in order, per stream. */
function startPublisher(overrides: Partial<PublisherOptions> = {}) {
  const states: Array<{ stream: string; state: string }> = [];
  const { logger, lines } = capturingLogger();
  const publisher = createPublisher({
    sql: db.sql, redis, logger, registry: new Registry(), keyPrefix: prefixes.next(),
    pollIntervalMs: 60_000, leaseTtlMs: 5_000,
    hooks: { onWakeState: (stream, state) => void states.push({ stream, state }) },
    ...overrides,
  });
  running.push(publisher);
  void publisher.start();
  return { publisher, states, lines };
}

function event(stream: string, seq: number) {
  return { stream, type: 'TestHappened', partitionKey: `key-${seq % 3}`, payload: { seq } };
}

/** NOTIFYs received on the publisher's channel (payload = stream). */
async function listenForNotifies(): Promise<{ received: string[]; close(): Promise<void> }> {
  const listener = postgres(db.url, { max: 1, onnotice: () => undefined });
  const received: string[] = [];
  await listener.listen(OUTBOX_NOTIFY_CHANNEL, (payload) => void received.push(payload));
  return { received, close: () => listener.end({ timeout: 5 }) };
}

async function wakeLockHolders(stream: string): Promise<number> {
  const [row] = await db.sql<{ n: number }[]>`
    SELECT count(*)::int AS n FROM pg_locks
    WHERE locktype = 'advisory' AND classid = ${OUTBOX_WAKE_LOCK_CLASS}::int::oid AND objid = hashtext(${stream})::oid AND mode = 'ExclusiveLock' AND granted`;
  return row!.n;
}

test('enqueue sends its NOTIFY only while nobody holds the stream wake lock; a held lock means no NOTIFY', async () => {
  const stream = uniqueStreamName('wake-notify');
  const other = uniqueStreamName('wake-other');
  const notifies = await listenForNotifies();
  const holder = postgres(db.url, { max: 1, onnotice: () => undefined });
  try {
    await db.db.transaction((tx) => enqueue(tx, event(stream, 1)));
    await waitFor(async () => notifies.received.includes(stream), { timeoutMs: 10_000, description: 'NOTIFY with no wake lock held' });

    // An awake publisher holds the stream's lock (session level) on its own connection.
    await holder`SELECT pg_advisory_lock(${OUTBOX_WAKE_LOCK_CLASS}::int, hashtext(${stream}))`;
    const before = notifies.received.length;
    await db.db.transaction(async (tx) => {
      await enqueue(tx, event(stream, 2));
      await enqueue(tx, event(other, 3)); // another stream's lock is free: that one is notified
    });
    await waitFor(async () => notifies.received.includes(other), { timeoutMs: 10_000, description: 'NOTIFY of the other stream' });
    // Both NOTIFYs of one transaction arrive together, at its commit: the held stream had none.
    expect(notifies.received.slice(before)).toEqual([other]);

    await holder`SELECT pg_advisory_unlock(${OUTBOX_WAKE_LOCK_CLASS}::int, hashtext(${stream}))`;
    await db.db.transaction((tx) => enqueue(tx, event(stream, 4)));
    await waitFor(async () => notifies.received.filter((s) => s === stream).length === 2, { timeoutMs: 10_000, description: 'NOTIFY after the lock was released' });
  } finally {
    await holder.end({ timeout: 5 });
    await notifies.close();
  }
});

test('an awake drainer holds the wake lock and publishes without NOTIFYs; idle, it releases the lock and sleeps; the next commit wakes it', async () => {
  const stream = uniqueStreamName('wake-cycle');
  const { states } = startPublisher({ wakeLingerMs: 50 });
  await db.db.transaction((tx) => enqueue(tx, event(stream, 1)));
  await waitFor(async () => (await unpublishedCount(db, stream)) === 0, { timeoutMs: 20_000, description: 'first row published' });
  await waitFor(async () => states.some((s) => s.stream === stream && s.state === 'asleep'), { timeoutMs: 20_000, description: 'drainer asleep' });
  expect(await wakeLockHolders(stream)).toBe(0);
  // Asleep: a commit NOTIFYs and wakes it (the poll interval is a minute).
  for (let seq = 2; seq <= 50; seq++) await db.db.transaction((tx) => enqueue(tx, event(stream, seq)));
  await waitFor(async () => (await unpublishedCount(db, stream)) === 0, { timeoutMs: 20_000, description: 'rows after sleep published' });
  const sequence = states.filter((s) => s.stream === stream).map((s) => s.state).filter((s) => s !== 'settling-poll');
  expect(sequence.slice(0, 4)).toEqual(['settling', 'settled', 'asleep', 'awake']);
});

test('a producer that inserted while the drainer was awake and commits while it falls asleep: its row is published without the poll interval', async () => {
  const stream = uniqueStreamName('wake-race');
  // A long linger, so the test can insert while the drainer is surely awake.
  const { states, lines } = startPublisher({ wakeLingerMs: 1_500 });
  const producer = postgres(db.url, { max: 1, onnotice: () => undefined });
  try {
    const reserved = await producer.reserve();
    // Insert while the drainer is awake: wake it with a committed row, wait until it holds the
    // wake lock, then insert (what enqueue sends). On a loaded machine the linger may pass first:
    // then the insert could take the lock (it would notify), so roll back and try again.
    for (let seq = 1; ; seq += 2) {
      await db.db.transaction((tx) => enqueue(tx, event(stream, seq)));
      await waitFor(async () => (await wakeLockHolders(stream)) === 1, { timeoutMs: 20_000, description: 'drainer awake, holding the wake lock' });
      await reserved`BEGIN`;
      const [inserted] = await reserved`
        INSERT INTO events.outbox_event (event_id, stream_name, partition_key, event_type, payload)
        VALUES (gen_random_uuid(), ${stream}, 'key-race', 'TestHappened', ${reserved.json({ seq: seq + 1 })})
        RETURNING pg_try_advisory_xact_lock_shared(${OUTBOX_WAKE_LOCK_CLASS}::int, hashtext(stream_name)) AS would_notify`;
      if (inserted!.would_notify === false) break; // the lock is held: this row sends no NOTIFY
      await reserved`ROLLBACK`;
    }
    const count = (state: string) => states.filter((s) => s.stream === stream && s.state === state).length;
    const [asleepBefore, pollsBefore] = [count('asleep'), count('settling-poll')];
    // The drainer gives the lock up, then keeps polling while our transaction (older than its horizon) is open.
    await waitFor(async () => count('settling-poll') >= pollsBefore + 3, { timeoutMs: 20_000, description: 'drainer settling, polling' }).catch((error: Error) => {
      const seen = states.filter((s) => s.stream === stream).map((s) => s.state);
      throw new Error(`${error.message}; states ${JSON.stringify(seen.slice(-30))}; publisher log ${JSON.stringify(lines.filter((l) => Number(l.level) >= 30).map((l) => l.msg))}`);
    });
    expect(count('asleep')).toBe(asleepBefore);
    await reserved`COMMIT`;
    reserved.release();
    await waitFor(async () => (await unpublishedCount(db, stream)) === 0, { timeoutMs: 20_000, description: 'the racing row published long before the 60 s poll' });
  } finally {
    await producer.end({ timeout: 5 });
  }
});
