/**
 * The owner wizard in real headless Chromium, at phone width, one
 * screenshot per step (the directory is printed):
 * - DEV_AUTO_ENROLL_PET=1: Profile → Plan → Confirmation → (LegalDocsSigning
 *   auto-advances) → Success, enrolled;
 * - the full signature flow against the three real apps (built api,
 *   events-publisher, events-consumer): the documents open as PDFs, the
 *   manual provider's "Sign" button sends the callbacks, and the Success page
 *   turns to "Enrolled" when the consumer enrolls the pet, without a reload;
 * - another owner's draft URL shows "Not found";
 * - a validation error is shown next to its field.
 */
import fs from 'node:fs';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { randomUUID } from 'node:crypto';
import { eq } from 'drizzle-orm';
import type { RedisClient } from '@petcover/service-kit';
import pino from 'pino';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { Registry } from 'prom-client';
import { createLocalDocumentStore, createManualSignatureProvider, domainMigrations, enrollment } from '@petcover/domain';
import { migrationsCheck, outboxMigrations, postgresCheck, redisCheck } from '@petcover/outbox';
import {
  createTestDatabase,
  createTestRedis,
  deleteKeysWithPrefix,
  freePort,
  testRedisUrl,
  uniqueGroupName,
  uniqueRedisPrefix,
  type TestDatabase,
} from '@petcover/outbox/testing';
import { createApp } from '../src/app';
import { launchBrowser, PHONE_VIEWPORT, screenshotsFor, type Screenshots } from './support/browser';
import { RunningApps } from './support/running-apps';

const ROOT = path.resolve(__dirname, '../../..');
const API_MAIN = path.join(ROOT, 'apps/api/dist/main.js');
const PUBLISHER_MAIN = path.join(ROOT, 'apps/events-publisher/dist/main.js');
const CONSUMER_MAIN = path.join(ROOT, 'apps/events-consumer/dist/main.js');
const AUTH_SECRET = 'wizard-browser-secret-0123456789';
const SIGNATURE_API_KEY = 'wizard-browser-signature-key';

const missingBuilds = [API_MAIN, PUBLISHER_MAIN, CONSUMER_MAIN].filter((file) => !fs.existsSync(file));
if (missingBuilds.length > 0) throw new Error(`build the apps first (pnpm build): missing ${missingBuilds.join(', ')}`);

// Chromium start-up and a chain of events through Redis, on a loaded CI machine.
jest.setTimeout(180_000);

let database: TestDatabase;
let redis: RedisClient;
let browser: Browser;
let storeDir: string;
let shots: Screenshots;
let autoUrl: string;
const servers: Server[] = [];

async function startInProcessApi(): Promise<string> {
  const app = createApp({
    logger: pino({ level: 'silent' }),
    wizard: { db: database.db, documentStore: createLocalDocumentStore(storeDir), signatureProvider: createManualSignatureProvider(), autoEnroll: true },
    ownerTokens: { secret: AUTH_SECRET },
    signatureApiKey: SIGNATURE_API_KEY,
    bodyLimit: '100kb',
    devSignIn: true,
    readinessChecks: {
      db: postgresCheck(database.sql),
      migrations: migrationsCheck(database.sql, [outboxMigrations, domainMigrations]),
    },
    nonBlockingReadinessChecks: { redis: redisCheck(redis) },
    ownerWritesPerMinute: 1000,
    metricsRegistry: new Registry(),
  });
  const server = app.listen(0, '127.0.0.1');
  await new Promise((resolve) => server.once('listening', resolve));
  servers.push(server);
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

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
  shots = screenshotsFor('wizard');
  [browser, autoUrl] = await Promise.all([launchBrowser(), startInProcessApi()]);
});

afterAll(async () => {
  await browser?.close();
  for (const server of servers) {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
  }
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

test('the full signature flow with the three real apps reaches Success once the consumer enrolls the pet, without a reload', async () => {
  const prefix = uniqueRedisPrefix();
  const [apiPort, publisherPort, consumerPort] = await Promise.all([freePort(), freePort(), freePort()]);
  const apps = new RunningApps({
    PATH: process.env.PATH,
    DATABASE_URL: database.url,
    REDIS_URL: testRedisUrl(),
    REDIS_KEY_PREFIX: prefix,
    LOG_LEVEL: 'warn',
    AUTH_SECRET,
    SIGNATURE_API_KEY,
    SIGNATURE_PROVIDER: 'manual',
    DOCUMENT_STORE_DIR: storeDir,
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
    await shots.shoot(page, 'full-success-waiting');
    // A marker that a reload or navigation would wipe.
    await page.evaluate(() => Object.assign(window, { notReloaded: true }));

    const publisher = apps.start('publisher', [PUBLISHER_MAIN, 'start', '--poll-interval', '1'], { HEALTH_PORT: String(publisherPort) });
    const consumer = apps.start('consumer', [CONSUMER_MAIN, 'start', '--group', uniqueGroupName('wizard')], { HEALTH_PORT: String(consumerPort) });
    await Promise.all([apps.waitReady(publisher, publisherPort), apps.waitReady(consumer, consumerPort)]);

    await page.locator('#enrollment-progress .banner.ok').waitFor({ timeout: 60_000 });
    expect(await page.evaluate(() => (window as unknown as { notReloaded?: boolean }).notReloaded)).toBe(true);
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
