/**
 * The owner wizard in real headless Chromium, at phone width, one
 * screenshot per step (the directory is printed):
 * - DEV_AUTO_ENROLL_PET=1: Profile → Plan → Confirmation → (LegalDocsSigning
 *   auto-advances) → Success, enrolled;
 * - the full signature flow against the three real apps (built api,
 *   events-publisher, events-consumer): the documents open as PDFs, the
 *   manual provider's "Sign" button sends the callbacks, and the Success page
 *   turns to "Enrolled" when the consumer enrolls the pet, without a reload;
 * - a declined (canceled, expired) signature request: the signing page turns
 *   to a Success page that says the pet is not covered and offers a new
 *   enrollment with the pet's details filled in;
 * - another owner's draft URL shows "Not found"; an unknown page is an HTML
 *   404 for a browser, JSON for /v1;
 * - a validation error is shown next to its field.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { randomUUID } from 'node:crypto';
import { eq } from 'drizzle-orm';
import type { RedisClient } from '@petcover/service-kit';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import {
  addPet,
  buildSignatureCallback,
  choosePlan,
  confirmDraft,
  createLocalDocumentStore,
  createManualSignatureProvider,
  domainConsumerModule,
  domainMigrations,
  enrollment,
  getDraft,
} from '@petcover/domain';
import { runHandlersInline } from '@petcover/domain/testing';
import { createHandlerRegistry, outboxMigrations, type HandlerRegistry } from '@petcover/outbox';
import {
  createTestDatabase,
  createTestRedis,
  deleteKeysWithPrefix,
  freePort,
  uniqueGroupName,
  uniqueRedisPrefix,
  type TestDatabase,
} from '@petcover/outbox/testing';
import { launchBrowser, PHONE_VIEWPORT, screenshotsFor, type Screenshots } from './support/browser';
import { InProcessApis } from './support/in-process-api';
import { appsEnvironment, RunningApps } from './support/running-apps';
import { API_MAIN, CONSUMER_MAIN, PUBLISHER_MAIN, requireBuiltApps } from './support/built-files';

const AUTH_SECRET = 'wizard-browser-secret-0123456789';
const SIGNATURE_API_KEY = 'wizard-browser-signature-key';

requireBuiltApps();

// Chromium start-up and a chain of events through Redis, on a loaded CI machine.
jest.setTimeout(180_000);

let database: TestDatabase;
let redis: RedisClient;
let browser: Browser;
let storeDir: string;
let shots: Screenshots;
/** The domain's handlers, run inline where a test has no consumer process. */
let handlers: HandlerRegistry;
let apis: InProcessApis;
/** In-process api with DEV_AUTO_ENROLL_PET=1. */
let autoUrl: string;
/** In-process api with the manual provider, signatures needed (callbacks applied by the test, inline). */
let signingUrl: string;

async function newPhonePage(): Promise<{ context: BrowserContext; page: Page }> {
  const context = await browser.newContext({ viewport: PHONE_VIEWPORT });
  return { context, page: await context.newPage() };
}

async function signIn(page: Page, baseUrl: string, owner?: string): Promise<void> {
  await page.goto(`${baseUrl}/dev/sign-in`);
  if (owner) await page.getByLabel('Owner global user id (optional)').fill(owner);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.getByRole('heading', { name: 'Your pets' }).waitFor();
}

/** Profile → Plan → Confirmation, with screenshots; returns the draft id. */
async function fillProfilePlanConfirmation(page: Page, baseUrl: string, petName: string, label: string): Promise<string> {
  await page.getByRole('link', { name: 'Add a pet' }).click();
  await page.getByLabel('Name').fill(petName);
  await page.getByLabel('Species').selectOption('cat');
  await page.getByLabel('Breed').fill('Maine Coon');
  await page.getByLabel('Birth date').fill('2022-03-14');
  await shots.shoot(page, `${label}-profile`);
  await page.getByRole('button', { name: 'Continue to plans' }).click();

  await page.getByRole('heading', { name: `Choose a plan for ${petName}` }).waitFor();
  const draftId = /\/drafts\/([0-9a-f-]{36})\/plan$/.exec(page.url())?.[1];
  expect(draftId).toBeDefined();
  // The catalogue shows premiums, reimbursement and limits.
  await expect(page.locator('.plan').first().textContent()).resolves.toMatch(/Monthly premium.*€.*Reimbursement.*%.*Annual limit.*€/s);
  await page.locator('.plan').filter({ hasText: 'Plus' }).first().click();
  await shots.shoot(page, `${label}-plan`);
  await page.getByRole('button', { name: 'Continue to confirmation' }).click();

  await page.getByRole('heading', { name: `Confirm the enrollment of ${petName}` }).waitFor();
  await page.getByLabel('Your full name').fill('Ada Owner');
  await page.getByLabel('Your email').fill('ada.owner@example.com');
  await shots.shoot(page, `${label}-confirmation`);
  await page.getByRole('button', { name: 'Confirm and prepare the documents' }).click();
  return draftId as string;
}

beforeAll(async () => {
  database = await createTestDatabase({ migrations: [outboxMigrations, domainMigrations], poolSize: 4 });
  redis = createTestRedis();
  storeDir = fs.mkdtempSync(path.join(os.tmpdir(), 'petcover-wizard-docs-'));
  handlers = createHandlerRegistry();
  domainConsumerModule.register(handlers);
  shots = screenshotsFor('wizard');
  apis = new InProcessApis({ database, redis, storeDir, authSecret: AUTH_SECRET });
  const inProcess = { devSignIn: true, signatureApiKey: SIGNATURE_API_KEY };
  [autoUrl, signingUrl] = await Promise.all([apis.start(inProcess), apis.start({ ...inProcess, wizard: { autoEnroll: false } })]);
  browser = await launchBrowser();
});

afterAll(async () => {
  await browser?.close();
  await apis?.closeAll();
  redis?.disconnect();
  await database?.drop();
  if (storeDir) fs.rmSync(storeDir, { recursive: true, force: true });
});

test('DEV_AUTO_ENROLL_PET=1: Profile → Plan → Confirmation → (signing auto-advances) → Success, enrolled', async () => {
  const { context, page } = await newPhonePage();
  try {
    await page.goto(`${autoUrl}/`);
    await shots.shoot(page, 'auto-welcome');
    await signIn(page, autoUrl);
    await shots.shoot(page, 'auto-signed-in');
    const draftId = await fillProfilePlanConfirmation(page, autoUrl, 'Miso', 'auto');

    // Nothing to sign: LegalDocsSigning passes straight on to Success.
    await page.waitForURL(`${autoUrl}/drafts/${draftId}/success`);
    await page.getByRole('heading', { name: 'Miso is covered' }).waitFor();
    await expect(page.getByRole('status').filter({ hasText: 'Enrolled.' }).count()).resolves.toBe(1);
    await shots.shoot(page, 'auto-success');

    const [row] = await database.db.select().from(enrollment).where(eq(enrollment.petId, (await petIdOfDraft(draftId)) as string));
    expect(row).toBeDefined();
    await page.goto(`${autoUrl}/`);
    await expect(page.getByRole('row', { name: /Miso/ }).textContent()).resolves.toContain('Enrolled');
    await shots.shoot(page, 'auto-pets');
  } finally {
    await context.close();
  }
});

test('a validation error is shown next to its field, and the other fields keep their values', async () => {
  const { context, page } = await newPhonePage();
  try {
    await signIn(page, autoUrl);
    await page.getByRole('link', { name: 'Add a pet' }).click();
    await page.getByLabel('Name').fill('Rex');
    await page.getByLabel('Species').selectOption('dog');
    await page.getByLabel('Breed').fill('Beagle');
    await page.getByLabel('Birth date').fill('2999-01-01');
    await page.getByRole('button', { name: 'Continue to plans' }).click();

    const birthDate = page.getByLabel('Birth date');
    await page.locator('#field-birthDate-error').waitFor();
    expect(await page.locator('#field-birthDate-error').textContent()).toBe('must not be in the future');
    expect(await birthDate.getAttribute('aria-invalid')).toBe('true');
    expect(await birthDate.getAttribute('aria-describedby')).toContain('field-birthDate-error');
    // The message sits right after its input, inside the same field.
    expect(await page.locator('.field:has(#field-birthDate) .field-error').count()).toBe(1);
    expect(await page.getByLabel('Name').inputValue()).toBe('Rex');
    expect(await page.locator('.field-error').count()).toBe(1);
    await expect(page.getByRole('alert').first().textContent()).resolves.toContain('Please correct the fields marked below.');
    await shots.shoot(page, 'validation-error');

    // Keyboard only: Tab from the name reaches the species select.
    await page.getByLabel('Name').focus();
    await page.keyboard.press('Tab');
    expect(await page.evaluate(() => document.activeElement?.id)).toBe('field-species');
  } finally {
    await context.close();
  }
});

test("another owner's draft URL shows Not found", async () => {
  const first = await newPhonePage();
  const second = await newPhonePage();
  try {
    await signIn(first.page, autoUrl);
    await first.page.getByRole('link', { name: 'Add a pet' }).click();
    await first.page.getByLabel('Name').fill('Private');
    await first.page.getByLabel('Species').selectOption('dog');
    await first.page.getByLabel('Breed').fill('Pug');
    await first.page.getByLabel('Birth date').fill('2020-01-01');
    await first.page.getByRole('button', { name: 'Continue to plans' }).click();
    await first.page.waitForURL(/\/plan$/);
    const draftUrl = first.page.url();

    await signIn(second.page, autoUrl);
    const response = await second.page.goto(draftUrl);
    expect(response?.status()).toBe(404);
    await second.page.getByRole('heading', { name: 'Not found' }).waitFor();
    expect(await second.page.textContent('main')).toContain('does not exist, or it belongs to another owner');
    expect(await second.page.textContent('main')).not.toContain('Private');
    await shots.shoot(second.page, 'other-owner-not-found');
  } finally {
    await first.context.close();
    await second.context.close();
  }
});

test('a declined signature request: the signing page turns to a clear "not covered" Success page with the next step; canceled and expired too', async () => {
  const { context, page } = await newPhonePage();
  try {
    const owner = randomUUID();
    await signIn(page, signingUrl, owner);
    const draftId = await fillProfilePlanConfirmation(page, signingUrl, 'Kiko', 'declined');
    await page.waitForURL(`${signingUrl}/drafts/${draftId}/signing`);
    await page.getByRole('heading', { name: 'Sign the documents for Kiko' }).waitFor();
    await page.evaluate(() => Object.assign(window, { notReloaded: true }));

    // The signer declines at the provider: its callback through the webhook, then the consumer's handler (inline).
    await declineAtProvider(signingUrl, owner, draftId, 'signature_request_declined');

    // The signing page polls: it moves to Success by itself, which says what happened and what to do.
    await page.waitForURL(`${signingUrl}/drafts/${draftId}/success`, { timeout: 30_000 });
    await page.getByRole('heading', { name: 'Documents declined: Kiko is not covered' }).waitFor();
    const progress = page.locator('#enrollment-progress');
    await expect(progress.getByRole('alert').textContent()).resolves.toMatch(/The documents were declined at the signature provider, so Kiko is not covered\..*start a new enrollment/s);
    // Nothing more can happen to a closed package: the page stops polling.
    expect(await progress.getAttribute('hx-trigger')).toBeNull();
    await shots.shoot(page, 'declined-success');

    await page.getByRole('link', { name: 'Start a new enrollment for Kiko' }).click();
    await page.getByRole('heading', { name: 'Tell us about your pet' }).waitFor();
    expect([await page.getByLabel('Name').inputValue(), await page.getByLabel('Species').inputValue(), await page.getByLabel('Breed').inputValue(), await page.getByLabel('Birth date').inputValue()]).toEqual([
      'Kiko',
      'cat',
      'Maine Coon',
      '2022-03-14',
    ]);
    await shots.shoot(page, 'declined-start-again');
    await page.goto(`${signingUrl}/`);
    await expect(page.getByRole('row', { name: /Kiko/ }).textContent()).resolves.toContain('Not covered: signature request declined');
    await shots.shoot(page, 'declined-pets');

    for (const [outcome, heading] of [
      ['canceled', 'Signature request canceled: Kiko is not covered'],
      ['expired', 'Signature request expired: Kiko is not covered'],
    ] as const) {
      const { draft } = await addPet(database.db, owner, { name: 'Kiko', species: 'cat', breed: 'Maine Coon', birthDate: '2022-03-14' });
      await choosePlan(database.db, owner, draft.id, 'basic');
      await confirmDraft({ db: database.db, documentStore: createLocalDocumentStore(storeDir), signatureProvider: createManualSignatureProvider(), autoEnroll: false }, owner, draft.id);
      await declineAtProvider(signingUrl, owner, draft.id, `signature_request_${outcome}`);
      await page.goto(`${signingUrl}/drafts/${draft.id}/signing`);
      await page.waitForURL(`${signingUrl}/drafts/${draft.id}/success`);
      await page.getByRole('heading', { name: heading }).waitFor();
      await expect(page.locator('#enrollment-progress').getByRole('link', { name: 'Start a new enrollment for Kiko' }).count()).resolves.toBe(1);
      await shots.shoot(page, `${outcome}-success`);
    }
  } finally {
    await context.close();
  }
});

test('an unknown page: a browser gets an HTML 404 page; /v1 and JSON clients keep the JSON 404', async () => {
  const { context, page } = await newPhonePage();
  try {
    const response = await page.goto(`${autoUrl}/no-such-page`);
    expect(response?.status()).toBe(404);
    expect(response?.headers()['content-type']).toMatch(/^text\/html/);
    await page.getByRole('heading', { name: 'Page not found' }).waitFor();
    expect(await page.textContent('main')).toContain('There is no page at /no-such-page.');
    await page.getByRole('link', { name: 'PetCover home' }).waitFor();
    await shots.shoot(page, 'not-found-page');

    // A browser asking for an unknown /v1 route still gets the API's JSON answer.
    const apiRoute = await page.goto(`${autoUrl}/v1/no-such-route`);
    expect([apiRoute?.status(), await apiRoute?.json()]).toEqual([404, { error: 'not_found', message: 'no route GET /v1/no-such-route' }]);
    for (const accept of ['application/json', '*/*']) {
      const json = await fetch(`${autoUrl}/no-such-page`, { headers: { accept } });
      expect([accept, json.status, await json.json()]).toEqual([accept, 404, { error: 'not_found', message: 'no route GET /no-such-page' }]);
    }
  } finally {
    await context.close();
  }
});

test('the full signature flow with the three real apps reaches Success once the consumer enrolls the pet, without a reload', async () => {
  const prefix = uniqueRedisPrefix();
  const [apiPort, publisherPort, consumerPort] = await Promise.all([freePort(), freePort(), freePort()]);
  const apps = new RunningApps({
    ...appsEnvironment({ databaseUrl: database.url, redisKeyPrefix: prefix, authSecret: AUTH_SECRET, signatureApiKey: SIGNATURE_API_KEY, storeDir }),
    SIGNATURE_PROVIDER: 'manual',
  });
  const { context, page } = await newPhonePage();
  try {
    const api = apps.start('api', [API_MAIN], { PORT: String(apiPort) });
    await apps.waitReady(api, apiPort);
    const baseUrl = `http://127.0.0.1:${apiPort}`;
    const owner = randomUUID();
    await signIn(page, baseUrl, owner);
    expect(await page.textContent('header')).toContain(owner);
    const draftId = await fillProfilePlanConfirmation(page, baseUrl, 'Nori', 'full');

    await page.waitForURL(`${baseUrl}/drafts/${draftId}/signing`);
    await page.getByRole('heading', { name: 'Sign the documents for Nori' }).waitFor();
    const documentLinks = page.locator('ul.documents a');
    expect(await documentLinks.count()).toBeGreaterThanOrEqual(1);
    const pdf = await context.request.get(new URL((await documentLinks.first().getAttribute('href')) as string, baseUrl).toString());
    expect(pdf.status()).toBe(200);
    expect(pdf.headers()['content-type']).toBe('application/pdf');
    expect((await pdf.body()).subarray(0, 5).toString()).toBe('%PDF-');
    await shots.shoot(page, 'full-signing');

    // The Success page updates itself through htmx: it must have loaded.
    expect(await page.evaluate(() => typeof (window as unknown as { htmx?: unknown }).htmx)).toBe('object');
    await page.getByRole('button', { name: 'Sign all documents' }).click();
    await page.waitForURL(`${baseUrl}/drafts/${draftId}/success`);
    // No publisher or consumer yet: the page waits, and says what for.
    await expect(page.locator('#enrollment-progress').textContent()).resolves.toContain('Contract: created once every document is signed');
    await expect(page.locator('#enrollment-progress').textContent()).resolves.toContain('publisher and consumer must be running');
    await page.getByRole('heading', { level: 1, name: "Almost there: Nori's enrollment" }).waitFor();
    await shots.shoot(page, 'full-success-waiting');
    // A marker that a reload or navigation would wipe.
    await page.evaluate(() => Object.assign(window, { notReloaded: true }));

    const publisher = apps.start('publisher', [PUBLISHER_MAIN, 'start', '--poll-interval', '1'], { HEALTH_PORT: String(publisherPort) });
    const consumer = apps.start('consumer', [CONSUMER_MAIN, 'start', '--group', uniqueGroupName('wizard')], { HEALTH_PORT: String(consumerPort) });
    await Promise.all([apps.waitReady(publisher, publisherPort), apps.waitReady(consumer, consumerPort)]);

    await page.locator('#enrollment-progress .banner.ok').waitFor({ timeout: 60_000 });
    expect(await page.evaluate(() => (window as unknown as { notReloaded?: boolean }).notReloaded)).toBe(true);
    // The heading changed with the block (out-of-band swap), still without a reload.
    await page.getByRole('heading', { level: 1, name: 'Nori is covered' }).waitFor();
    expect(await page.getByRole('heading', { level: 1 }).count()).toBe(1);
    await expect(page.locator('#enrollment-progress').textContent()).resolves.toMatch(/Enrolled\..*Contract/s);
    expect(await page.locator('#enrollment-progress').getAttribute('hx-trigger')).toBeNull();
    await shots.shoot(page, 'full-success-enrolled');
  } finally {
    await context.close();
    await apps.stopAll();
    const cleanup = createTestRedis();
    await deleteKeysWithPrefix(cleanup, prefix);
    await deleteKeysWithPrefix(cleanup, `{${prefix}`);
    cleanup.disconnect();
  }
});

async function petIdOfDraft(draftId: string): Promise<string | undefined> {
  const rows = await database.sql<{ pet_id: string }[]>`SELECT pet_id FROM enrollment.dependent_draft WHERE id = ${draftId}`;
  return rows[0]?.pet_id;
}

/** The callback a provider sends when its request ends unsigned, through the api's webhook; then the domain's handlers, inline. */
async function declineAtProvider(baseUrl: string, owner: string, draftId: string, eventType: 'signature_request_declined' | 'signature_request_canceled' | 'signature_request_expired'): Promise<void> {
  const request = (await getDraft(database.db, owner, draftId)).approvalRequest;
  if (!request?.providerRequestId) throw new Error(`draft ${draftId} has no dispatched approval request`);
  const [{ last } = { last: 0n }] = await database.sql<{ last: bigint }[]>`SELECT coalesce(max(id), 0)::bigint AS last FROM events.outbox_event`;
  const body = buildSignatureCallback({ apiKey: SIGNATURE_API_KEY, eventType, signatureRequestId: request.providerRequestId, approvalRequestId: request.id });
  const answer = await fetch(`${baseUrl}/v1/webhooks/signature`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  expect([answer.status, await answer.text()]).toEqual([200, 'Hello API Event Received']);
  await runHandlersInline(database.db, handlers, { afterId: BigInt(last) });
}
