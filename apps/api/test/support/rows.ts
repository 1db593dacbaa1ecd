/** Row counts of a test database, for "nothing was written" assertions. */
import { count, type SQL } from 'drizzle-orm';
import type { PgTable } from 'drizzle-orm/pg-core';
import type { TestDatabase } from '@petcover/outbox/testing';

/** Rows of `table` (matching `where`, when given). */
export async function countRows(database: TestDatabase, table: PgTable, where?: SQL): Promise<number> {
  const [row] = await database.db.select({ n: count() }).from(table).where(where);
  return Number(row?.n ?? 0);
}
