/**
 * The tiny database interface the outbox needs: a drizzle database over a
 * postgres.js client. Hot statements use the raw client (`sql`); inserts in a
 * caller's transaction use drizzle.
 *
 * Note: drizzle installs its own type parsers on the shared client, so raw
 * `sql` queries return timestamps as strings; wrap them in `new Date()`.
 */
import type { SQL } from 'drizzle-orm';
import { drizzle, type PostgresJsDatabase } from 'drizzle-orm/postgres-js';
import { PgDialect, type PgTransaction } from 'drizzle-orm/pg-core';
import { maskUrlPassword } from '@petcover/service-kit';
import postgres from 'postgres';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type Database = PostgresJsDatabase<any>;
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type Transaction = PgTransaction<any, any, any>;
export type Sql = postgres.Sql;

export interface DatabaseHandle {
  db: Database;
  sql: Sql;
  /** Ends the pool; waits up to `timeoutSeconds` for queries in flight. */
  close(timeoutSeconds?: number): Promise<void>;
}

export interface DatabaseOptions {
  /** Pool size; default 10. */
  max?: number;
  /** Name shown in pg_stat_activity. */
  applicationName?: string;
  /** Seconds to wait for a connection before failing; default 5. */
  connectTimeoutSeconds?: number;
}

/** The longest pause before a pool connects again after failed connects (postgres.js's own cap is 20 s). */
export const RECONNECT_CAP_SECONDS = 2;

/**
 * Seconds postgres.js waits before the next connect after `retries` failed
 * ones in a row: its own curve (3^n / 100 s, times 0.5–1 for jitter), capped
 * at RECONNECT_CAP_SECONDS. With its cap of 20 s, a pool waited 16–20 s for
 * a connection after a 1.5 s outage while the server was already up
 * (docs/notes/2026-11-30/pg-stranded.md); 2 s matches the Redis clients'
 * reconnect cap. The count resets on the first successful connect.
 */
export function reconnectDelaySeconds(retries: number): number {
  return (0.5 + Math.random() / 2) * Math.min(3 ** retries / 100, RECONNECT_CAP_SECONDS);
}

export function connectDatabase(url: string, options: DatabaseOptions = {}): DatabaseHandle {
  const sql = postgres(url, {
    max: options.max ?? 10,
    connect_timeout: options.connectTimeoutSeconds ?? 5,
    backoff: reconnectDelaySeconds,
    onnotice: () => undefined,
    connection: { application_name: options.applicationName ?? 'petcover' },
  });
  const db = drizzle(sql);
  return { db, sql, close: (timeout = 5) => sql.end({ timeout }) };
}

/** Replaces the database name of a Postgres URL. */
export function withDatabaseName(url: string, database: string): string {
  const parsed = new URL(url);
  parsed.pathname = `/${encodeURIComponent(database)}`;
  return parsed.toString();
}

export function databaseNameOf(url: string): string {
  const name = decodeURIComponent(new URL(url).pathname.replace(/^\//, ''));
  if (!name) throw new Error(`database URL names no database: ${maskUrlPassword(url)}`);
  return name;
}

const dialect = new PgDialect();

/**
 * The postgres.js client under a drizzle database or transaction (drizzle
 * keeps it as `session.client`), or undefined should a drizzle version keep
 * it elsewhere.
 */
function postgresClientOf(tx: Transaction | Database): postgres.Sql | undefined {
  const client = (tx as unknown as { session?: { client?: postgres.Sql } }).session?.client;
  return typeof client?.unsafe === 'function' ? client : undefined;
}

/** Whether executePrepared reaches `tx`'s postgres.js client (and so hands statements to the connection in call order). */
export function pipelinesOn(tx: Transaction | Database): boolean {
  return postgresClientOf(tx) !== undefined;
}

/**
 * Runs `query` in `tx` as a PREPARED statement of its postgres.js client, and
 * hands it to the connection now (in the next microtask), not when awaited.
 *
 * Why: drizzle sends its statements unprepared, and postgres.js describes an
 * unprepared statement with parameters before sending it: two round trips,
 * and nothing queued behind it on the connection leaves until the first one
 * is back, so statements issued together do not pipeline. Prepared (cached
 * per connection by postgres.js; described once, on first use), a statement
 * is one round trip and pipelines. For the hot statements only: each
 * distinct text stays prepared on every connection for its lifetime.
 *
 * Rows come back as from `tx.execute` (same client, same type parsers).
 */
export function executePrepared<Row extends object = Record<string, unknown>>(tx: Transaction | Database, query: SQL): Promise<Row[]> {
  const client = postgresClientOf(tx);
  if (!client) return tx.execute(query) as unknown as Promise<Row[]>;
  const { sql: text, params } = dialect.sqlToQuery(query);
  return client.unsafe<Row[]>(text, params as postgres.ParameterOrJSON<never>[], { prepare: true }).execute();
}
