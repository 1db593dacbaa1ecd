/**
 * The enrollment chain against a real database: services, callbacks and the
 * domain handlers, each handler in a real transaction.
 */
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { and, asc, count, eq, gt, type SQL } from 'drizzle-orm';
import type { PgTable } from 'drizzle-orm/pg-core';
import pino from 'pino';
import { createHandlerRegistry, outboxEvent, outboxMigrations, PermanentError, type HandlerRegistry } from '@petcover/outbox';
import { createTestDatabase, type TestDatabase } from '@petcover/outbox/testing';
import {
  addPet,
  applySignatureReceived,
  approvalRequest,
  approvePackageAndCreateContract,
  buildSignatureCallback,
  CallbackRejectedError,
  choosePlan,
  confirmDraft,
  contract,
  CONTRACT_CHANGES_STREAM,
  contractingPackage,
  createLocalDocumentStore,
  createManualSignatureProvider,
  domainConsumerModule,
  domainMigrations,
  enrollment,
  enrollPetForContract,
  enrollmentAuditConsumerModule,
  enrollmentAuditEntry,
  packageDocument,
  petProfile,
  receiveSignatureCallback,
  sha256Hex,
  SIGNING_EVENT_TYPES,
  signatureCallback,
  SignatureReceived,
  type WizardDeps,
} from '@petcover/domain';
import { runHandlersInline } from '@petcover/domain/testing';

const API_KEY = 'chain-test-api-key';
const manual = createManualSignatureProvider();
let database: TestDatabase;
let storeDir: string;
let registry: HandlerRegistry;

function wizardDeps(autoEnroll: boolean): WizardDeps {
  return { db: database.db, documentStore: createLocalDocumentStore(storeDir), signatureProvider: createManualSignatureProvider(), autoEnroll };
}

async function confirmedDraft(owner = randomUUID(), autoEnroll = false) {
  const { pet, draft } = await addPet(database.db, owner, { name: 'Bella', species: 'cat', breed: 'Siamese', birthDate: '2019-03-01' });
  await choosePlan(database.db, owner, draft.id, 'basic');
  const confirmation = await confirmDraft(wizardDeps(autoEnroll), owner, draft.id);
  return { owner, pet, draft, confirmation, request: confirmation.view.approvalRequest! };
}

async function countRows(table: PgTable, where?: SQL): Promise<number> {
  const [row] = await database.db.select({ n: count() }).from(table).where(where);
  return Number(row?.n ?? 0);
}

async function lastOutboxId(): Promise<bigint> {
  const rows = await database.db.select({ id: outboxEvent.id }).from(outboxEvent);
  return rows.reduce((max, r) => (r.id > max ? r.id : max), 0n);
}

beforeAll(async () => {
  database = await createTestDatabase({ migrations: [outboxMigrations, domainMigrations] });
  storeDir = fs.mkdtempSync(path.join(os.tmpdir(), 'petcover-docs-'));
  registry = createHandlerRegistry();
  domainConsumerModule.register(registry);
  enrollmentAuditConsumerModule.register(registry);
});

afterAll(async () => {
  await database?.drop();
  fs.rmSync(storeDir, { recursive: true, force: true });
});

test('three signed callbacks run through the handlers to a contract and an enrollment', async () => {
  const { owner, pet, confirmation, request } = await confirmedDraft();
  expect(confirmation.outcome).toBe('pending_signatures');
  expect(confirmation.view.draft.step).toBe('legal_docs_signing');
  expect(confirmation.view.pendingDocumentCount).toBe(2);

  const before = await lastOutboxId();
  for (const eventType of SIGNING_EVENT_TYPES) {
    const body = buildSignatureCallback({ apiKey: API_KEY, eventType, signatureRequestId: request.providerRequestId!, approvalRequestId: request.id });
    await expect(receiveSignatureCallback(database.db, body, { apiKey: API_KEY, provider: manual })).resolves.toMatchObject({ outcome: 'recorded' });
  }
  await runHandlersInline(database.db, registry, { afterId: before });

  const [created] = await database.db.select().from(contract).where(eq(contract.petId, pet.id));
  expect(created).toMatchObject({ ownerGlobalUserId: owner, planCode: 'basic', status: 'active', monthlyPremiumCents: 1900 });
  const [event] = await database.db.select().from(outboxEvent).where(and(eq(outboxEvent.eventType, 'ContractCreated'), eq(outboxEvent.partitionKey, created!.id)));
  expect(event).toMatchObject({ streamName: CONTRACT_CHANGES_STREAM, partitionKey: created!.id });
  expect(await countRows(enrollment, eq(enrollment.petId, pet.id))).toBe(1);
  const [petRow] = await database.db.select().from(petProfile).where(eq(petProfile.id, pet.id));
  expect(petRow?.status).toBe('enrolled');
  expect(await countRows(enrollmentAuditEntry, eq(enrollmentAuditEntry.petId, pet.id))).toBe(1);

  // Every handler applied a second time changes nothing and emits nothing.
  const afterFirstRun = await lastOutboxId();
  const outboxCount = await countRows(outboxEvent);
  await runHandlersInline(database.db, registry, { afterId: before });
  expect(await lastOutboxId()).toBe(afterFirstRun);
  expect(await countRows(outboxEvent)).toBe(outboxCount);
  expect(await countRows(contract, eq(contract.petId, pet.id))).toBe(1);
  expect(await countRows(enrollment, eq(enrollment.petId, pet.id))).toBe(1);
});

test('rendered documents are real PDFs whose sha256 is recorded', async () => {
  const { confirmation } = await confirmedDraft();
  const documents = await database.db.select().from(packageDocument).where(eq(packageDocument.packageId, confirmation.view.package!.id));
  expect(documents.map((d) => d.kind).sort()).toEqual(['insurance_application', 'terms_and_conditions']);
  for (const document of documents) {
    const bytes = fs.readFileSync(path.join(storeDir, document.storageKey));
    expect(bytes.subarray(0, 5).toString('latin1')).toBe('%PDF-');
    expect(sha256Hex(bytes)).toBe(document.sha256);
    expect(bytes.length).toBe(document.byteSize);
  }
});

test('SignatureReceived for an unknown approval request is a PermanentError naming it', async () => {
  const missing = randomUUID();
  const handler = registry.get(SignatureReceived.type)!;
  const payload = handler.schema.parse({
    approvalRequestId: missing,
    provider: 'manual',
    providerRequestId: 'nowhere',
    callbackEventType: 'signature_request_all_signed',
    callbackEventTime: new Date().toISOString(),
  });
  const outboxBefore = await countRows(outboxEvent);
  const attempt = database.db.transaction((tx) =>
    handler.handle(
      { eventId: randomUUID(), type: 'SignatureReceived', stream: SignatureReceived.stream, partitionKey: missing, payload, headers: {}, createdAt: '', outboxId: '1', entryId: '1-0' },
      { tx, attempt: 1, group: 'test', logger: pino({ level: 'silent' }), signal: new AbortController().signal },
    ),
  );
  await expect(attempt).rejects.toBeInstanceOf(PermanentError);
  await expect(attempt).rejects.toThrow(`SignatureReceived references missing ApprovalRequest ${missing}`);
  expect(await countRows(outboxEvent)).toBe(outboxBefore);
});

test('a callback with a bad hash is refused and writes nothing; the same callback twice has one effect', async () => {
  const { request } = await confirmedDraft();
  const callbacksBefore = await countRows(signatureCallback);
  const outboxBefore = await countRows(outboxEvent);
  const forged = buildSignatureCallback({ apiKey: 'not-our-key', eventType: 'signature_request_all_signed', signatureRequestId: request.providerRequestId!, approvalRequestId: request.id });
  const refusal = receiveSignatureCallback(database.db, forged, { apiKey: API_KEY, provider: manual });
  await expect(refusal).rejects.toBeInstanceOf(CallbackRejectedError);
  await expect(refusal).rejects.toMatchObject({ status: 401 });
  expect(await countRows(signatureCallback)).toBe(callbacksBefore);
  expect(await countRows(outboxEvent)).toBe(outboxBefore);

  const genuine = buildSignatureCallback({ apiKey: API_KEY, eventType: 'signature_request_signed', signatureRequestId: request.providerRequestId!, approvalRequestId: request.id });
  await expect(receiveSignatureCallback(database.db, genuine, { apiKey: API_KEY, provider: manual })).resolves.toMatchObject({ outcome: 'recorded' });
  await expect(receiveSignatureCallback(database.db, genuine, { apiKey: API_KEY, provider: manual })).resolves.toMatchObject({ outcome: 'duplicate' });
  expect(await countRows(signatureCallback, eq(signatureCallback.approvalRequestId, request.id))).toBe(1);
  expect(await countRows(outboxEvent)).toBe(outboxBefore + 1);
});

test('concurrent confirmations of one draft make one package, one approval request and, auto-enrolled, one contract', async () => {
  for (const autoEnroll of [false, true]) {
    const owner = randomUUID();
    const { draft } = await addPet(database.db, owner, { name: 'Rex', species: 'dog', breed: 'Boxer', birthDate: '2018-07-07' });
    await choosePlan(database.db, owner, draft.id, 'premium');
    const results = await Promise.all(Array.from({ length: 4 }, () => confirmDraft(wizardDeps(autoEnroll), owner, draft.id)));
    const packageIds = new Set(results.map((r) => r.view.package?.id));
    expect(packageIds.size).toBe(1);
    expect(await countRows(contractingPackage, eq(contractingPackage.draftId, draft.id))).toBe(1);
    const [pkg] = await database.db.select().from(contractingPackage).where(eq(contractingPackage.draftId, draft.id));
    expect(await countRows(approvalRequest, eq(approvalRequest.packageId, pkg!.id))).toBe(1);
    expect(await countRows(contract, eq(contract.packageId, pkg!.id))).toBe(autoEnroll ? 1 : 0);
    const contractEvents = await database.db.select().from(outboxEvent).where(eq(outboxEvent.eventType, 'ContractCreated'));
    const forThisPackage = contractEvents.filter((e) => (e.payload as { packageId?: string }).packageId === pkg!.id);
    expect(forThisPackage).toHaveLength(autoEnroll ? 1 : 0);
  }
});

test('with auto-enroll the consumer handler finds the pet enrolled and emits nothing more', async () => {
  const before = await lastOutboxId();
  const { pet, confirmation } = await confirmedDraft(randomUUID(), true);
  expect(confirmation.outcome).toBe('enrolled');
  expect(confirmation.view.draft.step).toBe('success');
  expect(confirmation.view.pendingDocumentCount).toBe(0);
  // In id order: a heap scan is not (earlier tests' rolled-back inserts leave free space that later rows fill).
  const types = (await database.db.select().from(outboxEvent).where(gt(outboxEvent.id, before)).orderBy(asc(outboxEvent.id))).map((e) => e.eventType);
  expect(types).toEqual(['PetProfileCreated', 'PlanChosen', 'ContractingPackageCreated', 'LegalDocumentsSigned', 'ContractCreated', 'PetEnrolled']);

  const afterConfirm = await lastOutboxId();
  await runHandlersInline(database.db, registry, { afterId: before });
  expect(await lastOutboxId()).toBe(afterConfirm);
  expect(await countRows(enrollment, eq(enrollment.petId, pet.id))).toBe(1);
});

test('the same handler applied concurrently in several transactions has one effect and emits one event', async () => {
  const { pet, request } = await confirmedDraft();
  const allSigned = { approvalRequestId: request.id, callbackEventType: 'signature_request_all_signed' as const, callbackEventTime: new Date().toISOString() };
  await Promise.all(Array.from({ length: 4 }, () => database.db.transaction((tx) => applySignatureReceived(tx, allSigned))));
  const signedEvents = (await database.db.select().from(outboxEvent).where(eq(outboxEvent.eventType, 'LegalDocumentsSigned'))).filter(
    (e) => (e.payload as { approvalRequestId?: string }).approvalRequestId === request.id,
  );
  expect(signedEvents).toHaveLength(1);

  const packageId = (signedEvents[0]!.payload as { packageId: string }).packageId;
  const contracts = await Promise.all(Array.from({ length: 4 }, () => database.db.transaction((tx) => approvePackageAndCreateContract(tx, packageId))));
  expect(new Set(contracts.map((c) => c.id)).size).toBe(1);
  await Promise.all(Array.from({ length: 4 }, () => database.db.transaction((tx) => enrollPetForContract(tx, contracts[0]!.id))));
  expect(await countRows(enrollment, eq(enrollment.petId, pet.id))).toBe(1);
  expect(await countRows(outboxEvent, and(eq(outboxEvent.eventType, 'ContractCreated'), eq(outboxEvent.partitionKey, contracts[0]!.id)))).toBe(1);
  expect(await countRows(outboxEvent, and(eq(outboxEvent.eventType, 'PetEnrolled'), eq(outboxEvent.partitionKey, pet.id)))).toBe(1);
});
