/**
 * The HTTP API in-process against a real database: the wizard, the signature
 * webhook, owner scoping and every bad input of SPEC §6 that reaches the api.
 */
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { and, eq, type SQL } from 'drizzle-orm';
import type { PgTable } from 'drizzle-orm/pg-core';
import type { RedisClient } from '@petcover/service-kit';
import {
  approvalRequest,
  contract,
  contractingPackage,
  createDropboxSignProvider,
  dependentDraft,
  domainMigrations,
  petProfile,
  signatureCallback,
} from '@petcover/domain';
import { FAKE_SIGNING_URL_BASE, startFakeDropboxSign, type FakeDropboxSign } from '@petcover/domain/testing';
import { outboxEvent, outboxMigrations } from '@petcover/outbox';
import { createTestDatabase, createTestRedis, waitFor, type TestDatabase } from '@petcover/outbox/testing';
import { signOwnerToken } from '../src/auth/owner-token';
import { apiClient } from './support/api-client';
import { OWNER_COOKIE } from '../src/wizard-pages/session';
import { InProcessApis } from './support/in-process-api';
import { countRows as countRowsOf } from './support/rows';

const AUTH_SECRET = 'wizard-api-test-secret-0123456789';
let database: TestDatabase;
let redis: RedisClient;
let fake: FakeDropboxSign;
let storeDir: string;
let apis: InProcessApis;
let autoApi: string;
let signingApi: string;

beforeAll(async () => {
  database = await createTestDatabase({ migrations: [outboxMigrations, domainMigrations] });
  redis = createTestRedis();
  fake = await startFakeDropboxSign();
  storeDir = fs.mkdtempSync(path.join(os.tmpdir(), 'petcover-api-docs-'));
  apis = new InProcessApis({ database, redis, storeDir, authSecret: AUTH_SECRET });
  autoApi = await apis.start({ bodyLimit: '16kb', signatureApiKey: 'manual-key' });
  signingApi = await apis.start({
    bodyLimit: '16kb',
    wizard: { autoEnroll: false, signatureProvider: createDropboxSignProvider({ apiKey: fake.apiKey, baseUrl: fake.baseUrl }) },
    signatureApiKey: fake.apiKey,
  });
});

afterAll(async () => {
  await apis?.closeAll();
  await fake?.close();
  redis?.disconnect();
  await database?.drop();
  fs.rmSync(storeDir, { recursive: true, force: true });
});

const call = apiClient(AUTH_SECRET);

const countRows = (table: PgTable, where?: SQL) => countRowsOf(database, table, where);

const newPet = { name: 'Bella', species: 'cat', breed: 'Siamese', birthDate: '2019-03-01' };

async function draftWithPlan(base: string, owner: string, planCode = 'plus') {
  const added = await call(base, 'POST', '/v1/pets', { owner, json: newPet });
  expect(added.status).toBe(201);
  const chosen = await call(base, 'PUT', `/v1/drafts/${added.body.draft.id}/plan`, { owner, json: { planCode } });
  expect(chosen.status).toBe(200);
  return { petId: added.body.pet.id as string, draftId: added.body.draft.id as string };
}

test('the wizard with DEV_AUTO_ENROLL_PET=1 enrolls at once, and ContractCreated is in the outbox', async () => {
  const owner = randomUUID();
  const plans = await call(autoApi, 'GET', '/v1/plans');
  expect(plans.body.plans.map((p: { code: string }) => p.code)).toEqual(['basic', 'plus', 'premium']);

  const { petId, draftId } = await draftWithPlan(autoApi, owner);
  expect((await call(autoApi, 'GET', `/v1/drafts/${draftId}`, { owner })).body.draft.step).toBe('confirmation');
  const confirmed = await call(autoApi, 'POST', `/v1/drafts/${draftId}/confirm`, { owner });
  expect(confirmed.status).toBe(201);
  expect(confirmed.body).toMatchObject({ outcome: 'enrolled', draft: { step: 'success', pendingDocumentCount: 0 }, contract: { status: 'active' } });

  const enrollment = await call(autoApi, 'GET', `/v1/pets/${petId}/enrollment`, { owner });
  expect(enrollment.body).toMatchObject({ status: 'enrolled', enrollment: { contractId: confirmed.body.contract.id } });
  expect((await call(autoApi, 'GET', `/v1/pets/${petId}`, { owner })).body.pet.status).toBe('enrolled');
  const [event] = await database.db
    .select()
    .from(outboxEvent)
    .where(and(eq(outboxEvent.eventType, 'ContractCreated'), eq(outboxEvent.partitionKey, confirmed.body.contract.id)));
  expect(event).toMatchObject({ streamName: 'stream:contracting:contract_changes', publishedAt: null });
});

test('with Dropbox Sign, the signing_url it answers is recorded, in the owner\'s draft, and linked from the signing page', async () => {
  const owner = randomUUID();
  const { draftId } = await draftWithPlan(signingApi, owner);
  const confirmed = await call(signingApi, 'POST', `/v1/drafts/${draftId}/confirm`, { owner, json: { signer: { name: 'Ann Owner', email: 'ann@example.com' } } });
  expect(confirmed.status).toBe(202);
  const { id, providerRequestId } = confirmed.body.approvalRequest;
  const signingUrl = `${FAKE_SIGNING_URL_BASE}${providerRequestId}`;
  const [row] = await database.db.select().from(approvalRequest).where(eq(approvalRequest.id, id));
  expect(row).toMatchObject({ status: 'dispatched', providerRequestId, signingUrl });
  expect((await call(signingApi, 'GET', `/v1/drafts/${draftId}`, { owner })).body.draft.approvalRequest).toMatchObject({ providerRequestId, signingUrl });
  // Another owner does not see the draft at all.
  expect((await call(signingApi, 'GET', `/v1/drafts/${draftId}`, { owner: randomUUID() })).status).toBe(404);

  const token = await signOwnerToken({ secret: AUTH_SECRET }, owner);
  const page = await fetch(`${signingApi}/drafts/${draftId}/signing`, { headers: { cookie: `${OWNER_COOKIE}=${token}` } });
  expect(page.status).toBe(200);
  const text = await page.text();
  expect(text).toContain(`<a class="button" id="signing-link" href="${signingUrl}" target="_blank" rel="noopener noreferrer">Sign the documents at Dropbox Sign</a>`);
  expect(text).toContain('Or open the email from Dropbox Sign sent to <strong>ann@example.com</strong>');

  // A signing_url that is not https is not recorded: the page keeps to the email.
  fake.answerNextSigningUrlWith('http://app.hellosign.test/sign/plain');
  const other = await draftWithPlan(signingApi, owner);
  const plain = await call(signingApi, 'POST', `/v1/drafts/${other.draftId}/confirm`, { owner, json: { signer: { name: 'Ann Owner', email: 'ann@example.com' } } });
  expect(plain.body.approvalRequest).toMatchObject({ status: 'dispatched', signingUrl: null });
  const plainText = await (await fetch(`${signingApi}/drafts/${other.draftId}/signing`, { headers: { cookie: `${OWNER_COOKIE}=${token}` } })).text();
  expect(plainText).not.toContain('signing-link');
  expect(plainText).toContain('Open the email from Dropbox Sign and sign there');
});

test('confirmation dispatches to Dropbox Sign and answers 202; callbacks are verified, recorded once, acknowledged', async () => {
  const owner = randomUUID();
  const { draftId } = await draftWithPlan(signingApi, owner);
  const confirmed = await call(signingApi, 'POST', `/v1/drafts/${draftId}/confirm`, { owner, json: { signer: { name: 'Ann Owner', email: 'ann@example.com' } } });
  expect(confirmed.status).toBe(202);
  expect(confirmed.body).toMatchObject({ outcome: 'pending_signatures', draft: { step: 'legal_docs_signing', pendingDocumentCount: 2 }, contract: null });
  const request = confirmed.body.approvalRequest;
  const sent = fake.requests.find((r) => r.signatureRequestId === request.providerRequestId);
  expect(sent?.fields['metadata[approval_request_id]']).toBe(request.id);
  expect(sent?.files.map((f) => f.bytes.subarray(0, 5).toString('latin1'))).toEqual(['%PDF-', '%PDF-']);

  const webhook = `${signingApi}/v1/webhooks/signature`;
  const metadata = { approval_request_id: request.id };
  const callbackEvents = await countRows(outboxEvent, eq(outboxEvent.eventType, 'SignatureReceived'));
  // One event_time for all: the repeat below must be the very same event (its
  // dedupe key includes event_time), not a new one sent a second later.
  const eventTime = Math.floor(Date.now() / 1000);
  // Each encoding Dropbox Sign may use: multipart form, urlencoded form, JSON.
  for (const [eventType, encoding] of [
    ['signature_request_sent', 'multipart'],
    ['signature_request_signed', 'urlencoded'],
    ['signature_request_all_signed', 'json'],
  ] as const) {
    const answer = await fake.sendCallback(webhook, { eventType, signatureRequestId: request.providerRequestId, metadata, encoding, eventTime });
    expect(answer).toEqual({ status: 200, text: 'Hello API Event Received' });
  }
  expect(await countRows(signatureCallback, eq(signatureCallback.approvalRequestId, request.id))).toBe(3);
  expect(await countRows(outboxEvent, eq(outboxEvent.eventType, 'SignatureReceived'))).toBe(callbackEvents + 3);

  // The same callback again: acknowledged, nothing changes.
  const repeat = await fake.sendCallback(webhook, { eventType: 'signature_request_signed', signatureRequestId: request.providerRequestId, metadata, eventTime });
  expect(repeat).toEqual({ status: 200, text: 'Hello API Event Received' });
  expect(await countRows(signatureCallback, eq(signatureCallback.approvalRequestId, request.id))).toBe(3);
  expect(await countRows(outboxEvent, eq(outboxEvent.eventType, 'SignatureReceived'))).toBe(callbackEvents + 3);

  // A second confirmation neither makes a package nor dispatches again.
  const requestsBefore = fake.requests.length;
  expect((await call(signingApi, 'POST', `/v1/drafts/${draftId}/confirm`, { owner })).status).toBe(202);
  expect(fake.requests.length).toBe(requestsBefore);
});

test('a callback with a bad hash answers 401 and writes nothing; a malformed one answers 400', async () => {
  const callbacks = await countRows(signatureCallback);
  const events = await countRows(outboxEvent);
  const webhook = `${signingApi}/v1/webhooks/signature`;
  const metadata = { approval_request_id: randomUUID() };
  const forged = await fake.sendCallback(webhook, { eventType: 'signature_request_all_signed', signatureRequestId: 'x', metadata, apiKey: 'someone-else' });
  expect(forged.status).toBe(401);
  expect(JSON.parse(forged.text)).toMatchObject({ error: 'invalid_event_hash' });
  const malformed = await call(signingApi, 'POST', '/v1/webhooks/signature', { json: { event: { event_type: 'signature_request_signed' } } });
  expect(malformed.status).toBe(400);
  expect(malformed.body.fields.map((f: { path: string }) => f.path)).toEqual(expect.arrayContaining(['event.event_time', 'event.event_hash']));
  expect(await countRows(signatureCallback)).toBe(callbacks);
  expect(await countRows(outboxEvent)).toBe(events);
});

test('a validly signed callback for a signature request we never sent answers 401 and writes nothing', async () => {
  const unknown = randomUUID();
  const callbacks = await countRows(signatureCallback);
  const answer = await fake.sendCallback(`${signingApi}/v1/webhooks/signature`, {
    eventType: 'signature_request_all_signed',
    signatureRequestId: 'never-dispatched',
    metadata: { approval_request_id: unknown },
  });
  expect(answer.status).toBe(401);
  expect(await countRows(outboxEvent, eq(outboxEvent.partitionKey, unknown))).toBe(0);
  expect(await countRows(signatureCallback)).toBe(callbacks);
});

test('owner A cannot read or change owner B’s pet or draft (404); no token or a bad token is 401', async () => {
  const ownerA = randomUUID();
  const ownerB = randomUUID();
  const { petId, draftId } = await draftWithPlan(autoApi, ownerA, 'basic');
  for (const [method, route, json] of [
    ['GET', `/v1/pets/${petId}`, undefined],
    ['GET', `/v1/pets/${petId}/enrollment`, undefined],
    ['GET', `/v1/drafts/${draftId}`, undefined],
    ['PUT', `/v1/drafts/${draftId}/plan`, { planCode: 'premium' }],
    ['POST', `/v1/drafts/${draftId}/confirm`, {}],
  ] as const) {
    const answer = await call(autoApi, method, route, { owner: ownerB, json });
    expect([route, answer.status, answer.body.error]).toEqual([route, 404, 'not_found']);
    const anonymous = await call(autoApi, method, route, { json });
    expect([route, anonymous.status, anonymous.body.error]).toEqual([route, 401, 'unauthenticated']);
  }
  const [draft] = await database.db.select().from(dependentDraft).where(eq(dependentDraft.id, draftId));
  expect(draft).toMatchObject({ planCode: 'basic', step: 'confirmation' });
  expect(await countRows(contractingPackage, eq(contractingPackage.draftId, draftId))).toBe(0);

  const badTokens = [
    'not-a-jwt',
    await signOwnerToken({ secret: 'another-secret-0123456789' }, ownerA),
    await signOwnerToken({ secret: AUTH_SECRET }, ownerA, { now: new Date(Date.now() - 2 * 3600_000) }),
  ];
  for (const token of badTokens) {
    const answer = await call(autoApi, 'GET', `/v1/pets/${petId}`, { headers: { authorization: `Bearer ${token}` } });
    expect(answer.status).toBe(401);
  }
});

test('bad input gets a precise status and writes nothing', async () => {
  const owner = randomUUID();
  const pets = () => countRows(petProfile, eq(petProfile.ownerGlobalUserId, owner));

  const malformed = await call(autoApi, 'POST', '/v1/pets', { owner, raw: '{"name": "Rex",' });
  expect([malformed.status, malformed.body.error]).toEqual([400, 'malformed_json']);

  const wrongTypes = await call(autoApi, 'POST', '/v1/pets', { owner, json: { name: 42, species: 'hamster', breed: '', birthDate: '2999-01-01', extra: true } });
  expect(wrongTypes.status).toBe(400);
  expect(wrongTypes.body.error).toBe('validation_failed');
  expect(wrongTypes.body.fields.map((f: { path: string }) => f.path).sort()).toEqual(['body', 'body.birthDate', 'body.breed', 'body.name', 'body.species']);

  const oversized = await call(autoApi, 'POST', '/v1/pets', { owner, json: { ...newPet, name: 'x'.repeat(20_000) } });
  expect([oversized.status, oversized.body.error]).toEqual([413, 'body_too_large']);
  expect(await pets()).toBe(0);

  const badId = await call(autoApi, 'GET', '/v1/pets/not-a-uuid', { owner });
  expect(badId.status).toBe(400);
  expect(badId.body.fields[0].path).toBe('params.petId');

  const added = await call(autoApi, 'POST', '/v1/pets', { owner, json: newPet });
  const draftId = added.body.draft.id;
  const earlyConfirm = await call(autoApi, 'POST', `/v1/drafts/${draftId}/confirm`, { owner });
  expect([earlyConfirm.status, earlyConfirm.body.error]).toEqual([409, 'conflict']);
  const unknownPlan = await call(autoApi, 'PUT', `/v1/drafts/${draftId}/plan`, { owner, json: { planCode: 'platinum' } });
  expect([unknownPlan.status, unknownPlan.body.error]).toEqual([422, 'unknown_plan']);
  const wrongPlanType = await call(autoApi, 'PUT', `/v1/drafts/${draftId}/plan`, { owner, json: { planCode: 7 } });
  expect(wrongPlanType.status).toBe(400);
  const [draft] = await database.db.select().from(dependentDraft).where(eq(dependentDraft.id, draftId));
  expect(draft).toMatchObject({ planCode: null, step: 'plan' });
  const planEvents = await database.db.select().from(outboxEvent).where(eq(outboxEvent.eventType, 'PlanChosen'));
  expect(planEvents.filter((e) => (e.payload as { draftId?: string }).draftId === draftId)).toHaveLength(0);

  const unknownRoute = await call(autoApi, 'DELETE', '/v1/everything', { owner });
  expect([unknownRoute.status, unknownRoute.body.error]).toEqual([404, 'not_found']);
  for (const answer of [malformed, wrongTypes, oversized, unknownPlan, unknownRoute]) expect(JSON.stringify(answer.body)).not.toMatch(/\bat .*\.(ts|js):\d+/);
});

test('concurrent confirmations of one draft over HTTP make one package and one contract', async () => {
  const owner = randomUUID();
  const { draftId } = await draftWithPlan(autoApi, owner, 'premium');
  const answers = await Promise.all(Array.from({ length: 5 }, () => call(autoApi, 'POST', `/v1/drafts/${draftId}/confirm`, { owner })));
  expect(answers.map((a) => a.status)).toEqual([201, 201, 201, 201, 201]);
  expect(new Set(answers.map((a) => a.body.contract.id)).size).toBe(1);
  const [pkg] = await database.db.select().from(contractingPackage).where(eq(contractingPackage.draftId, draftId));
  expect(await countRows(contractingPackage, eq(contractingPackage.draftId, draftId))).toBe(1);
  expect(await countRows(approvalRequest, eq(approvalRequest.packageId, pkg!.id))).toBe(1);
  expect(await countRows(contract, eq(contract.packageId, pkg!.id))).toBe(1);
});

test('/healthz, /readyz and /metrics answer', async () => {
  expect((await call(autoApi, 'GET', '/healthz')).body).toEqual({ status: 'ok' });
  // Each check is bounded to 1 s; on a loaded machine one may miss it once, so wait for a pass.
  const ready = await waitFor(async () => {
    const answer = await call(autoApi, 'GET', '/readyz');
    return answer.status === 200 ? answer : undefined;
  }, { timeoutMs: 15_000, intervalMs: 200, description: '/readyz 200' });
  expect(Object.keys(ready.body.checks).sort()).toEqual(['db', 'migrations', 'redis']);
  const metrics = await fetch(`${autoApi}/metrics`);
  expect(await metrics.text()).toContain('petcover_api_requests_total');
});

test('dev sign-in is off where devSignIn is false (main.ts: strict mode): the page says so with 403 and issues no session', async () => {
  const answer = await fetch(`${autoApi}/dev/sign-in`);
  expect(answer.status).toBe(403);
  expect(await answer.text()).toContain('Development sign-in is off');
  expect(answer.headers.get('set-cookie') ?? '').not.toContain(OWNER_COOKIE);
});
