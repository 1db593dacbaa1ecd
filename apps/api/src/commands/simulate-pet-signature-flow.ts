#!/usr/bin/env node
/**
 * `simulate-pet-signature-flow --owner-global-user-id <uuid> [--timeout <s>] [--no-wait]`
 *
 * Drives the whole enrollment headless: profile, draft, plan, package (real
 * PDFs, manual provider), then the three provider callbacks (sent, signed,
 * all signed), each signed with SIGNATURE_API_KEY and passed through the same
 * verification and recording code as `POST /v1/webhooks/signature`. Then
 * waits until the consumer has turned the signatures into a contract, whose
 * ContractCreated row is in the outbox. Prints pet_id, approval_request_id,
 * contract_id. Needs events-publisher and events-consumer running (unless
 * --no-wait).
 */
// First: tracing patches modules as they load.
import { tracing } from '../instrument';
import { setTimeout as sleep } from 'node:timers/promises';
import { and, eq } from 'drizzle-orm';
import {
  addPet,
  choosePlan,
  confirmDraft,
  contract,
  ContractCreated,
  createLocalDocumentStore,
  createManualSignatureProvider,
} from '@petcover/domain';
import { connectDatabase, outboxEvent } from '@petcover/outbox';
import { ConfigError, EXIT_CONFIG } from '@petcover/service-kit';
import { traceCommand } from '@petcover/service-kit/tracing';
import { readApiEnv } from '../env';
import { signManually } from '../manual-signing';
import { EXIT_USAGE, parseFlags, requireUuid, secondsFlag, UsageError } from './command-line';

const USAGE = 'usage: simulate-pet-signature-flow --owner-global-user-id <uuid> [--plan <code>] [--timeout <seconds>] [--no-wait]';
const POLL_INTERVAL_MS = 200;

async function main(): Promise<number> {
  const flags = parseFlags(process.argv.slice(2), { values: ['owner-global-user-id', 'plan', 'timeout'], booleans: ['no-wait'], usage: USAGE });
  const owner = requireUuid(flags, 'owner-global-user-id');
  const planCode = (flags.get('plan') as string | undefined) ?? 'plus';
  const timeoutSeconds = secondsFlag(flags, 'timeout', 60);
  const env = readApiEnv();

  const database = connectDatabase(env.DATABASE_URL, { max: 2, applicationName: 'petcover-simulate' });
  try {
    // The manual provider (development only; readApiEnv refused strict mode above) confirms every request.
    const signatureProvider = createManualSignatureProvider();
    const wizard = {
      db: database.db,
      documentStore: createLocalDocumentStore(env.DOCUMENT_STORE_DIR),
      signatureProvider,
      autoEnroll: false,
    };
    const { pet, draft } = await addPet(database.db, owner, { name: 'Simulated Pet', species: 'dog', breed: 'Beagle', birthDate: '2021-05-04' });
    await choosePlan(database.db, owner, draft.id, planCode);
    const confirmation = await confirmDraft(wizard, owner, draft.id, { name: 'Simulated Owner', email: 'simulated.owner@example.com' });
    const request = confirmation.view.approvalRequest;
    if (!request?.providerRequestId) throw new Error(`confirmation of draft ${draft.id} produced no dispatched approval request`);
    console.log(`pet_id: ${pet.id}`);
    console.log(`draft_id: ${draft.id}`);
    console.log(`approval_request_id: ${request.id}`);

    const callbacks = await signManually(database.db, { id: request.id, providerRequestId: request.providerRequestId }, { apiKey: env.SIGNATURE_API_KEY, provider: signatureProvider });
    for (const { eventType, outcome } of callbacks) console.log(`callback ${eventType}: ${outcome.outcome}`);
    if (flags.get('no-wait')) return 0;

    const deadline = Date.now() + timeoutSeconds * 1000;
    for (;;) {
      const [created] = await database.db
        .select({ contractId: contract.id })
        .from(contract)
        .where(eq(contract.packageId, confirmation.view.package?.id as string));
      const [outboxRow] = created
        ? await database.db
            .select({ id: outboxEvent.id })
            .from(outboxEvent)
            .where(and(eq(outboxEvent.partitionKey, created.contractId), eq(outboxEvent.eventType, ContractCreated.type)))
        : [];
      if (created && outboxRow) {
        console.log(`contract_id: ${created.contractId}`);
        console.log(`ContractCreated in the outbox (id ${outboxRow.id})`);
        return 0;
      }
      if (Date.now() >= deadline) {
        console.error(
          `simulate-pet-signature-flow: signatures recorded, but no contract after ${timeoutSeconds} s; are events-publisher and events-consumer running against this database?`,
        );
        return 1;
      }
      await sleep(POLL_INTERVAL_MS);
    }
  } finally {
    await database.close();
  }
}

// One trace for the whole flow (every event it causes continues it); flushed before exit.
traceCommand('simulate-pet-signature-flow', main)
  .finally(() => tracing.shutdown())
  .then(
    (code) => process.exit(code),
    (error: Error) => {
      if (error instanceof UsageError) {
        console.error(`simulate-pet-signature-flow: ${error.message}\n${USAGE}`);
        process.exit(EXIT_USAGE);
      }
      console.error(`simulate-pet-signature-flow: ${error.message}`);
      process.exit(error instanceof ConfigError ? EXIT_CONFIG : 2);
    },
  );
