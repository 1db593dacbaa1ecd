/**
 * The mark-published statement (recordEntries) must cost per row marked, not
 * per row still queued: on a backlog whose statistics are stale (analyzed
 * while the outbox was empty, as the bench's reset does and as any outbox
 * looks to the planner right after an outage filled it), every plan of a
 * connection, the first five custom ones and the generic one after them,
 * reaches the outbox by unique-index probes. Before, the custom plans hashed
 * the batch against the whole backlog (a bitmap scan of
 * outbox_event_unpublished_idx) and a batch of 500 took 100-250 ms at a
 * 200,000-row backlog. The requeue after a Redis data loss (requeueRows)
 * had the same flaw on published rows: a sequential scan of the whole outbox
 * per batch. The plans are read with auto_explain on the statements as the
 * publisher sends them.
 */
import postgres from 'postgres';
import { acquireLease } from '../src/lease/lease';
import { recordEntries, requeueRows } from '../src/publisher/statements';
import { createTestDatabase, uniqueStreamName, type TestDatabase } from '../src/testing/index';

let db: TestDatabase;
beforeAll(async () => {
  db = await createTestDatabase({ poolSize: 2 });
});
afterAll(async () => {
  await db.drop();
});

const BACKLOG = 20_000;
const BATCH = 500;

test('every plan of the mark probes the outbox per row, however large the backlog behind stale statistics', async () => {
  const stream = uniqueStreamName('markplan');
  await db.sql`ANALYZE events.outbox_event`; // statistics of an empty outbox
  await db.sql`
    INSERT INTO events.outbox_event (event_id, stream_name, partition_key, event_type, payload)
    SELECT gen_random_uuid(), ${stream}, 'k' || (g % 64), 'T', jsonb_build_object('seq', g)
    FROM generate_series(1, ${BACKLOG}::int) g ORDER BY g`;
  const ownerId = 'mark-plan-test';
  const grant = await acquireLease(db.sql, { streamName: stream, role: 'publisher', ownerId, ttlMs: 60_000 });
  expect(grant).not.toBeNull();

  // One connection, so its plan cache goes from custom plans to the generic one as the publisher's do.
  const plans: string[] = [];
  const sql = postgres(db.url, { max: 1, onnotice: (notice) => plans.push(String(notice.message)) });
  try {
    await sql`LOAD 'auto_explain'`;
    await sql`SET auto_explain.log_min_duration = 0`;
    await sql`SET auto_explain.log_level = 'notice'`;
    await sql`SET auto_explain.log_analyze = on`;
    const rows = await db.sql<{ id: string; event_id: string }[]>`
      SELECT id::text, event_id::text FROM events.outbox_event WHERE stream_name = ${stream} ORDER BY id LIMIT ${BATCH * 8}`;
    for (let batch = 0; batch < 8; batch++) {
      const slice = rows.slice(batch * BATCH, (batch + 1) * BATCH);
      plans.length = 0;
      const result = await recordEntries(sql, stream, ownerId, grant!.fencingToken, {
        ids: slice.map((r) => r.id),
        eventIds: slice.map((r) => r.event_id),
        entryIds: slice.map((_, i) => `${1_700_000_000_000 + batch}-${i}`),
        heads: [{ redisKey: `${stream}:test`, lastEntryId: `${1_700_000_000_000 + batch}-${BATCH - 1}`, lastOutboxId: slice[slice.length - 1]!.id }],
      });
      expect(result).toEqual({ leaseHeld: true, updated: BATCH });
      const plan = plans.find((p) => p.includes('Update on outbox_event'));
      expect(plan).toBeDefined();
      // How the UPDATE reaches outbox_event: one index probe per batch row, by the primary key or event_id.
      const scans = plan!.split('\n').filter((line) => / on outbox_event o\b/.test(line) && !/Update on/.test(line));
      expect(scans).toHaveLength(1);
      expect(scans[0]).toMatch(/Index Scan using outbox_event_(pkey|event_id_key) on outbox_event o .* loops=500\)/);
    }
  } finally {
    await sql.end({ timeout: 5 });
  }
  const [left] = await db.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM events.outbox_event WHERE stream_name = ${stream} AND published_at IS NULL`;
  expect(left!.n).toBe(BACKLOG - 8 * BATCH);
});

test('every plan of the requeue (Redis lost entries) probes the outbox per row too', async () => {
  const stream = uniqueStreamName('requeueplan');
  await db.sql`ANALYZE events.outbox_event`;
  // A large published stream, as after a drain: what a Redis restored from an older snapshot makes the publisher requeue.
  await db.sql`
    INSERT INTO events.outbox_event (event_id, stream_name, partition_key, event_type, payload, published_at, redis_entry_id)
    SELECT gen_random_uuid(), ${stream}, 'k' || (g % 64), 'T', jsonb_build_object('seq', g), now(), '1700000000000-' || g
    FROM generate_series(1, ${BACKLOG}::int) g ORDER BY g`;
  const ownerId = 'requeue-plan-test';
  const grant = await acquireLease(db.sql, { streamName: stream, role: 'publisher', ownerId, ttlMs: 60_000 });
  const plans: string[] = [];
  const sql = postgres(db.url, { max: 1, onnotice: (notice) => plans.push(String(notice.message)) });
  try {
    await sql`LOAD 'auto_explain'`;
    await sql`SET auto_explain.log_min_duration = 0`;
    await sql`SET auto_explain.log_level = 'notice'`;
    await sql`SET auto_explain.log_analyze = on`;
    const rows = await db.sql<{ id: string; event_id: string }[]>`
      SELECT id::text, event_id::text FROM events.outbox_event WHERE stream_name = ${stream} ORDER BY id LIMIT ${BATCH * 8}`;
    for (let batch = 0; batch < 8; batch++) {
      const slice = rows.slice(batch * BATCH, (batch + 1) * BATCH);
      plans.length = 0;
      const result = await requeueRows(sql, stream, ownerId, grant!.fencingToken, { ids: slice.map((r) => r.id), eventIds: slice.map((r) => r.event_id) });
      expect(result).toEqual({ leaseHeld: true, updated: BATCH });
      const plan = plans.find((p) => p.includes('Update on outbox_event'));
      expect(plan).toBeDefined();
      const scans = plan!.split('\n').filter((line) => / on outbox_event o\b/.test(line) && !/Update on/.test(line));
      expect(scans).toHaveLength(1);
      expect(scans[0]).toMatch(/Index Scan using outbox_event_(pkey|event_id_key) on outbox_event o .* loops=500\)/);
    }
  } finally {
    await sql.end({ timeout: 5 });
  }
});
