/**
 * Callbacks bound to their request, and confirmation without a lock across
 * the provider call — against a real database and the fake Dropbox Sign on
 * real HTTP. Each attack of issue 13 is one test; each failed on the code
 * before it (callbacks were matched by their unsigned metadata, never
 * confirmed with the provider, deduplicated on unsigned fields; the
 * dispatch held a row lock and a pooled connection across the HTTP call).
 */
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { and, count, eq, type SQL } from 'drizzle-orm';
import type { PgTable } from 'drizzle-orm/pg-core';
import { createHandlerRegistry, outboxEvent, outboxMigrations, type HandlerRegistry } from '@petcover/outbox';
import { createTestDatabase, waitFor, type TestDatabase } from '@petcover/outbox/testing';
import {
  addPet,
  approvalRequest,
  buildSignatureCallback,
  choosePlan,
  confirmDraft,
  contract,
  contractingPackage,
  createDropboxSignProvider,
  createLocalDocumentStore,
  domainConsumerModule,
  domainMigrations,
  receiveSignatureCallback,
  signatureCallback,
  SignatureDispatchError,
  type SignatureProvider,
  type WizardDeps,
} from '@petcover/domain';
import { runHandlersInline, startFakeDropboxSign, type FakeDropboxSign } from '@petcover/domain/testing';

let database: TestDatabase;
let fake: FakeDropboxSign;
let provider: SignatureProvider;
let storeDir: string;
let registry: HandlerRegistry;

function deps(overrides: Partial<WizardDeps> = {}): WizardDeps {
  return { db: database.db, documentStore: createLocalDocumentStore(storeDir), signatureProvider: provider, autoEnroll: false, ...overrides };
}

async function draftWithPlan(owner = randomUUID()) {
  const { pet, draft } = await addPet(database.db, owner, { name: 'Bella', species: 'cat', breed: 'Siamese', birthDate: '2019-03-01' });
  await choosePlan(database.db, owner, draft.id, 'basic');
  return { owner, pet, draft };
}

async function dispatchedRequest() {
  const { owner, pet, draft } = await draftWithPlan();
  const confirmation = await confirmDraft(deps(), owner, draft.id);
  const request = confirmation.view.approvalRequest!;
  expect(request).toMatchObject({ status: 'dispatched', providerRequestId: expect.any(String) });
  return { owner, pet, draft, request: { id: request.id, providerRequestId: request.providerRequestId! }, packageId: confirmation.view.package!.id };
}

async function countRows(table: PgTable, where?: SQL): Promise<number> {
  const [row] = await database.db.select({ n: count() }).from(table).where(where);
  return Number(row?.n ?? 0);
}

function receive(body: unknown) {
  return receiveSignatureCallback(database.db, body, { apiKey: fake.apiKey, provider });
}

function filesUnder(dir: string): string[] {
  return fs.existsSync(dir) ? (fs.readdirSync(dir, { recursive: true }) as string[]).filter((f) => fs.statSync(path.join(dir, f)).isFile()) : [];
}

beforeAll(async () => {
  database = await createTestDatabase({ migrations: [outboxMigrations, domainMigrations], poolSize: 4 });
  fake = await startFakeDropboxSign();
  provider = createDropboxSignProvider({ apiKey: fake.apiKey, baseUrl: fake.baseUrl });
  storeDir = fs.mkdtempSync(path.join(os.tmpdir(), 'petcover-binding-docs-'));
  registry = createHandlerRegistry();
  domainConsumerModule.register(registry);
});

afterAll(async () => {
  await fake?.close();
  await database?.drop();
  fs.rmSync(storeDir, { recursive: true, force: true });
});

test("owner A's valid all_signed retargeted at owner B (metadata or request id edited) is refused with 401 and writes nothing", async () => {
  const a = await dispatchedRequest();
  const b = await dispatchedRequest();
  fake.markAllSigned(a.request.providerRequestId);
  const callbacks = await countRows(signatureCallback);
  const events = await countRows(outboxEvent);

  // A's signature request, B's approval request id in the unsigned metadata.
  const metadataEdited = buildSignatureCallback({ apiKey: fake.apiKey, eventType: 'signature_request_all_signed', signatureRequestId: a.request.providerRequestId, approvalRequestId: b.request.id });
  await expect(receive(metadataEdited)).rejects.toMatchObject({ status: 401, message: expect.stringContaining('metadata.approval_request_id does not belong') });
  // Both ids edited to B's: bound to B, but the provider says B is not signed.
  const bothEdited = buildSignatureCallback({ apiKey: fake.apiKey, eventType: 'signature_request_all_signed', signatureRequestId: b.request.providerRequestId, approvalRequestId: b.request.id });
  await expect(receive(bothEdited)).rejects.toMatchObject({ status: 401, message: expect.stringContaining('does not confirm') });
  expect(fake.stateReads).toContain(b.request.providerRequestId);
  // A signature request id we never sent.
  const unknown = buildSignatureCallback({ apiKey: fake.apiKey, eventType: 'signature_request_all_signed', signatureRequestId: 'feedface', approvalRequestId: b.request.id });
  await expect(receive(unknown)).rejects.toMatchObject({ status: 401, message: expect.stringContaining('not a signature request we sent') });

  expect(await countRows(signatureCallback)).toBe(callbacks);
  expect(await countRows(outboxEvent)).toBe(events);
  const [bRow] = await database.db.select().from(approvalRequest).where(eq(approvalRequest.id, b.request.id));
  expect(bRow?.status).toBe('dispatched');

  // A's own callback is still accepted and leads to A's contract only.
  const genuine = buildSignatureCallback({ apiKey: fake.apiKey, eventType: 'signature_request_all_signed', signatureRequestId: a.request.providerRequestId, approvalRequestId: a.request.id });
  const before = await database.db.select({ id: outboxEvent.id }).from(outboxEvent);
  await expect(receive(genuine)).resolves.toMatchObject({ outcome: 'recorded', approvalRequestId: a.request.id });
  await runHandlersInline(database.db, registry, { afterId: before.reduce((m, r) => (r.id > m ? r.id : m), 0n) });
  expect(await countRows(contract, eq(contract.packageId, a.packageId))).toBe(1);
  expect(await countRows(contract, eq(contract.packageId, b.packageId))).toBe(0);
});

test('a stale or far-future event_time is refused with 401 and writes nothing', async () => {
  const { request } = await dispatchedRequest();
  fake.markAllSigned(request.providerRequestId);
  const callbacks = await countRows(signatureCallback);
  for (const eventTime of [new Date(Date.now() - 2 * 3600_000), new Date(Date.now() + 3600_000)]) {
    const body = buildSignatureCallback({ apiKey: fake.apiKey, eventType: 'signature_request_all_signed', signatureRequestId: request.providerRequestId, approvalRequestId: request.id, eventTime });
    await expect(receive(body)).rejects.toMatchObject({ status: 401, message: expect.stringContaining('outside the accepted window') });
  }
  expect(await countRows(signatureCallback)).toBe(callbacks);
});

test('unsigned edits of one valid callback do not multiply rows or events', async () => {
  const { request } = await dispatchedRequest();
  const events = await countRows(outboxEvent);
  const eventTime = new Date();
  const original = buildSignatureCallback({ apiKey: fake.apiKey, eventType: 'signature_request_signed', signatureRequestId: request.providerRequestId, approvalRequestId: request.id, eventTime });
  await expect(receive(original)).resolves.toMatchObject({ outcome: 'recorded' });
  for (let i = 0; i < 20; i += 1) {
    const edited = {
      ...original,
      event: { ...original.event, event_metadata: { related_signature_id: `sig-${i}` } },
      signature_request: { ...original.signature_request!, metadata: i % 2 ? null : { approval_request_id: request.id } },
      extra: { nested: i },
    };
    await expect(receive(edited)).resolves.toMatchObject({ outcome: 'duplicate' });
  }
  expect(await countRows(signatureCallback, eq(signatureCallback.approvalRequestId, request.id))).toBe(1);
  expect(await countRows(outboxEvent)).toBe(events + 1);
});

test('a recorded callback keeps no event_hash and no raw body', async () => {
  const { request } = await dispatchedRequest();
  const body = buildSignatureCallback({ apiKey: fake.apiKey, eventType: 'signature_request_sent', signatureRequestId: request.providerRequestId, approvalRequestId: request.id });
  await receive(body);
  const columns = await database.sql<{ column_name: string }[]>`
    SELECT column_name FROM information_schema.columns WHERE table_schema = 'enrollment' AND table_name = 'signature_callback'`;
  expect(columns.map((c) => c.column_name).sort()).toEqual(
    ['approval_request_id', 'dedupe_key', 'event_time', 'event_type', 'id', 'provider', 'provider_request_id', 'received_at', 'related_signature_id'].sort(),
  );
  const rows = await database.sql`SELECT * FROM enrollment.signature_callback WHERE approval_request_id = ${request.id}`;
  expect(JSON.stringify(rows)).not.toContain(body.event.event_hash);
});

test('declined, canceled and expired close the request and its package with an event; a later all_signed approves nothing', async () => {
  for (const outcome of ['declined', 'canceled', 'expired'] as const) {
    const { request, packageId } = await dispatchedRequest();
    const before = await database.db.select({ id: outboxEvent.id }).from(outboxEvent);
    const afterId = before.reduce((m, r) => (r.id > m ? r.id : m), 0n);
    const body = buildSignatureCallback({ apiKey: fake.apiKey, eventType: `signature_request_${outcome}`, signatureRequestId: request.providerRequestId, approvalRequestId: request.id });
    await expect(receive(body)).resolves.toMatchObject({ outcome: 'recorded' });
    await runHandlersInline(database.db, registry, { afterId });
    const [row] = await database.db.select().from(approvalRequest).where(eq(approvalRequest.id, request.id));
    expect(row?.status).toBe(outcome);
    const [pkg] = await database.db.select().from(contractingPackage).where(eq(contractingPackage.id, packageId));
    expect(pkg?.status).toBe('closed');
    expect(await countRows(outboxEvent, and(eq(outboxEvent.eventType, 'ApprovalRequestClosed'), eq(outboxEvent.partitionKey, packageId)))).toBe(1);

    const late = buildSignatureCallback({ apiKey: fake.apiKey, eventType: 'signature_request_all_signed', signatureRequestId: request.providerRequestId, approvalRequestId: request.id });
    fake.markAllSigned(request.providerRequestId);
    await receive(late);
    await runHandlersInline(database.db, registry, { afterId });
    const [after] = await database.db.select().from(approvalRequest).where(eq(approvalRequest.id, request.id));
    expect(after?.status).toBe(outcome);
    expect(await countRows(contract, eq(contract.packageId, packageId))).toBe(0);
  }
});

test('confirmation holds no lock and no pooled connection while the provider is slow', async () => {
  // The pool has 4 connections; 6 confirmations wait on the provider at once.
  const drafts = await Promise.all(Array.from({ length: 6 }, () => draftWithPlan()));
  const hold = fake.holdDispatches();
  const confirmations = drafts.map((d) => confirmDraft(deps(), d.owner, d.draft.id));
  try {
    await waitFor(() => fake.heldDispatches === 6, { timeoutMs: 20_000, description: 'six dispatches in flight at the provider' });
    // Committed as dispatching before the call; the rows are not locked.
    const rows = await database.sql<{ status: string }[]>`
      SELECT a.status FROM enrollment.approval_request a JOIN enrollment.contracting_package p ON p.id = a.package_id
       WHERE p.draft_id IN ${database.sql(drafts.map((d) => d.draft.id))} FOR UPDATE NOWAIT`;
    expect(rows.map((r) => r.status)).toEqual(Array(6).fill('dispatching'));
    const idleInTransaction = await database.sql`SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND state = 'idle in transaction'`;
    expect(idleInTransaction).toHaveLength(0);
  } finally {
    hold.release();
  }
  const results = await Promise.all(confirmations);
  expect(results.map((r) => r.view.approvalRequest?.status)).toEqual(Array(6).fill('dispatched'));
});

test('a concurrent confirmation while a dispatch is in flight does not dispatch twice', async () => {
  const { owner, draft } = await draftWithPlan();
  const sentBefore = fake.requests.length;
  const hold = fake.holdDispatches();
  const first = confirmDraft(deps(), owner, draft.id);
  try {
    await waitFor(() => fake.heldDispatches === 1, { timeoutMs: 20_000, description: 'the first dispatch in flight' });
    const second = await confirmDraft(deps(), owner, draft.id);
    expect(second.view.approvalRequest?.status).toBe('dispatching');
  } finally {
    hold.release();
  }
  await expect(first).resolves.toMatchObject({ view: { approvalRequest: { status: 'dispatched' } } });
  expect(fake.requests.length).toBe(sentBefore + 1);
});

test('a failed dispatch is recorded and retried; a dispatch whose process died is taken over once stale, and the late result is fenced', async () => {
  const { owner, draft } = await draftWithPlan();
  fake.failNextWith(500, 'temporarily unavailable');
  await expect(confirmDraft(deps(), owner, draft.id)).rejects.toBeInstanceOf(SignatureDispatchError);
  const [failed] = await database.db.select().from(approvalRequest).innerJoin(contractingPackage, eq(contractingPackage.id, approvalRequest.packageId)).where(eq(contractingPackage.draftId, draft.id));
  expect(failed?.approval_request).toMatchObject({ status: 'dispatch_failed', providerRequestId: null, dispatchAttempt: 1 });
  const retried = await confirmDraft(deps(), owner, draft.id);
  expect(retried.view.approvalRequest).toMatchObject({ status: 'dispatched', dispatchAttempt: 2 });

  // A process that died between the commit and the provider's answer leaves `dispatching` behind.
  const crashed = await draftWithPlan();
  const neverAnswers: SignatureProvider = { ...provider, dispatch: () => new Promise(() => undefined) };
  void confirmDraft(deps({ signatureProvider: neverAnswers }), crashed.owner, crashed.draft.id);
  const requestId = await waitFor(
    async () => {
      const [row] = await database.db.select({ id: approvalRequest.id, status: approvalRequest.status }).from(approvalRequest).innerJoin(contractingPackage, eq(contractingPackage.id, approvalRequest.packageId)).where(eq(contractingPackage.draftId, crashed.draft.id));
      return row?.status === 'dispatching' ? row.id : undefined;
    },
    { timeoutMs: 20_000, description: 'the dispatching claim' },
  );
  // Fresh: a second confirmation leaves it alone.
  await expect(confirmDraft(deps(), crashed.owner, crashed.draft.id)).resolves.toMatchObject({ view: { approvalRequest: { status: 'dispatching', dispatchAttempt: 1 } } });
  // Stale (its claim is older than the takeover age): taken over.
  await database.sql`UPDATE enrollment.approval_request SET dispatch_claimed_at = now() - interval '10 minutes' WHERE id = ${requestId}`;
  const recovered = await confirmDraft(deps(), crashed.owner, crashed.draft.id);
  expect(recovered.view.approvalRequest).toMatchObject({ status: 'dispatched', dispatchAttempt: 2 });
});

test('a dispatcher that stalled and lost its claim to a takeover cancels, at the provider, the request it could not record', async () => {
  const { owner, draft } = await draftWithPlan();
  const hold = fake.holdDispatches();
  let stalled: Promise<unknown> | undefined;
  let takeover: Promise<Awaited<ReturnType<typeof confirmDraft>>> | undefined;
  try {
    stalled = confirmDraft(deps(), owner, draft.id);
    await waitFor(() => fake.heldDispatches === 1, { timeoutMs: 20_000, description: 'the first dispatch in flight' });
    // The first dispatcher stalls past the takeover age (a paused VM, a long GC): its claim goes stale.
    await database.sql`
      UPDATE enrollment.approval_request a SET dispatch_claimed_at = now() - interval '10 minutes'
        FROM enrollment.contracting_package p WHERE p.id = a.package_id AND p.draft_id = ${draft.id}`;
    takeover = confirmDraft(deps(), owner, draft.id);
    await waitFor(() => fake.heldDispatches === 2, { timeoutMs: 20_000, description: 'the takeover dispatch in flight' });
  } finally {
    hold.release();
  }
  await stalled;
  const recovered = await takeover!;
  const bound = recovered.view.approvalRequest!;
  expect(bound).toMatchObject({ status: 'dispatched', dispatchAttempt: 2 });
  const sent = fake.requests.filter((r) => r.fields['metadata[approval_request_id]'] === bound.id).map((r) => r.signatureRequestId);
  expect(sent).toHaveLength(2);
  // Exactly the request the stalled dispatcher got back, never the one we bound.
  expect(fake.canceled.filter((id) => sent.includes(id))).toEqual(sent.filter((id) => id !== bound.providerRequestId));
  const [row] = await database.db.select().from(approvalRequest).where(eq(approvalRequest.id, bound.id));
  expect(row?.providerRequestId).toBe(bound.providerRequestId);
});

test('a confirmation that fails after rendering leaves no document behind and no row', async () => {
  const { owner, draft } = await draftWithPlan();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'petcover-orphan-docs-'));
  await database.sql.unsafe(`
    CREATE FUNCTION enrollment.refuse_approval_request() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'refused by test'; END $$;
    CREATE TRIGGER refuse_approval_request BEFORE INSERT ON enrollment.approval_request FOR EACH ROW EXECUTE FUNCTION enrollment.refuse_approval_request();`);
  try {
    const error = await confirmDraft(deps({ documentStore: createLocalDocumentStore(dir) }), owner, draft.id).catch((e: Error) => e);
    expect((error as Error & { cause?: Error }).cause?.message).toBe('refused by test');
  } finally {
    await database.sql.unsafe(`DROP TRIGGER refuse_approval_request ON enrollment.approval_request; DROP FUNCTION enrollment.refuse_approval_request();`);
  }
  expect(filesUnder(dir)).toEqual([]);
  expect(await countRows(contractingPackage, eq(contractingPackage.draftId, draft.id))).toBe(0);
  fs.rmSync(dir, { recursive: true, force: true });
});
