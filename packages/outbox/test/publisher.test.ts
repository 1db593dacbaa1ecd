/**
 * The publisher library in-process, on real Postgres and Redis: exactly-once
 * relay in order, idempotent and fenced appends, lease handling, bad input,
 * trimming. Process kills live in apps/events-publisher/test.
 */
import type { RedisClient } from '@petcover/service-kit';
import { Registry } from 'prom-client';
import {
  enqueueMany,
  createPublisher,
  partitionFor,
  partitionStreamName,
  type Publisher,
  type PublisherOptions,
} from '../src';
import { appendBatch, stampFence, trimStream, type OutboxRowForAppend, type StreamWriter } from '../src/publisher/redis-scripts';
import { createTestDatabase, createTestRedis, trackedRedisPrefixes, uniqueStreamName, waitFor, type TestDatabase } from '../src/testing/index';
import { capturingLogger, expectIdOrder, fillOutbox, readStream, unpublishedCount } from './publisher-helpers';

let db: TestDatabase;
let redis: RedisClient;
const running: Publisher[] = [];
const prefixes = trackedRedisPrefixes();
const uniqueRedisPrefix = prefixes.next;

beforeAll(async () => {
  db = await createTestDatabase({ poolSize: 12 });
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

function startPublisher(overrides: Partial<PublisherOptions> = {}) {
  const { logger, lines } = capturingLogger();
  const registry = new Registry();
  const publisher = createPublisher({ sql: db.sql, redis, logger, registry, pollIntervalMs: 200, leaseTtlMs: 2_000, ...overrides });
  running.push(publisher);
  void publisher.start();
  return { publisher, lines, registry };
}

/** Every row of `stream` is recorded with the id of its one Redis entry. */
async function expectRecordedEntries(stream: string, entries: ReadonlyArray<{ entryId: string; outboxId: bigint }>): Promise<void> {
  const rows = await db.sql<{ id: string; redis_entry_id: string | null }[]>`
    SELECT id::text, redis_entry_id FROM events.outbox_event WHERE stream_name = ${stream} ORDER BY outbox_event.id`;
  expect(rows.map((r) => [r.id, r.redis_entry_id])).toEqual(
    [...entries].sort((a, b) => (a.outboxId < b.outboxId ? -1 : 1)).map((e) => [String(e.outboxId), e.entryId]),
  );
}

async function metricValue(registry: Registry, name: string, stream: string): Promise<number> {
  const metric = (await registry.getMetricsAsJSON()).find((m) => m.name === name);
  const value = (metric?.values as Array<{ value: number; labels: Record<string, string> }> | undefined)?.find((v) => v.labels.stream === stream);
  return value?.value ?? 0;
}

/** A writer of database `db-a` (or `databaseId`) with `fencingToken`. */
function writer(fencingToken: string, databaseId = 'db-a'): StreamWriter {
  return { fencingToken, databaseId };
}

function row(id: number, key = 'k'): OutboxRowForAppend {
  return { id: String(id), eventId: `00000000-0000-7000-8000-${String(id).padStart(12, '0')}`, type: 'T', partitionKey: key, payloadJson: '{}', headersJson: '{}', createdAt: '2026-01-01T00:00:00.000000Z' };
}

test('relays 10,000 events over 5 streams (one with 4 partitions) exactly once, in id order per partition and per key', async () => {
  const prefix = uniqueRedisPrefix();
  const streams = Array.from({ length: 5 }, (_, i) => uniqueStreamName(`s${i}`));
  const partitioned = streams[0]!;
  for (const stream of streams) await fillOutbox(db, stream, 2_000, 25);
  const { registry, lines } = startPublisher({ keyPrefix: prefix, partitions: { [partitioned]: 4 }, batchSize: 500 });

  await waitFor(async () => (await Promise.all(streams.map((s) => unpublishedCount(db, s)))).every((n) => n === 0), {
    timeoutMs: 45_000,
    description: 'all 10,000 rows published',
  });
  const outbox = await db.sql<{ id: string; event_id: string; stream_name: string; partition_key: string }[]>`
    SELECT id::text, event_id::text, stream_name, partition_key FROM events.outbox_event WHERE stream_name = ANY(${`{${streams.join(',')}}`}::text[]) ORDER BY id`;
  expect(outbox).toHaveLength(10_000);

  const seen = new Map<string, string>();
  for (const stream of streams) {
    const count = stream === partitioned ? 4 : 1;
    for (let p = 0; p < count; p++) {
      const key = `${prefix}${partitionStreamName(stream, p, count)}`;
      const entries = await readStream(redis, key);
      expectIdOrder(entries); // per partition: ascending ids, hence per key too
      for (const entry of entries) {
        expect(seen.has(entry.eventId)).toBe(false);
        seen.set(entry.eventId, key);
        expect(partitionFor(entry.partitionKey, count)).toBe(p);
      }
    }
  }
  expect(seen.size).toBe(10_000);
  for (const r of outbox) {
    const count = r.stream_name === partitioned ? 4 : 1;
    expect(seen.get(r.event_id)).toBe(`${prefix}${partitionStreamName(r.stream_name, partitionFor(r.partition_key, count), count)}`);
  }
  // With P = 1 the Redis key is the stream name itself (plus the test prefix).
  expect(await redis.xlen(`${prefix}${streams[1]}`)).toBe(2_000);
  await expectRecordedEntries(streams[1]!, await readStream(redis, `${prefix}${streams[1]}`));
  // The last batch's UPDATE is counted when the drainer settles it, just after it commits.
  await waitFor(async () => (await metricValue(registry, 'petcover_publisher_events_published_total', partitioned)) === 2_000, {
    description: `published counter at 2,000 (drain failures: ${JSON.stringify(lines.filter((l) => String(l.msg).startsWith('drain failed')).map((l) => l.err))})`,
  });
});

describe('append script', () => {
  test('appends only when the stream ends where the caller expects: a re-sent batch adds no second entry', async () => {
    const key = `${uniqueRedisPrefix()}stream:t:x`;
    expect(await stampFence(redis, key, writer('5'))).toEqual({ status: 'ok', existed: false, lastEntryId: '0-0' });
    const first = await appendBatch(redis, key, writer('5'), '0-0', [row(1), row(2), row(4)]);
    expect(first).toEqual({ status: 'ok', entryIds: [expect.stringMatching(/^\d+-\d+$/), expect.any(String), expect.any(String)] });
    const entryIds = (first as { entryIds: string[] }).entryIds;
    // The same batch again, from the same expectation: Redis has moved on, nothing is written.
    expect(await appendBatch(redis, key, writer('5'), '0-0', [row(1), row(2), row(4)])).toEqual({ status: 'moved', lastEntryId: entryIds[2] });
    // id 3 committed after 4 was appended: it goes out once, after it.
    const late = await appendBatch(redis, key, writer('5'), entryIds[2]!, [row(3)]);
    expect(late.status).toBe('ok');
    expect((await readStream(redis, key)).map((e) => Number(e.outboxId))).toEqual([1, 2, 4, 3]);
    expect((await readStream(redis, key)).map((e) => e.entryId).slice(0, 3)).toEqual(entryIds);
    // Trimming and XDEL do not move the stream's last id: neither looks like a loss.
    await redis.xdel(key, (late as { entryIds: string[] }).entryIds[0]!);
    expect(await stampFence(redis, key, writer('5'))).toEqual({ status: 'ok', existed: true, lastEntryId: (late as { entryIds: string[] }).entryIds[0] });
  });

  test('an append with an older fencing token is refused and writes nothing', async () => {
    const key = `${uniqueRedisPrefix()}stream:t:x`;
    await stampFence(redis, key, writer('7'));
    expect(await appendBatch(redis, key, writer('6'), '0-0', [row(1)])).toEqual({ status: 'fenced', currentToken: '7' });
    expect(await stampFence(redis, key, writer('6'))).toEqual({ status: 'fenced', currentToken: '7' });
    expect(await redis.exists(key)).toBe(0);
    expect((await appendBatch(redis, key, writer('8'), '0-0', [row(1)])).status).toBe('ok');
    expect(await appendBatch(redis, key, writer('7'), '0-0', [row(2)])).toEqual({ status: 'fenced', currentToken: '8' });
  });

  test('another database identity replaces the fence, even with a lower token; the same database stays fenced', async () => {
    const key = `${uniqueRedisPrefix()}stream:t:x`;
    await stampFence(redis, key, writer('9'));
    const a = await appendBatch(redis, key, writer('9'), '0-0', [row(1), row(2)]);
    const lastOfA = (a as { entryIds: string[] }).entryIds[1]!;
    // A re-created database: ids restart at 1, its token is lower (a skewed clock).
    const b = await appendBatch(redis, key, writer('5', 'db-b'), lastOfA, [row(1), row(2)]);
    expect(b).toEqual({ status: 'ok', entryIds: [expect.any(String), expect.any(String)], previousDatabaseId: 'db-a' });
    expect(await redis.hgetall(`{${key}}:meta`)).toEqual({ fence: '5', db: 'db-b' });
    expect(await appendBatch(redis, key, writer('4', 'db-b'), '0-0', [row(3)])).toEqual({ status: 'fenced', currentToken: '5' });
    expect(await stampFence(redis, key, writer('3'))).toEqual({ status: 'ok', existed: true, previousDatabaseId: 'db-b', lastEntryId: (b as { entryIds: string[] }).entryIds[1] });
    expect(await stampFence(redis, key, writer('2'))).toEqual({ status: 'fenced', currentToken: '3' });
    expect((await readStream(redis, key)).map((e) => Number(e.outboxId))).toEqual([1, 2, 1, 2]);
  });

  test('a meta hash written before database identities existed is adopted', async () => {
    const key = `${uniqueRedisPrefix()}stream:t:x`;
    await redis.hset(`{${key}}:meta`, 'fence', '5');
    expect((await appendBatch(redis, key, writer('5'), '0-0', [row(1), row(2)])).status).toBe('ok');
    expect(await redis.hgetall(`{${key}}:meta`)).toEqual({ fence: '5', db: 'db-a' });
  });

  test('an append to a stream whose meta key vanished reports it and writes nothing', async () => {
    const key = `${uniqueRedisPrefix()}stream:t:x`;
    expect(await appendBatch(redis, key, writer('1'), '0-0', [row(1)])).toEqual({ status: 'lost' });
    expect(await redis.exists(key)).toBe(0);
  });
});

test('a hand DELETE of the lease row is re-acquired within one poll interval and draining goes on', async () => {
  const stream = uniqueStreamName();
  const prefix = uniqueRedisPrefix();
  await fillOutbox(db, stream, 10);
  const { publisher } = startPublisher({ keyPrefix: prefix, pollIntervalMs: 500, leaseTtlMs: 30_000 });
  await waitFor(async () => (await unpublishedCount(db, stream)) === 0, { description: 'first rows published' });
  const [before] = await db.sql<{ fencing_token: string }[]>`SELECT fencing_token::text FROM events.stream_lease WHERE stream_name = ${stream} AND role = 'publisher'`;

  await db.sql`DELETE FROM events.stream_lease WHERE stream_name = ${stream} AND role = 'publisher'`;
  const deletedAt = Date.now();
  const [after] = await waitFor(
    async () => {
      const rows = await db.sql<{ owner_id: string; fencing_token: string }[]>`SELECT owner_id, fencing_token::text FROM events.stream_lease WHERE stream_name = ${stream} AND role = 'publisher'`;
      return rows.length > 0 ? rows : null;
    },
    { timeoutMs: 5_000, description: 're-acquired lease row' },
  );
  // One poll interval (500 ms), plus slack for a busy CI machine.
  expect(Date.now() - deletedAt).toBeLessThan(2_000);
  expect(after!.owner_id).toBe(publisher.ownerId);
  expect(BigInt(after!.fencing_token)).toBeGreaterThan(BigInt(before!.fencing_token));

  await fillOutbox(db, stream, 10);
  await waitFor(async () => (await unpublishedCount(db, stream)) === 0, { description: 'rows after the DELETE published' });
  const entries = await readStream(redis, `${prefix}${stream}`);
  expect(entries).toHaveLength(20);
  expectIdOrder(entries);
});

test('a hand-inserted row whose payload is not an object is published as is, with a warning, and the stream moves on', async () => {
  const stream = uniqueStreamName();
  const prefix = uniqueRedisPrefix();
  await db.sql`
    INSERT INTO events.outbox_event (event_id, stream_name, partition_key, event_type, payload, headers)
    VALUES (gen_random_uuid(), ${stream}, 'k', 'Odd', '[1,2]'::jsonb, '{}'), (gen_random_uuid(), ${stream}, 'k', 'Odd', '"text"'::jsonb, '{}')`;
  await fillOutbox(db, stream, 3);
  const { lines } = startPublisher({ keyPrefix: prefix });
  await waitFor(async () => (await unpublishedCount(db, stream)) === 0, { description: 'all rows published' });
  const entries = await readStream(redis, `${prefix}${stream}`);
  expect(entries.map((e) => e.payload).slice(0, 2)).toEqual(['[1, 2]', '"text"']);
  expect(entries).toHaveLength(5);
  expect(lines.filter((l) => String(l.msg).includes('payload is not a JSON object'))).toHaveLength(2);
});

test('a lease row with a future lease_until owned by nobody alive: waits for expiry, says so in the log and metrics, then takes over', async () => {
  const stream = uniqueStreamName();
  const prefix = uniqueRedisPrefix();
  await db.sql`
    INSERT INTO events.stream_lease (stream_name, role, owner_id, lease_until, fencing_token)
    VALUES (${stream}, 'publisher', 'gone-host:999999:dead00', now() + interval '5 seconds', 1)`;
  await fillOutbox(db, stream, 5);
  const { lines, registry, publisher } = startPublisher({ keyPrefix: prefix });

  const waitLine = await waitFor(() => lines.find((l) => l.stream === stream && String(l.msg).includes('waiting for it to expire')), { description: 'wait logged' });
  expect(waitLine.leaseOwner).toBe('gone-host:999999:dead00');
  expect(await metricValue(registry, 'petcover_publisher_lease_waits_total', stream)).toBe(1);
  expect(await metricValue(registry, 'petcover_publisher_lease_blocked', stream)).toBe(1);
  expect(await unpublishedCount(db, stream)).toBe(5);
  expect(await metricValue(registry, 'petcover_outbox_queued_events', stream)).toBe(5);
  expect(await metricValue(registry, 'petcover_outbox_oldest_unpublished_age_seconds', stream)).toBeGreaterThanOrEqual(0);

  await waitFor(async () => (await unpublishedCount(db, stream)) === 0, { timeoutMs: 10_000, description: 'published after expiry' });
  expect(publisher.heldStreams()).toContain(stream);
  expect(lines.filter((l) => l.stream === stream && String(l.msg).includes('waiting for it to expire'))).toHaveLength(1);
  expect(await metricValue(registry, 'petcover_publisher_lease_blocked', stream)).toBe(0);
});

test('trimming leaves every entry a slow consumer group has not acknowledged', async () => {
  const key = `${uniqueRedisPrefix()}stream:t:trim`;
  await stampFence(redis, key, writer('1'));
  await appendBatch(redis, key, writer('1'), '0-0', Array.from({ length: 10 }, (_, i) => row(i + 1)));
  await redis.xgroup('CREATE', key, 'fast', '0');
  await redis.xgroup('CREATE', key, 'slow', '0');
  // fast: reads and acknowledges all 10. slow: reads 6, acknowledges only the first 2.
  const fast = (await redis.xreadgroup('GROUP', 'fast', 'c', 'COUNT', 10, 'STREAMS', key, '>')) as Array<[string, Array<[string, string[]]>]>;
  await redis.xack(key, 'fast', ...fast[0]![1].map(([id]) => id));
  const slow = (await redis.xreadgroup('GROUP', 'slow', 'c', 'COUNT', 6, 'STREAMS', key, '>')) as Array<[string, Array<[string, string[]]>]>;
  const slowIds = slow[0]![1].map(([id]) => id);
  await redis.xack(key, 'slow', slowIds[0]!, slowIds[1]!);

  const { removed } = await trimStream(redis, key, 0, 0);
  expect(removed).toBe(2);
  const left = (await readStream(redis, key)).map((e) => Number(e.outboxId));
  expect(left).toEqual([3, 4, 5, 6, 7, 8, 9, 10]);

  // slow acknowledges everything it was delivered: the undelivered 7..10 still stay.
  await redis.xack(key, 'slow', ...slowIds);
  expect((await trimStream(redis, key, 0, 0)).removed).toBe(4);
  expect((await readStream(redis, key)).map((e) => Number(e.outboxId))).toEqual([7, 8, 9, 10]);
  // The keep-acknowledged age holds back trimming of recent entries.
  await redis.xreadgroup('GROUP', 'slow', 'c', 'STREAMS', key, '>');
  await redis.xack(key, 'slow', ...(await readStream(redis, key)).map((e) => e.entryId));
  expect((await trimStream(redis, key, 3_600_000, 0)).removed).toBe(0);
  // Without groups, only the orphan max age trims (0 = never).
  const orphan = `${uniqueRedisPrefix()}stream:t:orphan`;
  await stampFence(redis, orphan, writer('1'));
  await appendBatch(redis, orphan, writer('1'), '0-0', [row(1)]);
  expect((await trimStream(redis, orphan, 0, 0)).removed).toBe(0);
});

test('stop() before start() and twice is safe, and releases held leases', async () => {
  const stream = uniqueStreamName();
  await fillOutbox(db, stream, 3);
  const idle = createPublisher({ sql: db.sql, redis, logger: capturingLogger().logger, registry: new Registry() });
  await idle.stop();
  await idle.stop();
  const { publisher } = startPublisher({ keyPrefix: uniqueRedisPrefix() });
  await waitFor(() => publisher.heldStreams().includes(stream), { description: 'lease held' });
  await Promise.all([publisher.stop(), publisher.stop()]);
  const leases = await db.sql`SELECT 1 FROM events.stream_lease WHERE stream_name = ${stream} AND role = 'publisher'`;
  expect(leases).toHaveLength(0);
});

test('prunes published rows past the retention window, in batches, under the maintenance lease; keeps the rest', async () => {
  const stream = uniqueStreamName('prune');
  await fillOutbox(db, stream, 30);
  // The first 25 rows were created and published 8 days ago. The prune relies
  // on ids following time (published_at of a row >= created_at of every lower
  // id), so the rows earlier tests left below them are made older still.
  const [firstRecent] = await db.sql<{ id: string }[]>`
    SELECT id::text FROM events.outbox_event WHERE stream_name = ${stream} ORDER BY outbox_event.id OFFSET 25 LIMIT 1`;
  await db.sql`UPDATE events.outbox_event SET created_at = now() - interval '9 days' WHERE stream_name <> ${stream} AND id < ${firstRecent!.id}::bigint`;
  await db.sql`UPDATE events.outbox_event SET created_at = now() - interval '8 days 1 minute', published_at = now() - interval '8 days'
    WHERE stream_name = ${stream} AND id < ${firstRecent!.id}::bigint`;
  const { registry, publisher } = startPublisher({ keyPrefix: uniqueRedisPrefix(), pruneIntervalMs: 100, pruneBatchSize: 10 });
  await waitFor(async () => {
    const [row] = await db.sql<{ n: string }[]>`SELECT count(*)::text AS n FROM events.outbox_event WHERE stream_name = ${stream}`;
    return Number(row!.n) === 5;
  }, { description: 'old published rows pruned' });
  const [lease] = await db.sql<{ owner_id: string }[]>`SELECT owner_id FROM events.stream_lease WHERE stream_name = 'stream:events:outbox' AND role = 'maintenance'`;
  expect(lease?.owner_id).toBe(publisher.ownerId);
  const pruned = (await registry.getMetricsAsJSON()).find((m) => m.name === 'petcover_publisher_pruned_rows_total');
  expect((pruned?.values as Array<{ value: number }>)[0]?.value).toBeGreaterThanOrEqual(25);
  await publisher.stop();
  expect(await db.sql`SELECT 1 FROM events.stream_lease WHERE stream_name = 'stream:events:outbox' AND role = 'maintenance'`).toHaveLength(0);
});

test('a row that commits after higher ids were published (commit order is not id order) is still published, once', async () => {
  const stream = uniqueStreamName('late');
  const prefix = uniqueRedisPrefix();
  const { publisher } = startPublisher({ keyPrefix: prefix, batchSize: 5 });
  let commitLate!: () => void;
  const lateCommitted = new Promise<void>((resolve) => (commitLate = resolve));
  let lateId = 0n;
  const late = db.db.transaction(async (tx) => {
    const [event] = await enqueueMany(tx, [{ stream, type: 'Late', partitionKey: 'late', payload: { late: true } }]);
    lateId = event!.id;
    await lateCommitted;
  });
  await waitFor(() => lateId > 0n, { description: 'late row inserted (uncommitted)' });
  await fillOutbox(db, stream, 12);
  await waitFor(async () => (await redis.xlen(`${prefix}${stream}`)) === 12, { description: 'higher ids published' });
  expect(publisher.heldStreams()).toContain(stream);

  commitLate();
  await late;
  await waitFor(async () => (await unpublishedCount(db, stream)) === 0, { description: 'late row published' });
  const entries = await readStream(redis, `${prefix}${stream}`);
  expect(entries).toHaveLength(13);
  expect(entries[12]!.outboxId).toBe(lateId);
  expect(new Set(entries.map((e) => e.eventId)).size).toBe(13);
});

test('NOTIFY wakes the publisher: new streams are leased and new rows drained long before the poll interval', async () => {
  const first = uniqueStreamName('first');
  const later = uniqueStreamName('later');
  const prefix = uniqueRedisPrefix();
  await fillOutbox(db, first, 1);
  // Poll every 60 s and renew every 10 s: only a NOTIFY can explain a prompt publish.
  const { publisher } = startPublisher({ keyPrefix: prefix, pollIntervalMs: 60_000, leaseTtlMs: 30_000 });
  await waitFor(() => publisher.heldStreams().includes(first), { description: 'first stream leased (LISTEN is set up before)' });

  await fillOutbox(db, later, 3);
  await waitFor(async () => (await unpublishedCount(db, later)) === 0, { timeoutMs: 5_000, description: 'a new stream leased and drained on NOTIFY' });
  await fillOutbox(db, later, 2);
  await waitFor(async () => (await unpublishedCount(db, later)) === 0, { timeoutMs: 5_000, description: 'an idle leased stream woken by NOTIFY' });
  expect(await redis.xlen(`${prefix}${later}`)).toBe(5);
});

test('a batch whose published_at UPDATE fails after the next batch was appended is marked from its Redis entries, never appended twice', async () => {
  const stream = uniqueStreamName('markfail');
  const prefix = uniqueRedisPrefix();
  await fillOutbox(db, stream, 30);
  const [first] = await db.sql<{ id: string }[]>`SELECT min(id)::text AS id FROM events.outbox_event WHERE stream_name = ${stream}`;
  // The first UPDATE that marks the first batch fails, once (a sequence is not rolled back with it).
  await db.sql.unsafe(`
    CREATE SEQUENCE mark_failures;
    CREATE FUNCTION fail_first_mark() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
      IF NEW.id = ${Number(first!.id)} AND NEW.published_at IS NOT NULL AND nextval('mark_failures') = 1 THEN
        RAISE EXCEPTION 'injected failure of the first published_at UPDATE';
      END IF;
      RETURN NEW;
    END $$;
    CREATE TRIGGER fail_first_mark BEFORE UPDATE ON events.outbox_event FOR EACH ROW EXECUTE FUNCTION fail_first_mark();`);
  try {
    // Batches of 10: batch 2 is selected and appended while batch 1's UPDATE runs (and fails).
    const { lines } = startPublisher({ keyPrefix: prefix, batchSize: 10 });
    await waitFor(async () => (await unpublishedCount(db, stream)) === 0, { description: 'every row published after the failed UPDATE' });
    const entries = await readStream(redis, `${prefix}${stream}`);
    expect(entries).toHaveLength(30);
    expectIdOrder(entries);
    await expectRecordedEntries(stream, entries);
    expect(lines.some((l) => String(l.msg).startsWith('Redis held entries not yet marked published'))).toBe(true);
    const [failures] = await db.sql<{ n: string }[]>`SELECT last_value::text AS n FROM mark_failures`;
    expect(Number(failures!.n)).toBeGreaterThanOrEqual(1);
    expect(lines.some((l) => JSON.stringify(l).includes('injected failure of the first published_at UPDATE'))).toBe(true);
  } finally {
    await db.sql.unsafe('DROP TRIGGER fail_first_mark ON events.outbox_event; DROP FUNCTION fail_first_mark(); DROP SEQUENCE mark_failures;');
  }
});
