/**
 * End to end with real processes, against the built apps (run `pnpm build`
 * first; turbo's test task does): api + events-publisher + events-consumer
 * (domain group) + a second events-consumer (enrollment-audit group), on their
 * own database and Redis key prefix. simulate-pet-signature-flow →
 * check-pet-enrollment --wait → RESULT: ENROLLED; PetEnrolled handled by the
 * second group; a callback naming an unknown approval request ends as a dead
 * letter whose error names it.
 */
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { and, eq } from 'drizzle-orm';
import { domainMigrations, enrollmentAuditEntry, SignatureReceived } from '@petcover/domain';
import { deadLetter, enqueue, outboxMigrations, processedEvent, outboxEvent } from '@petcover/outbox';
import { createTestDatabase, createTestRedis, deleteKeysWithPrefix, freePort, uniqueGroupName, uniqueRedisPrefix, waitFor, type TestDatabase } from '@petcover/outbox/testing';
import { signOwnerToken } from '../src/auth/owner-token';
import { appsEnvironment, RunningApps } from './support/running-apps';
import { API_DIST, CONSUMER_MAIN, PUBLISHER_MAIN, REPO_ROOT, requireBuiltApps } from './support/built-files';

const AUDIT_MODULE = path.join(REPO_ROOT, 'packages/domain/dist/consumer-modules/enrollment-audit.js');
const AUTH_SECRET = 'e2e-auth-secret-0123456789abcdef';
const SIGNATURE_API_KEY = 'e2e-signature-api-key';
const run = promisify(execFile);

requireBuiltApps([AUDIT_MODULE]);

describe('enrollment end to end with real processes', () => {
  // Process start-up plus a chain of four events through Redis; generous for a loaded CI machine.
  jest.setTimeout(120_000);
  let database: TestDatabase;
  let storeDir: string;
  let apps: RunningApps;
  const prefix = uniqueRedisPrefix();
  const domainGroup = uniqueGroupName('domain');
  const auditGroup = uniqueGroupName('audit');
  let env: NodeJS.ProcessEnv;
  let apiUrl: string;

  beforeAll(async () => {
    database = await createTestDatabase({ migrations: [outboxMigrations, domainMigrations], poolSize: 2 });
    storeDir = fs.mkdtempSync(path.join(os.tmpdir(), 'petcover-e2e-docs-'));
    const [apiPort, publisherPort, consumerPort, auditPort] = await Promise.all([freePort(), freePort(), freePort(), freePort()]);
    env = appsEnvironment({ databaseUrl: database.url, redisKeyPrefix: prefix, authSecret: AUTH_SECRET, signatureApiKey: SIGNATURE_API_KEY, storeDir });
    apiUrl = `http://127.0.0.1:${apiPort}`;
    apps = new RunningApps(env);
    const start = apps.start.bind(apps);
    const waitReady = apps.waitReady.bind(apps);
    const api = start('api', [path.join(API_DIST, 'main.js')], { PORT: String(apiPort) });
    const publisher = start('publisher', [PUBLISHER_MAIN, 'start', '--poll-interval', '1'], { HEALTH_PORT: String(publisherPort) });
    const consumer = start('consumer', [CONSUMER_MAIN, 'start', '--group', domainGroup], { HEALTH_PORT: String(consumerPort) });
    const audit = start('audit-consumer', [CONSUMER_MAIN, 'start', '--group', auditGroup, '--module', AUDIT_MODULE], { HEALTH_PORT: String(auditPort) });
    await Promise.all([waitReady(api, apiPort), waitReady(publisher, publisherPort), waitReady(consumer, consumerPort), waitReady(audit, auditPort)]);
  });

  afterAll(async () => {
    await apps?.stopAll();
    const redis = createTestRedis();
    await deleteKeysWithPrefix(redis, prefix); // the streams and the publisher's side keys
    redis.disconnect();
    await database?.drop();
    if (storeDir) fs.rmSync(storeDir, { recursive: true, force: true });
  });

  test('simulate → check-pet-enrollment --wait → RESULT: ENROLLED, and PetEnrolled reaches a second group', async () => {
    const owner = randomUUID();
    const simulated = await run(process.execPath, [path.join(API_DIST, 'commands/simulate-pet-signature-flow.js'), '--owner-global-user-id', owner, '--timeout', '45'], { env });
    const printed = Object.fromEntries([...simulated.stdout.matchAll(/^(\w+): (\S+)$/gm)].map((m) => [m[1], m[2]]));
    expect(printed).toEqual(expect.objectContaining({ pet_id: expect.any(String), contract_id: expect.any(String), approval_request_id: expect.any(String) }));

    const checked = await run(process.execPath, [path.join(API_DIST, 'commands/check-pet-enrollment.js'), '--pet-id', printed.pet_id!, '--owner', owner, '--wait', '45'], { env });
    expect(checked.stdout).toContain('RESULT: ENROLLED');
    expect(checked.stdout).toContain(`contract_id: ${printed.contract_id}`);

    const enrollment = await fetch(`${apiUrl}/v1/pets/${printed.pet_id}/enrollment`, { headers: { authorization: `Bearer ${await signOwnerToken({ secret: AUTH_SECRET }, owner)}` } });
    expect(await enrollment.json()).toMatchObject({ status: 'enrolled', enrollment: { contractId: printed.contract_id } });

    const [petEnrolled] = await database.db.select().from(outboxEvent).where(and(eq(outboxEvent.eventType, 'PetEnrolled'), eq(outboxEvent.partitionKey, printed.pet_id!)));
    expect(petEnrolled).toBeDefined();
    await waitFor(
      async () => (await database.db.select().from(enrollmentAuditEntry).where(and(eq(enrollmentAuditEntry.petId, printed.pet_id!), eq(enrollmentAuditEntry.groupName, auditGroup)))).length === 1,
      { timeoutMs: 30_000, intervalMs: 200, description: 'PetEnrolled handled by the audit group' },
    );
    const inbox = await database.db.select().from(processedEvent).where(eq(processedEvent.eventId, petEnrolled!.eventId));
    expect(inbox.map((r) => r.groupName)).toEqual([auditGroup]);
  });

  test('check-pet-enrollment explains a malformed uuid and an unknown pet (exit 64), and says NOT_ENROLLED (exit 1)', async () => {
    const check = (args: string[]) =>
      run(process.execPath, [path.join(API_DIST, 'commands/check-pet-enrollment.js'), ...args], { env }).then(
        (r) => ({ code: 0, out: r.stdout + r.stderr }),
        (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, out: e.stdout + e.stderr }),
      );
    const owner = randomUUID();
    expect(await check(['--pet-id', 'nope', '--owner', owner])).toEqual({ code: 64, out: expect.stringContaining('--pet-id must be a UUID (got "nope")') });
    const unknownPet = randomUUID();
    expect(await check(['--pet-id', unknownPet, '--owner', owner])).toEqual({ code: 64, out: expect.stringContaining(`no pet ${unknownPet} for owner ${owner}`) });

    const token = await signOwnerToken({ secret: AUTH_SECRET }, owner);
    const added = await fetch(`${apiUrl}/v1/pets`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'Momo', species: 'cat', breed: 'Persian', birthDate: '2022-02-02' }),
    });
    const { pet } = (await added.json()) as { pet: { id: string } };
    expect(await check(['--pet-id', pet.id, '--owner', owner])).toEqual({ code: 1, out: expect.stringContaining('RESULT: NOT_ENROLLED') });
  });

  test('a SignatureReceived naming an unknown approval request ends as a dead letter whose error names it', async () => {
    // The webhook no longer records callbacks for requests we never sent (401),
    // so the event is enqueued as a corrupted or replayed one would arrive.
    const unknown = randomUUID();
    await database.db.transaction((tx) =>
      enqueue(
        tx,
        SignatureReceived.build({
          approvalRequestId: unknown,
          provider: 'manual',
          providerRequestId: 'never-sent',
          callbackEventType: 'signature_request_all_signed',
          callbackEventTime: new Date().toISOString(),
        }),
      ),
    );
    const letter = await waitFor(
      async () => (await database.db.select().from(deadLetter).where(and(eq(deadLetter.groupName, domainGroup), eq(deadLetter.partitionKey, unknown))))[0],
      { timeoutMs: 30_000, intervalMs: 200, description: 'dead letter for the unknown approval request' },
    );
    expect(letter.errorMessage).toContain(`SignatureReceived references missing ApprovalRequest ${unknown}`);
  });
});
