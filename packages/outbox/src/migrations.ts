/**
 * Each package owns a set of drizzle-kit migrations and its own bookkeeping
 * table in schema `drizzle`; `pnpm db:migrate` applies the sets in dependency
 * order (outbox first).
 */
import fs from 'node:fs';
import path from 'node:path';
import { migrate } from 'drizzle-orm/postgres-js/migrator';
import postgres from 'postgres';
import { maskUrlPassword } from '@petcover/service-kit';
import { connectDatabase, databaseNameOf, withDatabaseName, type Sql } from './db';

export interface MigrationSet {
  /** Short name, e.g. `outbox`. */
  name: string;
  /** Folder written by drizzle-kit (holds meta/_journal.json). */
  folder: string;
  /** Bookkeeping table in schema `drizzle`. */
  table: string;
}

export const MIGRATIONS_SCHEMA = 'drizzle';

/** The outbox's own migrations (schema `events`). */
export const outboxMigrations: MigrationSet = {
  name: 'outbox',
  folder: path.join(__dirname, '..', 'drizzle'),
  table: '__migrations_outbox',
};

interface JournalEntry {
  idx: number;
  when: number;
  tag: string;
}

export function readJournal(set: MigrationSet): JournalEntry[] {
  const file = path.join(set.folder, 'meta', '_journal.json');
  return (JSON.parse(fs.readFileSync(file, 'utf8')) as { entries: JournalEntry[] }).entries;
}

/**
 * Creates the database named in `url` when it does not exist, through the
 * server's `postgres` maintenance database. Idempotent; safe to race.
 */
export async function createDatabaseIfMissing(url: string): Promise<boolean> {
  const name = databaseNameOf(url);
  const admin = postgres(withDatabaseName(url, 'postgres'), { max: 1, onnotice: () => undefined, connect_timeout: 5 });
  try {
    const [exists] = await admin`SELECT 1 FROM pg_database WHERE datname = ${name}`;
    if (exists) return false;
    try {
      await admin.unsafe(`CREATE DATABASE "${name.replace(/"/g, '""')}"`);
      return true;
    } catch (error) {
      if ((error as { code?: string }).code === '42P04') return false; // created by a concurrent run
      throw error;
    }
  } finally {
    await admin.end({ timeout: 5 });
  }
}

/** Advisory lock key serialising concurrent migration runs (any stable number). */
const MIGRATION_LOCK_KEY = 7_311_874_021;

/**
 * Applies every pending migration of each set, in the order given. A second
 * run is a no-op. Concurrent runs are serialised by an advisory lock.
 */
export async function runMigrations(url: string, sets: readonly MigrationSet[]): Promise<void> {
  const { db, sql, close } = connectDatabase(url, { max: 1, applicationName: 'petcover-migrate' });
  try {
    await sql`SELECT pg_advisory_lock(${MIGRATION_LOCK_KEY})`;
    try {
      for (const set of sets) {
        await migrate(db, { migrationsFolder: set.folder, migrationsTable: set.table, migrationsSchema: MIGRATIONS_SCHEMA });
      }
    } finally {
      await sql`SELECT pg_advisory_unlock(${MIGRATION_LOCK_KEY})`;
    }
  } catch (error) {
    throw new Error(`migrating ${maskUrlPassword(url)} failed: ${(error as Error).message}`, { cause: error });
  } finally {
    await close();
  }
}

export interface MigrationStatus {
  set: string;
  applied: number;
  latest: number;
  atHead: boolean;
}

/**
 * Whether each set's last migration has been applied. The readiness check
 * uses it: an app must not serve against a schema older than its code.
 */
export async function migrationStatus(sql: Sql, sets: readonly MigrationSet[]): Promise<MigrationStatus[]> {
  const statuses: MigrationStatus[] = [];
  for (const set of sets) {
    const journal = readJournal(set);
    const latest = journal.length === 0 ? 0 : Math.max(...journal.map((e) => e.when));
    let applied = 0;
    const [table] = await sql`SELECT to_regclass(${`${MIGRATIONS_SCHEMA}.${set.table}`}) AS oid`;
    if (table?.oid) {
      const [row] = await sql.unsafe(`SELECT COALESCE(MAX(created_at), 0)::bigint AS applied FROM "${MIGRATIONS_SCHEMA}"."${set.table}"`);
      applied = Number(row?.applied ?? 0);
    }
    statuses.push({ set: set.name, applied, latest, atHead: applied >= latest });
  }
  return statuses;
}

export async function isAtHead(sql: Sql, sets: readonly MigrationSet[]): Promise<boolean> {
  return (await migrationStatus(sql, sets)).every((s) => s.atHead);
}
