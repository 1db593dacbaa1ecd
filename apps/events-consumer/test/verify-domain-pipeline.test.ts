/**
 * `events verify` on the real enrollment pipeline: the wizard and the
 * signature callbacks enqueue, a publisher relays, the two domain consumer
 * groups handle. Several event types reach groups that have no handler for
 * them (ContractingPackageCreated on the package stream, PetProfileCreated and
 * PlanChosen on the pet stream): verify must say OK and report them as
 * skipped, not missing (issue 12).
 */
import { randomUUID } from 'node:crypto';
import {
  createHandlerRegistry,
  redisStreamKey,
  type ConsumerModule,
} from '@petcover/outbox';
import { formatVerifyReport, verifyPipeline } from '@petcover/outbox/verify';
import { waitFor } from '@petcover/outbox/testing';
import {
  addPet,
  buildSignatureCallback,
  choosePlan,
  confirmDraft,
  createLocalDocumentStore,
  createManualSignatureProvider,
  domainConsumerModule,
  enrollmentAuditConsumerModule,
  enrollmentAuditEntry,
  receiveSignatureCallback,
  SIGNING_EVENT_TYPES,
} from '@petcover/domain';
import { eq } from 'drizzle-orm';
import { useDomainPipeline } from './domain-pipeline';

const API_KEY = 'verify-domain-api-key';
const pipeline = useDomainPipeline('verify-docs');

test('verify is OK on the enrollment pipeline; types a group has no handler for are skipped, not missing', async () => {
  await pipeline.start();

  const owner = randomUUID();
  const deps = { db: pipeline.database.db, documentStore: createLocalDocumentStore(pipeline.storeDir), signatureProvider: createManualSignatureProvider(), autoEnroll: false };
  const { pet, draft } = await addPet(pipeline.database.db, owner, { name: 'Bella', species: 'cat', breed: 'Siamese', birthDate: '2019-03-01' });
  await choosePlan(pipeline.database.db, owner, draft.id, 'basic');
  const request = (await confirmDraft(deps, owner, draft.id)).view.approvalRequest!;
  for (const eventType of SIGNING_EVENT_TYPES) {
    const body = buildSignatureCallback({ apiKey: API_KEY, eventType, signatureRequestId: request.providerRequestId!, approvalRequestId: request.id });
    await receiveSignatureCallback(pipeline.database.db, body, { apiKey: API_KEY, provider: deps.signatureProvider });
  }

  // The last link of the chain: the audit group recorded the PetEnrolled event.
  await waitFor(async () => (await pipeline.database.db.select().from(enrollmentAuditEntry).where(eq(enrollmentAuditEntry.petId, pet.id))).length === 1, {
    timeoutMs: 60_000,
    description: 'the pet enrolled and audited through publisher and consumers',
  });
  // Every group has taken everything relayed to it (nothing pending, nothing undelivered).
  await waitFor(async () => {
    const [queued] = await pipeline.database.sql`SELECT count(*)::int AS n FROM events.outbox_event WHERE published_at IS NULL`;
    if (queued?.n !== 0) return false;
    for (const { name } of [...domainConsumerModule.streams, ...enrollmentAuditConsumerModule.streams]) {
      const key = redisStreamKey(name, pipeline.prefix); // one partition each
      const groups = (await pipeline.redis.xinfo('GROUPS', key)) as unknown[][];
      for (const fields of groups) {
        const field = (name: string) => fields[fields.indexOf(name) + 1];
        if (Number(field('pending')) !== 0 || Number(field('lag')) !== 0) return false;
      }
    }
    return true;
  }, { timeoutMs: 30_000, description: 'every consumer group drained' });

  const report = await verifyPipeline(pipeline.database.sql, pipeline.redis, { keyPrefix: pipeline.prefix });
  const text = formatVerifyReport(report);
  expect({ ok: report.ok, missing: report.missing, text }).toMatchObject({ ok: true, missing: 0 });
  const enrollmentGroup = report.groups.find((g) => g.group === 'enrollment');
  const auditGroup = report.groups.find((g) => g.group === 'enrollment-audit');
  expect(enrollmentGroup?.skippedTypes.map((s) => s.type)).toContain('ContractingPackageCreated');
  expect(auditGroup?.skippedTypes.map((s) => s.type)).toEqual(expect.arrayContaining(['PetProfileCreated', 'PlanChosen']));
  expect(enrollmentGroup).toMatchObject({ missing: 0, deadLettered: 0 });
  expect(auditGroup).toMatchObject({ missing: 0, processed: 1 });
  expect(text).toMatch(/^verify: OK/);
  expect(text).toContain('ContractingPackageCreated');

  // Told the registries' types, verify agrees.
  const types = (module: ConsumerModule) => {
    const registry = createHandlerRegistry();
    module.register(registry);
    return registry.eventTypes();
  };
  const told = await verifyPipeline(pipeline.database.sql, pipeline.redis, {
    keyPrefix: pipeline.prefix,
    handledTypes: { enrollment: types(domainConsumerModule), 'enrollment-audit': types(enrollmentAuditConsumerModule) },
  });
  expect(told).toMatchObject({ ok: true, missing: 0, skipped: report.skipped });
});
