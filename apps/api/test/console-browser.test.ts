/**
 * The operator console in a real headless Chromium (Debian's chromium,
 * driven by playwright-core), over a real pipeline: an in-process publisher
 * and consumer on a real Postgres and Redis. It signs in, sees a stuck
 * stream flagged, replays a dead-letter group after the handler is fixed and
 * finds the event handled; signed out it is sent to sign-in, read-only it
 * sees no actions, a POST without the CSRF field gets 403, and without
 * ADMIN_API_KEY the console is closed. A halted key (issue 19) is flagged,
 * listed with its head event and error, and released from the console.
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

test('a halted key is flagged on the overview and listed with its head event and error; Release (confirmed) retries it and the key completes in order', async () => {
  // A second group whose handler fails for one pet until the fix: the key halts after two attempts.
  const parkedStream = uniqueStreamName('pets');
  const parkedGroup = uniqueGroupName('enrollment');
  const brokenKeys = new Set(['pet-a']);
  const handled: string[] = [];
  const registry = createHandlerRegistry().register('PetEnrolled', {
    schema: z.object({ seq: z.number().int() }),
    async handle(event) {
      if (brokenKeys.has(event.partitionKey)) throw new Error(`insurer refuses pet ${event.partitionKey}: plan missing`);
      handled.push(`${event.partitionKey}:${event.payload.seq}`);
    },
  });
  const parkedConsumer = createConsumer({
    db: testDb.db, sql: testDb.sql, redis, logger, registry, streams: [{ name: parkedStream }], group: parkedGroup, keyPrefix,
    blockMs: 200, retryBaseDelayMs: 20, retryMaxDelayMs: 50, maxAttempts: 2, onExhausted: 'halt', parkingRecheckMs: 100,
  });
  parkedConsumer.start();
  try {
    const eventIds: string[] = [];
    for (const [key, seq] of [['pet-a', 1], ['pet-b', 1], ['pet-a', 2]] as const) {
      const event = await testDb.db.transaction((tx) => enqueue(tx, { stream: parkedStream, type: 'PetEnrolled', partitionKey: key, payload: { seq } }));
      eventIds.push(event.eventId);
    }
    await waitFor(async () => (await testDb.sql`SELECT 1 FROM events.parked_key WHERE group_name = ${parkedGroup} AND halted_at IS NOT NULL`).length === 1, {
      timeoutMs: 30_000,
      description: 'pet-a halted',
    });
    expect(handled).toEqual(['pet-b:1']);

    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    await signIn(page, urls.rw);
    const problem = page.locator('.problem[data-kind="halted_keys"]', { hasText: parkedGroup });
    await problem.waitFor();
    expect(await problem.innerText()).toContain('key pet-a halted');
    await shots.shoot(page, 'overview-halted-key');
    await problem.locator('[data-testid=open-parked-keys]').click();
    await page.waitForURL((url) => url.pathname === '/console/parked-keys');

    const row = page.locator(`[data-testid=parked-keys] tr[data-group="${parkedGroup}"][data-key="pet-a"]`);
    expect(await row.getAttribute('data-state')).toBe('halted');
    const text = await row.innerText();
    expect(text).toContain('halted');
    expect(text).toContain(eventIds[0]!); // the head event
    expect(text).toContain('insurer refuses pet pet-a: plan missing');
    expect(text).toMatch(/PetEnrolled/);
    expect(await row.locator('td.num').allInnerTexts()).toEqual(['2', '2']); // attempts, events waiting
    await shots.shoot(page, 'parked-keys');

    // Release asks first; Cancel changes nothing.
    await row.locator('[data-testid=release-key]').click();
    await page.locator('[data-testid=confirm]').waitFor();
    expect(await page.locator('h1').innerText()).toBe('Release key pet-a?');
    await shots.shoot(page, 'confirm-release');
    await page.click('text=Cancel');
    await row.waitFor();
    expect((await testDb.sql`SELECT 1 FROM events.parked_key WHERE group_name = ${parkedGroup} AND halted_at IS NOT NULL`).length).toBe(1);

    // A post without the CSRF field, and one from a read-only session: 403, the key stays halted.
    const form = { group: parkedGroup, stream: parkedStream, key: 'pet-a' };
    const noCsrf = await page.context().request.post(`${urls.rw}/parked-keys/release`, { form, maxRedirects: 0 });
    expect(noCsrf.status()).toBe(403);
    const readOnlyContext = await browser.newContext();
    const readOnly = await readOnlyContext.newPage();
    await signIn(readOnly, urls.ro);
    await readOnly.goto(`${urls.ro}/parked-keys`);
    expect(await readOnly.locator(`[data-testid=parked-keys] tr[data-key="pet-a"]`).count()).toBe(1);
    expect(await readOnly.locator('[data-testid=release-key]').count()).toBe(0);
    const roToken = (await readOnlyContext.cookies()).find((c) => c.name === 'petcover_csrf')!.value;
    const denied = await readOnlyContext.request.post(`${urls.ro}/parked-keys/discard`, { form: { ...form, _csrf: roToken }, maxRedirects: 0 });
    expect(denied.status()).toBe(403);
    expect(await denied.text()).toContain('read-only');
    await readOnlyContext.close();
    const [still] = await testDb.sql<{ attempts: number; halted: boolean }[]>`
      SELECT attempts, halted_at IS NOT NULL AS halted FROM events.parked_key WHERE group_name = ${parkedGroup}`;
    expect(still).toEqual({ attempts: 2, halted: true });
    expect((await testDb.sql`SELECT 1 FROM events.dead_letter WHERE group_name = ${parkedGroup}`).length).toBe(0);

    brokenKeys.clear(); // the fix is deployed
    await row.locator('[data-testid=release-key]').click();
    await page.click('[data-testid=confirm]');
    await page.locator('.banner.ok', { hasText: 'Released key pet-a' }).waitFor();
    await waitFor(async () => handled.length === 3, { timeoutMs: 30_000, description: 'pet-a handled after the release' });
    expect(handled).toEqual(['pet-b:1', 'pet-a:1', 'pet-a:2']);
    await waitFor(
      async () => {
        await page.reload();
        return (await page.locator('[data-testid=no-parked-keys]').count()) === 1;
      },
      { timeoutMs: 20_000, intervalMs: 500, description: 'the console shows no parked key' },
    );
    await shots.shoot(page, 'parked-keys-empty');

    // Releasing it again (a stale page, another operator first): 404 naming the key.
    const stale = await page.context().request.post(`${urls.rw}/parked-keys/release`, {
      form: { _csrf: (await page.context().cookies()).find((c) => c.name === 'petcover_csrf')!.value, group: parkedGroup, stream: parkedStream, key: 'pet-a' },
      maxRedirects: 0,
    });
    expect(stale.status()).toBe(404);
    expect(await stale.text()).toMatch(new RegExp(`No parked key (&quot;|")pet-a(&quot;|") in group ${parkedGroup}`));
    await page.close();
  } finally {
    await parkedConsumer.stop();
  }
}, 180_000);
