/**
 * The tiny database interface the outbox needs: a drizzle database over a
 * postgres.js client. Hot statements use the raw client (`sql`); inserts in a
 * caller's transaction use drizzle.
 *
 * Note: drizzle installs its own type parsers on the shared client, so raw
 * `sql` queries return timestamps as strings; wrap them in `new Date()`.
 */
import { drizzle, type PostgresJsDatabase } from 'drizzle-orm/postgres-js';
import type { PgTransaction } from 'drizzle-orm/pg-core';
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

export function connectDatabase(url: string, options: DatabaseOptions = {}): DatabaseHandle {
  const sql = postgres(url, {
    max: options.max ?? 10,
    connect_timeout: options.connectTimeoutSeconds ?? 5,
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
