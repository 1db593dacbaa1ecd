/**
 * The publisher's retention prune on real Postgres: it walks the primary key
 * in windows (no index on published_at), deletes what is past the retention,
 * keeps the rest, and stops at the first window that holds a recent row. The
 * rows are written as the pipeline writes them: ids follow created_at, and
 * published_at is never before created_at. The publisher's own prune loop
 * (lease, metric) is tested in publisher.test.ts.
 */
import { prunePublishedRows, PruneCursor, PRUNE_FROM_BOTTOM, type PrunePass } from '../src/publisher/maintenance';
import { createTestDatabase, waitFor, type TestDatabase } from '../src/testing/index';

const DAY_MS = 24 * 3_600_000;
const RETENTION_MS = 7 * DAY_MS;
const STUCK = 'stream:prune:stuck';
const FLOWING = 'stream:prune:flowing';

let db: TestDatabase;

beforeAll(async () => {
  db = await createTestDatabase({ poolSize: 4 });
});
beforeEach(async () => {
  await db.sql`TRUNCATE events.outbox_event`;
});
afterAll(async () => {
  await db.drop();
});

/**
 * Appends `count` rows created from `createdDaysAgo` on, 1 ms apart, in id
 * order; each published `publishedAfterMs` after its creation, or never (null).
 * With `stuckEvery` = n, every n-th row is on the stuck stream and unpublished.
 */
async function appendRows(count: number, options: { createdDaysAgo: number; publishedAfterMs: number | null; stuckEvery?: number }): Promise<void> {
  const stuckEvery = options.stuckEvery ?? 0;
  await db.sql`
    INSERT INTO events.outbox_event (event_id, stream_name, partition_key, event_type, payload, created_at, published_at)
    SELECT gen_random_uuid(), CASE WHEN stuck THEN ${STUCK} ELSE ${FLOWING} END, 'k' || (g % 7), 'T', '{}'::jsonb, created,
           CASE WHEN stuck OR ${options.publishedAfterMs}::float8 IS NULL THEN NULL
                ELSE created + make_interval(secs => ${options.publishedAfterMs}::float8 / 1000) END
    FROM generate_series(1, ${count}::int) g,
         LATERAL (SELECT now() - make_interval(secs => ${options.createdDaysAgo * 86_400}::float8) + g * interval '1 ms' AS created,
                         ${stuckEvery}::int > 0 AND g % ${stuckEvery}::int = 0 AS stuck) r
    ORDER BY g`;
}

async function remaining(): Promise<{ stuck: number; published: number; unpublished: number }> {
  const [row] = await db.sql<{ stuck: number; published: number; unpublished: number }[]>`
    SELECT count(*) FILTER (WHERE stream_name = ${STUCK})::int AS stuck,
           count(*) FILTER (WHERE published_at IS NOT NULL)::int AS published,
           count(*) FILTER (WHERE published_at IS NULL)::int AS unpublished
    FROM events.outbox_event`;
  return row!;
}

async function idAt(offset: number): Promise<string> {
  const [row] = await db.sql<{ id: string }[]>`SELECT id::text FROM events.outbox_event ORDER BY outbox_event.id OFFSET ${offset} LIMIT 1`;
  return row!.id;
}

function prune(windowRows: number, fromId?: string): Promise<PrunePass> {
  return prunePublishedRows(db.sql, { fromId, retentionMs: RETENTION_MS, windowRows });
}

test('deletes the rows published before the retention; keeps newer rows, unpublished rows, and old rows published late', async () => {
  await appendRows(50, { createdDaysAgo: 10, publishedAfterMs: 20 });
  // Created 8 days ago but published only 6 days ago (a backlog then): not due for another day.
  await appendRows(5, { createdDaysAgo: 8, publishedAfterMs: 2 * DAY_MS });
  await appendRows(30, { createdDaysAgo: 3, publishedAfterMs: 20 });
  await appendRows(10, { createdDaysAgo: 0.001, publishedAfterMs: null });
  const firstRecent = await idAt(55);

  const pass = await prune(20);

  expect(pass).toMatchObject({ deleted: 50, aborted: false });
  expect(await remaining()).toEqual({ stuck: 0, published: 35, unpublished: 10 });
  // Windows of 20 rows: 1-20, 21-40 old throughout; 41-60 holds the first row created after the cutoff (row 56).
  expect(pass.windows).toBe(3);
  expect(pass.examined).toBe(60);
  expect(BigInt(pass.resumeFrom)).toBeLessThanOrEqual(BigInt(firstRecent));
  expect(await prune(20)).toMatchObject({ deleted: 0 });
});

test('keeps the old unpublished rows of a stuck stream at the bottom and prunes the published rows above and among them; a resumed pass does not read them again', async () => {
  // 20 to 10 days ago every 4th row is on a stream that never got published (its Redis key broken).
  await appendRows(200, { createdDaysAgo: 20, publishedAfterMs: 20, stuckEvery: 4 });
  await appendRows(100, { createdDaysAgo: 9, publishedAfterMs: 20 });
  await appendRows(60, { createdDaysAgo: 1, publishedAfterMs: 20 });

  const sweep = await prune(25);
  expect(sweep.deleted).toBe(250);
  expect(await remaining()).toEqual({ stuck: 50, published: 60, unpublished: 50 });
  // 300 old rows in 12 windows, then the window holding the first recent row.
  expect(sweep.windows).toBe(13);

  // The next pass starts where this one stopped: one window, and not one stuck row read.
  await appendRows(40, { createdDaysAgo: 0.001, publishedAfterMs: 20 });
  const resumed = await prune(25, sweep.resumeFrom);
  expect(resumed).toMatchObject({ deleted: 0, windows: 1, examined: 25 });

  // A full sweep reads them again, keeps them, and finds nothing else.
  const again = await prune(25);
  expect(again).toMatchObject({ deleted: 0, windows: 3 });
  expect(await remaining()).toEqual({ stuck: 50, published: 100, unpublished: 50 });
});

test('rows that become due below the resume point (a stuck stream published long ago) wait for the next full sweep', async () => {
  await appendRows(100, { createdDaysAgo: 20, publishedAfterMs: 20, stuckEvery: 2 });
  await appendRows(50, { createdDaysAgo: 1, publishedAfterMs: 20 });
  const sweep = await prune(25);
  expect(sweep).toMatchObject({ deleted: 50, windows: 5 });
  expect(await remaining()).toEqual({ stuck: 50, published: 50, unpublished: 50 });

  // The stuck stream was repaired and its rows published, and now they are past the retention
  // (what the clock would show 7 days after the repair).
  await db.sql`UPDATE events.outbox_event SET published_at = now() - interval '8 days' WHERE stream_name = ${STUCK}`;
  expect(await prune(25, sweep.resumeFrom)).toMatchObject({ deleted: 0, windows: 1 });
  expect(await prune(25, PRUNE_FROM_BOTTOM)).toMatchObject({ deleted: 50 });
  expect(await remaining()).toEqual({ stuck: 0, published: 50, unpublished: 0 });
});

test('a table where nothing is due is not walked: the first window holds a recent row and the pass ends there', async () => {
  await appendRows(5_000, { createdDaysAgo: 0.5, publishedAfterMs: 20 });
  expect(await prune(100)).toEqual({ deleted: 0, windows: 1, examined: 100, resumeFrom: PRUNE_FROM_BOTTOM, aborted: false });
  await db.sql`TRUNCATE events.outbox_event`;
  expect(await prune(100)).toEqual({ deleted: 0, windows: 1, examined: 0, resumeFrom: PRUNE_FROM_BOTTOM, aborted: false });
});

test('a row put back in the queue while the prune waits for it is re-checked and kept', async () => {
  await appendRows(10, { createdDaysAgo: 10, publishedAfterMs: 20 });
  await appendRows(10, { createdDaysAgo: 0.001, publishedAfterMs: 20 });
  const requeued = await idAt(4);
  const replay = await db.sql.reserve();
  try {
    // An outbox replay (or a recovery) holds the row, about to set published_at back to NULL.
    await replay`BEGIN`;
    await replay`UPDATE events.outbox_event SET published_at = NULL, redis_entry_id = NULL WHERE id = ${requeued}::bigint`;
    const pruning = prune(50);
    await waitFor(async () => (await db.sql`
      SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE '%DELETE FROM events.outbox_event%'`).length > 0,
    { description: 'the prune waits for the row lock' });
    await replay`COMMIT`;
    expect(await pruning).toMatchObject({ deleted: 9 });
  } finally {
    replay.release();
  }
  const [kept] = await db.sql`SELECT published_at FROM events.outbox_event WHERE id = ${requeued}::bigint`;
  expect(kept).toEqual({ published_at: null });
});

describe('PruneCursor', () => {
  const pass = (resumeFrom: string): PrunePass => ({ deleted: 0, windows: 1, examined: 0, resumeFrom, aborted: false });

  test('sweeps from the bottom first and every interval, resumes in between, and starts over after restart()', () => {
    let clock = 0;
    const cursor = new PruneCursor(3_600_000, () => clock);
    expect(cursor.next()).toEqual({ fromId: PRUNE_FROM_BOTTOM, fullSweep: true });
    cursor.passed(pass('100'));
    clock += 60_000;
    expect(cursor.next()).toEqual({ fromId: '100', fullSweep: false });
    cursor.passed(pass('150'));
    clock += 3_540_000;
    expect(cursor.next()).toEqual({ fromId: PRUNE_FROM_BOTTOM, fullSweep: true });
    cursor.passed(pass('180'));
    clock += 60_000;
    expect(cursor.next()).toEqual({ fromId: '180', fullSweep: false });
    cursor.restart();
    expect(cursor.next()).toEqual({ fromId: PRUNE_FROM_BOTTOM, fullSweep: true });
  });
});
