/**
 * The operator console in a real headless Chromium (Debian's chromium,
 * driven by playwright-core), over a real pipeline: an in-process publisher
 * and consumer on a real Postgres and Redis. It signs in, sees a stuck
 * stream flagged, replays a dead-letter group after the handler is fixed and
 * finds the event handled; signed out it is sent to sign-in, read-only it
 * sees no actions, a POST without the CSRF field gets 403, and without
 * ADMIN_API_KEY the console is closed.
 */
import { randomUUID } from 'node:crypto';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import express from 'express';
import type { RedisClient } from '@petcover/service-kit';
import pino from 'pino';
import { Registry } from 'prom-client';
import type { Browser, Page } from 'playwright-core';
import { createConsumer, createHandlerRegistry, createPublisher, enqueue, type Consumer, type Publisher } from '@petcover/outbox';
import { createTestDatabase, createTestRedis, trackedRedisPrefixes, uniqueGroupName, uniqueStreamName, waitFor, type TestDatabase } from '@petcover/outbox/testing';
import { z } from 'zod';
import { createConsoleRouter } from '../src/console/router';
import { ASSETS_PATH, pageAssetsRouter } from '../src/pages/render';
import { launchBrowser, screenshotsFor } from './support/browser';

const ADMIN_KEY = `admin-${randomUUID()}`;
const logger = pino({ level: 'silent' });
const prefixes = trackedRedisPrefixes();
const keyPrefix = prefixes.next();
const shots = screenshotsFor('console');
let testDb: TestDatabase;
let redis: RedisClient;
let browser: Browser;
let publisher: Publisher;
let consumer: Consumer;
const servers: Server[] = [];
const urls: Record<'rw' | 'ro' | 'closed', string> = { rw: '', ro: '', closed: '' };
const stream = uniqueStreamName('contracts');
const stuckStream = uniqueStreamName('stuck');
const group = uniqueGroupName('billing');
/** The handler fails while this is set: "the bug", fixed before the replay. */
let handlerBroken = true;

async function serve(options: { adminKey?: string; readOnly?: boolean }): Promise<string> {
  const app = express();
  app.use(ASSETS_PATH, pageAssetsRouter());
  app.use(
    '/console',
    createConsoleRouter({ adminKey: options.adminKey, readOnly: options.readOnly ?? false, db: testDb.db, sql: testDb.sql, redis, logger, keyPrefix, refreshSeconds: 2 }),
  );
  const server = await new Promise<Server>((resolve) => {
    const s = app.listen(0, '127.0.0.1', () => resolve(s));
  });
  servers.push(server);
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}/console`;
}

/** The trace the producer was in (a traceparent it gave): the journey shows its id. */
const TRACE_ID = '4bf92f3577b34da6a3ce929d0e0e4736';

async function enqueueContract(contractId: string): Promise<string> {
  const headers = { traceparent: `00-${TRACE_ID}-00f067aa0ba902b7-01` };
  const event = await testDb.db.transaction((tx) => enqueue(tx, { stream, type: 'ContractCreated', partitionKey: contractId, payload: { contractId }, headers }));
  return event.eventId;
}

async function signIn(page: Page, base: string): Promise<void> {
  await page.goto(base);
  await page.waitForURL(/\/console\/sign-in/);
  await page.fill('#key', ADMIN_KEY);
  await page.click('button[type=submit]');
  await page.waitForURL((url) => url.pathname === '/console');
}

beforeAll(async () => {
  testDb = await createTestDatabase();
  redis = createTestRedis();
  urls.rw = await serve({ adminKey: ADMIN_KEY });
  urls.ro = await serve({ adminKey: ADMIN_KEY, readOnly: true });
  urls.closed = await serve({});
  const registry = createHandlerRegistry().register('ContractCreated', {
    schema: z.object({ contractId: z.string() }),
    async handle(event) {
      if (handlerBroken) throw new TypeError(`cannot read plan of contract ${event.payload.contractId}`);
    },
  });
  publisher = createPublisher({ sql: testDb.sql, redis, logger, registry: new Registry(), keyPrefix, pollIntervalMs: 200 });
  consumer = createConsumer({ db: testDb.db, sql: testDb.sql, redis, registry, streams: [{ name: stream }], group, keyPrefix, maxAttempts: 1, blockMs: 200, logger });
  await publisher.start();
  consumer.start();
  browser = await launchBrowser();
}, 120_000);

afterAll(async () => {
  await browser?.close();
  await consumer?.stop();
  await publisher?.stop();
  for (const server of servers) await new Promise((resolve) => server.close(resolve));
  await prefixes.deleteAll(redis);
  redis.disconnect();
  await testDb.drop();
});

test('sign in, see the stuck stream flagged, replay a dead-letter group, find the event handled', async () => {
  // Two contracts whose handler fails: dead-lettered at once (maxAttempts 1), one fingerprint.
  const failed = [await enqueueContract(`contract-${randomUUID()}`), await enqueueContract(`contract-${randomUUID()}`)];
  await waitFor(async () => (await testDb.sql`SELECT 1 FROM events.dead_letter WHERE group_name = ${group} AND status = 'dead'`).length === 2, {
    timeoutMs: 30_000,
    description: 'two dead letters',
  });
  // A stream blocked by a lease whose owner never registered (pasted in psql): flagged at once.
  await testDb.sql`
    INSERT INTO events.stream_lease (stream_name, role, owner_id, lease_until, fencing_token)
    VALUES (${stuckStream}, 'publisher', 'old-pod-7f9c:1:ab12cd', now() + interval '1 hour', 1)`;
  await testDb.db.transaction((tx) => enqueue(tx, { stream: stuckStream, type: 'Queued', partitionKey: 'k', payload: {} }));

  const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
  await signIn(page, urls.rw);
  const flagged = page.locator(`tr.flagged[data-stream="${stuckStream}"]`);
  await flagged.waitFor();
  await page.locator('.problem[data-kind="lease_owner_dead"]').waitFor();
  expect(await page.locator('.problem[data-kind="lease_owner_dead"]').innerText()).toContain('events lease release');
  expect(await page.locator('.problem[data-kind="dead_letters"]').count()).toBe(1);
  // Auto-refresh (htmx) can be paused.
  expect(await page.locator('#live[hx-trigger]').count()).toBe(1);
  await shots.shoot(page, 'overview');
  await page.click('[data-testid=pause]');
  expect(await page.locator('#live[hx-trigger]').count()).toBe(0);

  // Dead letters: one group of two; open it, replay the whole group (with confirmation).
  await page.click('nav >> text=Dead letters');
  const groups = page.locator('[data-testid=dead-letter-groups] tbody tr');
  expect(await groups.count()).toBe(1);
  expect(await groups.first().innerText()).toMatch(/ContractCreated[\s\S]*TypeError[\s\S]*\b2\b/);
  await shots.shoot(page, 'dead-letter-groups');
  await groups.first().locator('a').click();
  expect(await page.locator('[data-testid=letters] tbody tr').count()).toBe(2);
  await shots.shoot(page, 'dead-letter-group');
  handlerBroken = false; // the fix is deployed
  await page.click('[data-testid=replay-group]');
  await page.locator('[data-testid=confirm]').waitFor();
  await shots.shoot(page, 'confirm-replay');
  await page.click('[data-testid=confirm]');
  await page.locator('.banner.ok', { hasText: '2 of 2 dead letter(s) replayed' }).waitFor();

  // Event lookup by id: the journey ends in "handled" for the group once the consumer has it.
  await waitFor(async () => (await testDb.sql`
    SELECT 1 FROM events.processed_event p JOIN events.dead_letter d ON d.event_id = p.event_id AND d.group_name = p.group_name
    WHERE p.group_name = ${group} AND p.event_id = ${failed[0]!} AND p.processed_at > d.dead_lettered_at`).length === 1, {
    timeoutMs: 30_000,
    description: 'replayed event handled',
  });
  await page.click('nav >> text=Event lookup');
  await page.fill('#q', failed[0]!);
  await page.click('form.search button');
  const journey = page.locator(`article.journey[data-event-id="${failed[0]}"]`);
  await journey.waitFor();
  await waitFor(
    async () => {
      await page.reload();
      return (await journey.locator(`li[data-group="${group}"]`).getAttribute('data-state')) === 'handled';
    },
    { timeoutMs: 20_000, intervalMs: 500, description: 'journey shows the group handled it' },
  );
  expect(await journey.innerText()).toMatch(/Outbox[\s\S]*Published[\s\S]*Redis[\s\S]*entry/);
  expect(await journey.locator('[data-trace-id]').innerText()).toBe(TRACE_ID);
  await shots.shoot(page, 'event-journey');

  // Nodes and leases: the live publisher and consumer, and the dead owner's lease released with one click.
  await page.click('nav >> text=Nodes & leases');
  expect(await page.locator(`[data-testid=nodes] tr[data-owner="${publisher.ownerId}"]`).innerText()).toContain('alive');
  expect(await page.locator(`[data-testid=nodes] tr[data-owner="${consumer.ownerId}"]`).innerText()).toContain('alive');
  await shots.shoot(page, 'nodes');
  await page.click('[data-testid=release-dead]');
  await page.locator('.banner.ok', { hasText: 'Released 1 lease(s) of dead owners' }).waitFor();
  await page.close();
}, 180_000);

test('signed out → sign-in; wrong key refused; read-only sees no actions; a POST without the CSRF field → 403; no ADMIN_API_KEY → closed', async () => {
  const context = await browser.newContext();
  const page = await context.newPage();
  for (const path of ['', '/dead-letters', '/nodes', '/events?q=x']) {
    await page.goto(`${urls.rw}${path}`);
    expect(new URL(page.url()).pathname).toBe('/console/sign-in');
  }
  await page.fill('#key', 'not-the-admin-key-at-all');
  await page.click('button[type=submit]');
  expect(await page.locator('.banner.error').innerText()).toContain('not the admin key');

  // A POST without the CSRF field, with a valid session cookie: refused, nothing changes.
  await signIn(page, urls.rw);
  const fingerprint = (await testDb.sql<{ n: string }[]>`SELECT count(*)::text AS n FROM events.dead_letter`)[0]!.n;
  const refused = await context.request.post(`${urls.rw}/leases/release-dead`, { form: {}, maxRedirects: 0 });
  expect(refused.status()).toBe(403);
  expect(await refused.text()).toContain('did not come from this site');
  expect((await testDb.sql<{ n: string }[]>`SELECT count(*)::text AS n FROM events.dead_letter`)[0]!.n).toBe(fingerprint);
  // Signing out ends the session.
  await page.click('text=Sign out');
  await page.goto(`${urls.rw}/nodes`);
  expect(new URL(page.url()).pathname).toBe('/console/sign-in');

  // Read-only: no action forms anywhere, and posting one anyway is refused.
  const readOnly = await context.newPage();
  await signIn(readOnly, urls.ro);
  expect(await readOnly.locator('[data-testid=read-only]').count()).toBe(1);
  await readOnly.goto(`${urls.ro}/nodes`);
  expect(await readOnly.locator('form[method=post]').count()).toBe(1); // sign-out only
  await readOnly.goto(`${urls.ro}/dead-letters`);
  await shots.shoot(readOnly, 'read-only-dead-letters');
  const token = (await context.cookies()).find((c) => c.name === 'petcover_csrf')!.value;
  const denied = await context.request.post(`${urls.ro}/leases/release-dead`, { form: { _csrf: token }, maxRedirects: 0 });
  expect(denied.status()).toBe(403);
  expect(await denied.text()).toContain('read-only');

  const closed = await fetch(urls.closed);
  expect(closed.status).toBe(503);
  expect(await closed.text()).toContain('set ADMIN_API_KEY');
  await context.close();
}, 120_000);
