#!/usr/bin/env node
/**
 * `pnpm db:migrate` step of this package: creates the database named in
 * DATABASE_URL if missing, then applies the outbox and domain migrations
 * (the outbox set is a no-op when its own step already ran; listing it lets
 * this command stand alone).
 */
import { createDatabaseIfMissing, outboxMigrations, runMigrations } from '@petcover/outbox';
import { DEFAULT_DATABASE_URL, maskUrlPassword } from '@petcover/service-kit';
import { domainMigrations } from '../migrations';

async function main(): Promise<void> {
  const url = process.env.DATABASE_URL || DEFAULT_DATABASE_URL;
  if (await createDatabaseIfMissing(url)) console.log(`created database ${maskUrlPassword(url)}`);
  await runMigrations(url, [outboxMigrations, domainMigrations]);
  console.log(`domain migrations at head on ${maskUrlPassword(url)}`);
}

main().catch((error: Error) => {
  console.error(error.message);
  process.exit(1);
});
