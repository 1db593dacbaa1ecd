/**
 * Tenant isolation end to end (issue 19), with the three real apps (api,
 * events-publisher, events-consumer; run `pnpm build` first). Owner A's
 * signature-service handler fails (an injected fault, tests/fixtures/
 * tenant-fault-module.ts) for at least 10 s; owner B, started after A's
 * callbacks are in, is enrolled while A's fault still lasts: A's failing
 * event is parked with its key, not retried in front of B. Then A completes
 * in order once the fault clears (retries), or as its policy says: its head
 * dead-lettered (dead-letter-and-continue), or its key halted until an
 * operator releases it (halt). Each variant has its own database, Redis key
 * prefix and processes.
 */
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { domainMigrations, SIGNATURE_EVENTS_STREAM } from '@petcover/domain';
import { outboxMigrations, releaseParkedKey } from '@petcover/outbox';
import { createTestDatabase, createTestRedis, deleteKeysWithPrefix, freePort, testRedisUrl, uniqueGroupName, uniqueRedisPrefix, waitFor, type TestDatabase } from '@petcover/outbox/testing';
import { RunningApps } from './support/running-apps';
import { API_DIST, CONSUMER_MAIN, PUBLISHER_MAIN, requireBuiltApps } from './support/built-files';

const FAULT_MODULE = path.join(__dirname, 'fixtures', 'tenant-fault-module.ts');
const FAULT_MS = 10_000;
const run = promisify(execFile);

requireBuiltApps();

interface Pipeline {
  database: TestDatabase;
  env: NodeJS.ProcessEnv;
  apps: RunningApps;
  prefix: string;
  group: string;
  faultFile: string;
  ownerA: string;
  ownerB: string;
  stop(): Promise<void>;
}

/** api + publisher + consumer (the domain module behind the fault fixture), on their own database and prefix. */
async function startPipeline(consumerFlags: string[]): Promise<Pipeline> {
  const database = await createTestDatabase({ migrations: [outboxMigrations, domainMigrations], poolSize: 2 });
  await database.sql`CREATE TABLE public.fixture_handled (
    id bigserial PRIMARY KEY, event_id uuid NOT NULL, event_type text NOT NULL, partition_key text NOT NULL, outbox_id bigint NOT NULL, attempt int NOT NULL)`;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'petcover-tenant-'));
  const faultFile = path.join(dir, 'fault-active');
  fs.writeFileSync(faultFile, 'owner A downstream is down');
  const prefix = uniqueRedisPrefix();
  const group = uniqueGroupName('domain');
  const ownerA = randomUUID();
  const ownerB = randomUUID();
  const [apiPort, publisherPort, consumerPort] = await Promise.all([freePort(), freePort(), freePort()]);
  const env: NodeJS.ProcessEnv = {
    PATH: process.env.PATH,
    DATABASE_URL: database.url,
    REDIS_URL: testRedisUrl(),
    REDIS_KEY_PREFIX: prefix,
    LOG_LEVEL: 'warn',
    AUTH_SECRET: 'tenant-e2e-auth-secret-0123456789',
    SIGNATURE_API_KEY: 'tenant-e2e-signature-api-key',
    DOCUMENT_STORE_DIR: dir,
  };
  const apps = new RunningApps(env);
  const api = apps.start('api', [path.join(API_DIST, 'main.js')], { PORT: String(apiPort) });
  const publisher = apps.start('publisher', [PUBLISHER_MAIN, 'start', '--poll-interval', '1'], { HEALTH_PORT: String(publisherPort) });
  const consumer = apps.start('consumer', [CONSUMER_MAIN, 'start', '--group', group, '--module', FAULT_MODULE, ...consumerFlags], {
    HEALTH_PORT: String(consumerPort),
    FIXTURE_FAULT_OWNERS: ownerA,
    FIXTURE_FAULT_FILE: faultFile,
  });
  await Promise.all([apps.waitReady(api, apiPort), apps.waitReady(publisher, publisherPort), apps.waitReady(consumer, consumerPort)]);
  return {
    database, env, apps, prefix, group, faultFile, ownerA, ownerB,
    async stop() {
      await apps.stopAll();
      const redis = createTestRedis();
      await deleteKeysWithPrefix(redis, prefix);
      redis.disconnect();
      await database.drop();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

async function simulate(p: Pipeline, owner: string, wait: boolean): Promise<Record<string, string>> {
  const args = [path.join(API_DIST, 'commands/simulate-pet-signature-flow.js'), '--owner-global-user-id', owner, '--timeout', '90', ...(wait ? [] : ['--no-wait'])];
  const { stdout } = await run(process.execPath, args, { env: p.env });
  return Object.fromEntries([...stdout.matchAll(/^(\w+): (\S+)$/gm)].map((m) => [m[1]!, m[2]!]));
}

async function enrolled(p: Pipeline, petId: string, owner: string, waitSeconds: number): Promise<boolean> {
  const args = [path.join(API_DIST, 'commands/check-pet-enrollment.js'), '--pet-id', petId, '--owner', owner, '--wait', String(waitSeconds)];
  const result = await run(process.execPath, args, { env: p.env }).then(
    (r) => r.stdout,
    (e: { stdout: string }) => e.stdout,
  );
  return result.includes('RESULT: ENROLLED');
}

async function enrollmentRowOf(p: Pipeline, petId: string): Promise<boolean> {
  return (await p.database.sql`SELECT 1 FROM enrollment.enrollment WHERE pet_id = ${petId}`).length > 0;
}

/** Owner A's callbacks are in and its first SignatureReceived failed: its key is parked. */
async function waitForParkedKey(p: Pipeline, approvalRequestId: string, predicate: (row: { halted: boolean; parked: number }) => boolean = () => true) {
  return waitFor(async () => {
    const [row] = await p.database.sql<{ halted: boolean; parked: number }[]>`
      SELECT k.halted_at IS NOT NULL AS halted,
             (SELECT count(*)::int FROM events.parked_event e WHERE e.group_name = k.group_name AND e.partition_key = k.partition_key) AS parked
      FROM events.parked_key k WHERE k.group_name = ${p.group} AND k.partition_key = ${approvalRequestId}`;
    return row && predicate(row) ? row : null;
  }, { timeoutMs: 60_000, intervalMs: 100, description: `A's key ${approvalRequestId} parked` });
}

/** B's first SignatureReceived committed → B's PetEnrolled committed, on the database clock. */
async function commitToEnrolledMs(p: Pipeline, approvalRequestId: string, petId: string): Promise<number> {
  const [row] = await p.database.sql<{ ms: string }[]>`
    SELECT (extract(epoch FROM (SELECT created_at FROM events.outbox_event WHERE event_type = 'PetEnrolled' AND partition_key = ${petId}))
          - extract(epoch FROM (SELECT min(created_at) FROM events.outbox_event WHERE event_type = 'SignatureReceived' AND partition_key = ${approvalRequestId}))) * 1000 AS ms`;
  return Math.round(Number(row!.ms));
}

/** A's SignatureReceived events were handled in their outbox order (the journal the fixture writes in the handler's transaction). */
async function handledInOrder(p: Pipeline, approvalRequestId: string): Promise<{ outboxIds: number[]; inOrder: boolean }> {
  const rows = await p.database.sql<{ outbox_id: string }[]>`
    SELECT outbox_id::text FROM public.fixture_handled WHERE partition_key = ${approvalRequestId} ORDER BY id`;
  const outboxIds = rows.map((r) => Number(r.outbox_id));
  return { outboxIds, inOrder: outboxIds.every((id, i) => i === 0 || id > outboxIds[i - 1]!) };
}

jest.setTimeout(300_000);

describe('tenant isolation with the three apps: owner A fails, owner B does not wait', () => {
  test('a 10 s fault on A: B is enrolled while it lasts; A is enrolled after it clears, its events in order', async () => {
    // Retries from 500 ms (default 10 attempts, capped at 60 s) ride out the outage.
    const p = await startPipeline(['--retry-delay', '500']);
    try {
      const a = await simulate(p, p.ownerA, false);
      await waitForParkedKey(p, a.approval_request_id!);
      const faultStarted = Date.now();
      const b = await simulate(p, p.ownerB, true);
      expect(await enrolled(p, b.pet_id!, p.ownerB, 60)).toBe(true);
      const bWaitedMs = Date.now() - faultStarted;
      // B finished while A's fault still lasts: A is not enrolled, its key parked.
      expect(fs.existsSync(p.faultFile)).toBe(true);
      expect(await enrollmentRowOf(p, a.pet_id!)).toBe(false);
      const bCommitToEnrolled = await commitToEnrolledMs(p, b.approval_request_id!, b.pet_id!);
      expect(bCommitToEnrolled).toBeLessThan(FAULT_MS);

      await waitFor(() => Date.now() - faultStarted >= FAULT_MS, { timeoutMs: FAULT_MS + 1_000, description: 'the fault lasted 10 s' });
      fs.rmSync(p.faultFile);
      expect(await enrolled(p, a.pet_id!, p.ownerA, 120)).toBe(true);
      const aFaultToEnrolled = Date.now() - faultStarted;
      const order = await handledInOrder(p, a.approval_request_id!);
      expect(order.outboxIds.length).toBeGreaterThanOrEqual(3);
      expect(order.inOrder).toBe(true);
      const [letters] = await p.database.sql`SELECT count(*)::int AS n FROM events.dead_letter`;
      expect(letters!.n).toBe(0);
      process.stdout.write(
        `tenant isolation (retries): B commit→enrolled ${bCommitToEnrolled} ms (B done ${bWaitedMs} ms after A's fault began); ` +
          `A enrolled ${aFaultToEnrolled} ms after its fault began (fault ${FAULT_MS} ms); load ${os.loadavg()[0]!.toFixed(1)}\n`,
      );
    } finally {
      await p.stop();
    }
  });

  test('dead-letter-and-continue: A\'s failing head is dead-lettered; B is unaffected', async () => {
    const p = await startPipeline(['--max-attempts', '2', '--retry-delay', '200']);
    try {
      const a = await simulate(p, p.ownerA, false);
      await waitFor(async () => (await p.database.sql`SELECT 1 FROM events.dead_letter WHERE partition_key = ${a.approval_request_id!}`).length > 0, {
        timeoutMs: 60_000,
        description: 'A\'s head dead-lettered',
      });
      const b = await simulate(p, p.ownerB, true);
      expect(await enrolled(p, b.pet_id!, p.ownerB, 60)).toBe(true);
      const bCommitToEnrolled = await commitToEnrolledMs(p, b.approval_request_id!, b.pet_id!);
      expect(bCommitToEnrolled).toBeLessThan(FAULT_MS);
      const letters = await p.database.sql<{ partition_key: string; error_message: string; attempts: number }[]>`
        SELECT partition_key, error_message, attempts FROM events.dead_letter ORDER BY id`;
      expect(letters.length).toBeGreaterThanOrEqual(1);
      for (const l of letters) expect(l).toMatchObject({ partition_key: a.approval_request_id, attempts: 2, error_message: expect.stringContaining(`injected fault`) });
      expect(await enrollmentRowOf(p, a.pet_id!)).toBe(false);
      process.stdout.write(`tenant isolation (dead-letter-and-continue): B commit→enrolled ${bCommitToEnrolled} ms; load ${os.loadavg()[0]!.toFixed(1)}\n`);
    } finally {
      await p.stop();
    }
  });

  test('halt: A\'s key halts with its later events parked; B is unaffected; released after the fault, A completes in order', async () => {
    const p = await startPipeline(['--max-attempts', '2', '--retry-delay', '200', '--on-exhausted', 'halt']);
    try {
      const a = await simulate(p, p.ownerA, false);
      // The three callbacks (sent, signed, all signed): the first halted, the others parked behind it.
      await waitForParkedKey(p, a.approval_request_id!, (row) => row.halted && row.parked === 3);
      const b = await simulate(p, p.ownerB, true);
      expect(await enrolled(p, b.pet_id!, p.ownerB, 60)).toBe(true);
      const bCommitToEnrolled = await commitToEnrolledMs(p, b.approval_request_id!, b.pet_id!);
      expect(bCommitToEnrolled).toBeLessThan(FAULT_MS);
      expect(await enrollmentRowOf(p, a.pet_id!)).toBe(false);
      expect((await p.database.sql`SELECT 1 FROM events.dead_letter`).length).toBe(0);
      // Still halted without an operator, fault or not.
      fs.rmSync(p.faultFile);
      expect((await waitForParkedKey(p, a.approval_request_id!)).halted).toBe(true);
      await releaseParkedKey(p.database.db, { group: p.group, stream: SIGNATURE_EVENTS_STREAM, key: a.approval_request_id! });
      expect(await enrolled(p, a.pet_id!, p.ownerA, 120)).toBe(true);
      const order = await handledInOrder(p, a.approval_request_id!);
      expect(order.outboxIds).toHaveLength(3);
      expect(order.inOrder).toBe(true);
      process.stdout.write(`tenant isolation (halt): B commit→enrolled ${bCommitToEnrolled} ms; load ${os.loadavg()[0]!.toFixed(1)}\n`);
    } finally {
      await p.stop();
    }
  });
});
