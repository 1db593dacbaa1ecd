/**
 * Dead letters are listed and replayed in NUMERIC id order (issue 14): the
 * id was sorted as text (…, 9, 8, 7, …, 15, 14, 10), so "newest first" was
 * wrong and `replay --all` left id order.
 */
import { randomUUID } from 'node:crypto';
import { listDeadLetters } from '../src';
import { createTestDatabase, uniqueRedisPrefix, type TestDatabase } from '../src/testing';
import { eventsCliEnv, runEventsCliCaptured } from './events-cli-runner';

let testDb: TestDatabase;
beforeAll(async () => {
  testDb = await createTestDatabase();
});
afterAll(async () => testDb.drop());

const cli = (argv: string[]) => runEventsCliCaptured(argv, eventsCliEnv(testDb.url, uniqueRedisPrefix()));

test('list is newest first by numeric id, pages with a cursor; replay --all goes oldest first by numeric id', async () => {
  // Ids 7..16 cross the 9 → 10 boundary, where text order and numeric order differ.
  await testDb.sql`ALTER SEQUENCE events.dead_letter_id_seq RESTART WITH 7`;
  const ids: string[] = [];
  for (let i = 0; i < 10; i++) {
    const [row] = await testDb.sql<{ id: string }[]>`
      INSERT INTO events.dead_letter (group_name, stream_name, redis_entry_id, event_id, event_type, partition_key, payload, error_message, attempts, first_failed_at)
      VALUES ('order-g', 'stream:order:test', ${`1-${i}`}, ${randomUUID()}, 'T', ${`key-${i}`}, ${JSON.stringify({ n: i })}::jsonb, 'boom', 1, now())
      RETURNING id::text`;
    ids.push(row!.id);
  }
  expect(ids).toEqual(['7', '8', '9', '10', '11', '12', '13', '14', '15', '16']);
  expect((await listDeadLetters(testDb.sql, { group: 'order-g' })).map((l) => l.id)).toEqual([...ids].reverse());
  expect((await listDeadLetters(testDb.sql, { group: 'order-g', oldestFirst: true, limit: 4, after: '8' })).map((l) => l.id)).toEqual(['9', '10', '11', '12']);
  expect((await listDeadLetters(testDb.sql, { group: 'order-g', limit: 3, after: '11' })).map((l) => l.id)).toEqual(['10', '9', '8']);
  const table = await cli(['dlq', 'list', '--group', 'order-g']);
  expect(table.stdout.trim().split('\n').slice(1).map((line) => line.split('\t')[0])).toEqual([...ids].reverse());

  const replay = await cli(['dlq', 'replay', '--all', '--group', 'order-g']);
  expect(replay.code).toBe(0);
  expect([...replay.stdout.matchAll(/replayed dead letter (\d+)/g)].map((m) => m[1])).toEqual(ids);
  // The outbox rows follow the same order.
  const rows = await testDb.sql<{ partition_key: string }[]>`SELECT partition_key FROM events.outbox_event WHERE stream_name = 'stream:order:test' ORDER BY id`;
  expect(rows.map((r) => r.partition_key)).toEqual(ids.map((_, i) => `key-${i}`));
});
