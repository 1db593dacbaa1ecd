/**
 * A pool after a Postgres outage: postgres.js waits longer before each
 * reconnect after failed ones (3^n / 100 s), up to 20 s by its default. A
 * pool that failed to connect a few times during an outage then waited up
 * to 20 s with the server already back (seen: 16–20 s after a 1.5 s outage).
 * connectDatabase caps the pause at RECONNECT_CAP_SECONDS. A dedicated server
 * is stopped for real (pg_ctl stop -m fast) and started again.
 */
import { answeredWithin } from '../src/backoff';
import { connectDatabase, reconnectDelaySeconds, RECONNECT_CAP_SECONDS, type DatabaseHandle } from '../src/db';
import { startDedicatedPostgres, type DedicatedPostgres } from '../src/testing';

jest.setTimeout(90_000);

let server: DedicatedPostgres;
let handle: DatabaseHandle | undefined;

beforeAll(async () => {
  server = await startDedicatedPostgres();
});
afterAll(async () => {
  await handle?.close(1);
  await server?.destroy();
});

test('the pause before a reconnect follows postgres.js\'s curve and never exceeds the cap', () => {
  for (let retries = 0; retries < 12; retries++) {
    for (let i = 0; i < 50; i++) {
      const delay = reconnectDelaySeconds(retries);
      expect(delay).toBeGreaterThanOrEqual(0.5 * Math.min(3 ** retries / 100, RECONNECT_CAP_SECONDS));
      expect(delay).toBeLessThanOrEqual(RECONNECT_CAP_SECONDS);
    }
  }
});

test('a pool whose connects failed during an outage is in use again within the cap of the server\'s return', async () => {
  handle = connectDatabase(server.url, { max: 1, connectTimeoutSeconds: 2 });
  await handle.sql`SELECT 1`;
  await server.stop();
  // Seven refused connects in a row: by postgres.js's own curve the next pause would be 11–22 s.
  // (The first query may fail with the shutdown (FATAL 57P01, or CONNECTION_CLOSED) on the connection it closed.)
  let refused = 0;
  for (let attempt = 0; refused < 7; attempt++) {
    expect(attempt).toBeLessThan(12);
    const error = await handle.sql`SELECT 1`.then(() => null, (e: unknown) => e as { code?: string });
    expect(error?.code).toMatch(/^(ECONNREFUSED|57P01|CONNECTION_CLOSED)$/);
    if (error?.code === 'ECONNREFUSED') refused++;
  }
  await server.start();
  const [row] = await answeredWithin(handle.sql<{ one: number }[]>`SELECT 1 AS one`, (RECONNECT_CAP_SECONDS + 2) * 1000, 'the first query after the restart');
  expect(row!.one).toBe(1);
});
