/**
 * The publisher's selects are bounded in rows AND bytes (issue 14): a backlog
 * of large rows comes back a few rows at a time, a single row larger than the
 * budget still comes back alone, and the sizer shrinks the row limit so
 * Postgres does not render payloads it will not return.
 */
import { enqueueMany, type OutboxEventInput } from '../src/index';
import { DrainBatchSizer, selectUnpublishedBatch } from '../src/publisher/statements';
import { createTestDatabase, uniqueStreamName, type TestDatabase } from '../src/testing/index';

let db: TestDatabase;
beforeAll(async () => {
  db = await createTestDatabase();
});
afterAll(async () => {
  await db.drop();
});

const KIB = 1024;

async function fill(stream: string, sizes: number[]): Promise<void> {
  const events: OutboxEventInput[] = sizes.map((size, i) => ({ stream, type: 'Big', partitionKey: `k${i}`, payload: { seq: i, blob: 'x'.repeat(size) } }));
  await db.db.transaction((tx) => enqueueMany(tx, events));
}

test('a byte budget cuts a batch of large rows short and says it is full; small rows fill the row limit', async () => {
  const stream = uniqueStreamName();
  await fill(stream, [100 * KIB, 100 * KIB, 100 * KIB, 100 * KIB, 100 * KIB]);
  const cut = await selectUnpublishedBatch(db.sql, stream, '0', { rows: 100, bytes: 250 * KIB });
  // The first row always; then rows while the bytes before them stay under the budget.
  expect(cut.rows.map((r) => JSON.parse(r.payloadJson).seq)).toEqual([0, 1, 2]);
  expect(cut.full).toBe(true);
  expect(cut.bytes).toBeGreaterThan(300 * KIB);
  const rest = await selectUnpublishedBatch(db.sql, stream, cut.rows[2]!.id, { rows: 100, bytes: 250 * KIB });
  expect(rest.rows.map((r) => JSON.parse(r.payloadJson).seq)).toEqual([3, 4]);
  expect(rest.full).toBe(false);

  const small = uniqueStreamName();
  await fill(small, Array.from({ length: 10 }, () => 10));
  const byRows = await selectUnpublishedBatch(db.sql, small, '0', { rows: 4, bytes: 250 * KIB });
  expect(byRows.rows).toHaveLength(4);
  expect(byRows.full).toBe(true);
  const all = await selectUnpublishedBatch(db.sql, small, '0', { rows: 100, bytes: 250 * KIB });
  expect(all.rows).toHaveLength(10);
  expect(all.full).toBe(false);
});

test('a row larger than the whole budget is returned alone, so the drain never stalls on it', async () => {
  const stream = uniqueStreamName();
  await fill(stream, [200 * KIB, 10]);
  const batch = await selectUnpublishedBatch(db.sql, stream, '0', { rows: 100, bytes: 16 * KIB });
  expect(batch.rows).toHaveLength(1);
  expect(batch.full).toBe(true);
});

test('the sizer shrinks the row limit to what fits at the size of recent rows, and grows it back', async () => {
  const sizer = new DrainBatchSizer({ rows: 1_000, bytes: 1_000 * KIB });
  expect(sizer.bounds).toEqual({ rows: 1_000, bytes: 1_000 * KIB });
  sizer.observe({ rows: new Array(4).fill({}), full: true, bytes: 4 * 250 * KIB });
  expect(sizer.bounds.rows).toBe(5);
  sizer.observe({ rows: new Array(5).fill({}), full: true, bytes: 5 * 100 });
  expect(sizer.bounds.rows).toBe(1_000);
  sizer.observe({ rows: [], full: false, bytes: 0 });
  expect(sizer.bounds.rows).toBe(1_000);
});
