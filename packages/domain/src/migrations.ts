/**
 * The domain's migration set (schema `enrollment`, seeded plan catalogue),
 * applied after the outbox's by `pnpm db:migrate`.
 */
import path from 'node:path';
import type { MigrationSet } from '@petcover/outbox';

export const domainMigrations: MigrationSet = {
  name: 'domain',
  folder: path.join(__dirname, '..', 'drizzle'),
  table: '__migrations_domain',
};
