#!/usr/bin/env node
/**
 * `check-pet-enrollment --pet-id <uuid> --owner <uuid> [--wait <seconds>]`
 * Prints `RESULT: ENROLLED` (exit 0) or `RESULT: NOT_ENROLLED` (exit 1);
 * with --wait, polls until enrolled or the time is up. Bad arguments or a pet
 * unknown for that owner: a one-line error, exit 64. Reads the database only.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { findEnrollmentOfPet } from '@petcover/domain';
import { connectDatabase } from '@petcover/outbox';
import { ConfigError, EXIT_CONFIG } from '@petcover/service-kit';
import { readApiEnv } from '../env';
import { EXIT_USAGE, parseFlags, requireUuid, secondsFlag, UsageError } from './command-line';

const USAGE = 'usage: check-pet-enrollment --pet-id <uuid> --owner <uuid> [--wait <seconds>]';
/** Poll period with --wait: fast enough for a demo, cheap for the database. */
const POLL_INTERVAL_MS = 250;

async function main(): Promise<number> {
  const flags = parseFlags(process.argv.slice(2), { values: ['pet-id', 'owner', 'wait'], usage: USAGE });
  const petId = requireUuid(flags, 'pet-id');
  const owner = requireUuid(flags, 'owner');
  const waitSeconds = secondsFlag(flags, 'wait', 0);
  const env = readApiEnv();

  const database = connectDatabase(env.DATABASE_URL, { max: 1, applicationName: 'petcover-check-pet-enrollment' });
  try {
    const deadline = Date.now() + waitSeconds * 1000;
    for (;;) {
      const found = await findEnrollmentOfPet(database.db, petId, owner);
      if (!found) throw new UsageError(`no pet ${petId} for owner ${owner}`);
      if (found.enrollment) {
        console.log(`pet_id: ${petId}`);
        console.log(`contract_id: ${found.enrollment.contractId}`);
        console.log(`enrolled_at: ${found.enrollment.enrolledAt.toISOString()}`);
        console.log('RESULT: ENROLLED');
        return 0;
      }
      if (Date.now() >= deadline) {
        console.log(`pet_id: ${petId}`);
        console.log(`pet_status: ${found.pet.status}`);
        console.log('RESULT: NOT_ENROLLED');
        return 1;
      }
      await sleep(Math.min(POLL_INTERVAL_MS, Math.max(0, deadline - Date.now())));
    }
  } finally {
    await database.close();
  }
}

main().then(
  (code) => process.exit(code),
  (error: Error) => {
    if (error instanceof UsageError) {
      console.error(`check-pet-enrollment: ${error.message}\n${USAGE}`);
      process.exit(EXIT_USAGE);
    }
    if (error instanceof ConfigError) {
      console.error(`check-pet-enrollment: ${error.message}`);
      process.exit(EXIT_CONFIG);
    }
    console.error(`check-pet-enrollment: ${error.message}`);
    process.exit(2);
  },
);
