/**
 * postgres.js (3.4.7, patched in patches/postgres@3.4.7.patch) when a server
 * session ends under a transaction or a reservation, as on `pg_ctl stop -m
 * fast` (every backend gets FATAL 57P01, then its socket closes) or
 * `pg_terminate_backend`. Every call must settle, and with its own result.
 *
 * The mechanism found (docs/notes/2026-11-30/pg-stranded.md): after a
 * transaction's or reservation's connection closes, the pool reconnects that
 * same connection object for a queued query, while the transaction callback
 * (or the reservation's owner) still holds it. Unpatched, a query it issues
 * then is written into the new session: dropped at its startup (never
 * settled: the consumer's `await fence` hung forever), swapped with the queued
 * query's result, or run outside any transaction. A reserve() queued at that
 * moment was dropped (porsager/postgres#1195), and release() of a reservation
 * whose connection had died handed a socketless connection to the pool.
 *
 * Each test ends its backend with pg_terminate_backend (the same FATAL 57P01
 * a fast stop sends) on a dedicated server, and a new session is told apart
 * by the TimeZone it reports: the database's default is changed after the
 * pool's first session, so postgres.js calls `onparameter` while the
 * reconnect's startup messages come in. That is the moment the late query is
 * issued, without any timing luck. No test sleeps: every wait is a deadline.
 */
import postgres from 'postgres';
import { drizzle } from 'drizzle-orm/postgres-js';
import { sql as drizzleSql } from 'drizzle-orm';
import { answeredWithin } from '../src/backoff';
import { executePrepared } from '../src/db';
import { commitFenced } from '../src/consumer/inbox';
import { outboxMigrations, runMigrations } from '../src/migrations';
import { startDedicatedPostgres, type DedicatedPostgres } from '../src/testing';
import { waitFor } from '../src/testing/wait';

/** Far above a local round trip; a call not settled by then never will be. */
const SETTLE_MS = 10_000;

let server: DedicatedPostgres;
let admin: postgres.Sql;
let zone = 0;

beforeAll(async () => {
  server = await startDedicatedPostgres();
  admin = postgres(server.url, { max: 1, onnotice: () => undefined });
  await runMigrations(server.url, [outboxMigrations]);
}, 60_000);

afterAll(async () => {
  await admin?.end({ timeout: 1 });
  await server?.destroy();
});

/**
 * A pool of one connection whose next session announces itself: the
 * `startup` that `armNextSession()` returns resolves while that session's
 * startup messages are being read, before it is ready for queries.
 */
async function poolWatchingReconnects(): Promise<{ sql: postgres.Sql; armNextSession: () => Promise<{ startup: Promise<void> }> }> {
  let onStartup: (() => void) | undefined;
  const sql = postgres(server.url, {
    max: 1,
    onnotice: () => undefined,
    onparameter: (name) => {
      if (name === 'TimeZone' && onStartup) {
        const fire = onStartup;
        onStartup = undefined;
        fire();
      }
    },
  });
  await sql`SELECT 1`; // the first session, with the current default TimeZone
  return {
    sql,
    async armNextSession() {
      zone += 1;
      // New sessions report another TimeZone than the pool has seen.
      await admin.unsafe(`ALTER DATABASE postgres SET timezone TO '${zone % 2 ? 'Pacific/Chatham' : 'Asia/Kathmandu'}'`);
      return { startup: new Promise<void>((resolve) => (onStartup = resolve)) };
    },
  };
}

async function terminate(pid: number): Promise<void> {
  await admin`SELECT pg_terminate_backend(${pid})`;
}

test('a transaction query issued after its session ended, while the pool reconnects for a queued query, fails with CONNECTION_CLOSED; the queued query gets its own rows', async () => {
  const { sql, armNextSession } = await poolWatchingReconnects();
  try {
    const { startup: nextSession } = await armNextSession();
    let pid: number | undefined;
    let late: Promise<unknown> | undefined;
    const transaction = sql.begin(async (tx) => {
      pid = (await tx<{ pid: number }[]>`SELECT pg_backend_pid() AS pid`)[0]!.pid;
      await nextSession; // busy elsewhere (a handler, Redis) when the session ends
      late = tx`SELECT 'late' AS late`;
      return late;
    });
    transaction.catch(() => undefined);
    await waitFor(() => pid, { description: 'the transaction to start' });
    const queued = sql`SELECT 'queued' AS queued`.execute(); // waits: the pool's only connection is in the transaction
    await terminate(pid!);
    await expect(answeredWithin(transaction, SETTLE_MS, 'begin()')).rejects.toMatchObject({ code: 'CONNECTION_CLOSED' });
    await waitFor(() => late !== undefined, { description: 'the transaction callback to issue its late query' });
    await expect(answeredWithin(late!, SETTLE_MS, 'the late transaction query')).rejects.toMatchObject({ code: 'CONNECTION_CLOSED' });
    expect(await answeredWithin(queued, SETTLE_MS, 'the queued query')).toEqual([{ queued: 'queued' }]);
    expect(await answeredWithin(sql`SELECT 'after' AS after`, SETTLE_MS, 'a query after')).toEqual([{ after: 'after' }]);
  } finally {
    await sql.end({ timeout: 1 });
  }
});

test('the same across `pg_ctl stop -m fast` and a restart: the transaction callback outlives the server, its late query fails, the queued query gets its own rows', async () => {
  const { sql, armNextSession } = await poolWatchingReconnects();
  try {
    const { startup: nextSession } = await armNextSession();
    let started = false;
    let late: Promise<unknown> | undefined;
    const transaction = sql.begin(async (tx) => {
      await tx`SELECT 1`;
      started = true;
      await nextSession; // a handler that outlasts the restart
      late = tx`SELECT 'late' AS late`;
      return late;
    });
    transaction.catch(() => undefined);
    await waitFor(() => started, { description: 'the transaction to start' });
    const queued = sql`SELECT 'queued' AS queued`.execute();
    await server.restart(); // FATAL 57P01 on every backend, then down, then up again
    await expect(answeredWithin(transaction, SETTLE_MS, 'begin()')).rejects.toMatchObject({ code: 'CONNECTION_CLOSED' });
    await waitFor(() => late !== undefined, { description: 'the transaction callback to issue its late query' });
    await expect(answeredWithin(late!, SETTLE_MS, 'the late transaction query')).rejects.toMatchObject({ code: 'CONNECTION_CLOSED' });
    expect(await answeredWithin(queued, SETTLE_MS, 'the queued query')).toEqual([{ queued: 'queued' }]);
    expect(await answeredWithin(sql`SELECT 'after' AS after`.execute(), SETTLE_MS, 'a query after')).toEqual([{ after: 'after' }]);
  } finally {
    await sql.end({ timeout: 1 });
  }
});

test('a commitFenced whose backend is terminated while its work runs rejects; its fence, issued when the work ends, leaves the next query on that connection alone', async () => {
  const { sql, armNextSession } = await poolWatchingReconnects();
  const db = drizzle(sql);
  try {
    const { startup: nextSession } = await armNextSession();
    let pid: number | undefined;
    let workEnded = false;
    const lease = { streamName: 's', role: 'consumer:g' as const, ownerId: 'o', fencingToken: '1', group: 'g' };
    const committing = commitFenced(db, lease, async (tx) => {
      pid = (await executePrepared<{ pid: number }>(tx, drizzleSql`SELECT pg_backend_pid() AS pid`))[0]!.pid;
      await nextSession; // the handler still runs when the backend is terminated, and ends during the reconnect
      workEnded = true;
      return 'done';
    });
    committing.catch(() => undefined);
    await waitFor(() => pid, { description: 'the work to start' });
    // Another worker's query, queued behind the transaction: the pool reconnects for it.
    const queued = sql`SELECT 'queued' AS queued`.execute();
    await terminate(pid!);
    await expect(answeredWithin(committing, SETTLE_MS, 'commitFenced')).rejects.toMatchObject({ code: 'CONNECTION_CLOSED' });
    await waitFor(() => workEnded, { description: 'the work to end (it then issues the fence and COMMIT)' });
    expect(await answeredWithin(queued, SETTLE_MS, 'the queued query')).toEqual([{ queued: 'queued' }]);
    expect(await answeredWithin(sql`SELECT 'after' AS after`.execute(), SETTLE_MS, 'a query after')).toEqual([{ after: 'after' }]);
  } finally {
    await sql.end({ timeout: 1 });
  }
});

test('a reserve() queued when the connection it waits for is terminated is served once the pool reconnects (porsager/postgres#1195)', async () => {
  const sql = postgres(server.url, { max: 1, onnotice: () => undefined });
  let release!: () => void;
  const held = new Promise<void>((resolve) => (release = resolve));
  try {
    let pid: number | undefined;
    const transaction = sql.begin(async (tx) => {
      pid = (await tx<{ pid: number }[]>`SELECT pg_backend_pid() AS pid`)[0]!.pid;
      await held;
    });
    transaction.catch(() => undefined);
    await waitFor(() => pid, { description: 'the transaction to start' });
    const reserving = sql.reserve(); // waits for the only connection
    await terminate(pid!);
    await expect(answeredWithin(transaction, SETTLE_MS, 'begin()')).rejects.toMatchObject({ code: 'CONNECTION_CLOSED' });
    const reserved = await answeredWithin(reserving, SETTLE_MS, 'the queued reserve()');
    expect(await answeredWithin(reserved`SELECT 'reserved' AS r`, SETTLE_MS, 'a query on the reservation')).toEqual([{ r: 'reserved' }]);
    reserved.release();
    expect(await answeredWithin(sql`SELECT 'after' AS after`, SETTLE_MS, 'a query after')).toEqual([{ after: 'after' }]);
  } finally {
    release();
    await sql.end({ timeout: 1 });
  }
});

test('release() of a reservation whose session ended leaves the pool working (as the node heartbeat does after a restart)', async () => {
  let closes = 0;
  const sql = postgres(server.url, { max: 1, onnotice: () => undefined, onclose: () => (closes += 1) });
  try {
    const reserved = await sql.reserve();
    const pid = (await reserved<{ pid: number }[]>`SELECT pg_backend_pid() AS pid`)[0]!.pid;
    await terminate(pid);
    await waitFor(() => closes > 0, { description: 'the pool to see the connection close' });
    await expect(answeredWithin(reserved`SELECT 1`, SETTLE_MS, 'a query on the dead reservation')).rejects.toMatchObject({ code: 'CONNECTION_CLOSED' });
    reserved.release();
    for (const i of [1, 2, 3]) {
      expect(await answeredWithin(sql`SELECT ${i}::int AS i`, SETTLE_MS, `pool query ${i}`)).toEqual([{ i }]);
    }
  } finally {
    await sql.end({ timeout: 1 });
  }
});
