/**
 * Out-of-order provider callbacks end to end (issue 19, item 4): two owners'
 * callbacks arrive interleaved, `signed` after `all_signed`, `sent` last,
 * duplicates among them, through the same receiving code as the webhook; a
 * publisher relays and the domain's consumer groups (enrollment and audit)
 * handle. Each pet ends enrolled exactly once: one contract, one
 * enrollment, one PetEnrolled, one audit entry; nothing dead-lettered.
 */
import { randomUUID } from 'node:crypto';
import { eq } from 'drizzle-orm';
import { waitFor } from '@petcover/outbox/testing';
import {
  addPet,
  buildSignatureCallback,
  choosePlan,
  confirmDraft,
  contract,
  createLocalDocumentStore,
  createManualSignatureProvider,
  enrollment,
  enrollmentAuditEntry,
  receiveSignatureCallback,
} from '@petcover/domain';
import { useDomainPipeline } from './domain-pipeline';

const API_KEY = 'out-of-order-api-key';
const pipeline = useDomainPipeline('out-of-order');

test('interleaved callbacks of two owners, signed after all_signed, sent last, duplicates: each pet enrolled exactly once', async () => {
  await pipeline.start();

  const provider = createManualSignatureProvider();
  const deps = { db: pipeline.database.db, documentStore: createLocalDocumentStore(pipeline.storeDir), signatureProvider: provider, autoEnroll: false };
  const owners = [randomUUID(), randomUUID()];
  const requests: { pet: { id: string }; request: { id: string; providerRequestId: string | null } }[] = [];
  for (const owner of owners) {
    const { pet, draft } = await addPet(pipeline.database.db, owner, { name: 'Bella', species: 'cat', breed: 'Siamese', birthDate: '2019-03-01' });
    await choosePlan(pipeline.database.db, owner, draft.id, 'basic');
    const request = (await confirmDraft(deps, owner, draft.id)).view.approvalRequest!;
    requests.push({ pet, request });
  }
  const now = Date.now();
  const callback = (i: number, eventType: string, secondsAgo: number) =>
    buildSignatureCallback({
      apiKey: API_KEY, eventType, signatureRequestId: requests[i]!.request.providerRequestId!, approvalRequestId: requests[i]!.request.id,
      eventTime: new Date(now - secondsAgo * 1000),
    });
  // Provider times say sent < signed < all_signed; delivery order says otherwise. Owner 0 and 1 interleaved;
  // a duplicate is the same signed body again, a provider retry the same event with a later time.
  const deliveries = [
    callback(0, 'signature_request_all_signed', 10),
    callback(1, 'signature_request_signed', 20),
    callback(0, 'signature_request_signed', 20),
    callback(1, 'signature_request_all_signed', 10),
    callback(0, 'signature_request_all_signed', 10),
    callback(1, 'signature_request_sent', 30),
    callback(0, 'signature_request_sent', 30),
    callback(1, 'signature_request_all_signed', 5),
    callback(0, 'signature_request_signed', 20),
  ];
  const outcomes = [];
  for (const body of deliveries) outcomes.push((await receiveSignatureCallback(pipeline.database.db, body, { apiKey: API_KEY, provider })).outcome);
  expect(outcomes).toContain('duplicate');

  for (const { pet } of requests) {
    await waitFor(async () => (await pipeline.database.db.select().from(enrollmentAuditEntry).where(eq(enrollmentAuditEntry.petId, pet.id))).length === 1, {
      timeoutMs: 60_000,
      description: `pet ${pet.id} enrolled and audited`,
    });
  }
  // Let every later event run through too before counting.
  await waitFor(async () => (await pipeline.database.sql`SELECT 1 FROM events.outbox_event WHERE published_at IS NULL`).length === 0, { timeoutMs: 30_000, description: 'outbox drained' });
  for (const { pet } of requests) {
    expect(await pipeline.database.db.select().from(enrollment).where(eq(enrollment.petId, pet.id))).toHaveLength(1);
    expect(await pipeline.database.db.select().from(contract).where(eq(contract.petId, pet.id))).toHaveLength(1);
    const [petEnrolled] = await pipeline.database.sql`SELECT count(*)::int AS n FROM events.outbox_event WHERE event_type = 'PetEnrolled' AND partition_key = ${pet.id}`;
    expect(petEnrolled!.n).toBe(1);
  }
  const audited = await pipeline.database.db.select().from(enrollmentAuditEntry);
  expect(audited).toHaveLength(2);
  expect(await pipeline.database.sql`SELECT 1 FROM events.dead_letter`).toHaveLength(0);
});
