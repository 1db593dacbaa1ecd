/**
 * The signature → contract → enrollment chain of SPEC §4, as functions that
 * run inside a caller's transaction (the consumer's, for handlers; the
 * confirmation's, in DEV_AUTO_ENROLL_PET mode). Each locks the row it changes
 * (SELECT … FOR UPDATE) before reading its state, so two concurrent changes
 * of one approval request, package or contract serialise, and the events
 * they enqueue get outbox ids in the order the changes happened.
 * Each is idempotent: applied twice, the second run changes nothing and
 * emits nothing.
 */
import { and, eq, sql } from 'drizzle-orm';
import { enqueue, PermanentError, type Transaction } from '@petcover/outbox';
import { ApprovalRequestClosed, ContractCreated, LegalDocumentsSigned, PetEnrolled, type SignatureEventType } from '../events';
import {
  approvalRequest,
  contract,
  contractingPackage,
  dependentDraft,
  enrollment,
  enrollmentAuditEntry,
  insurancePlan,
  packageDocument,
  petProfile,
  signedDocument,
  type ApprovalStatus,
} from '../schema';

/**
 * Statuses only move forward; a late `sent` after `all_signed` changes
 * nothing, and a terminal status (all_signed, declined, canceled, expired)
 * never changes again.
 */
const APPROVAL_RANK: Record<ApprovalStatus, number> = {
  created: 0,
  dispatching: 0,
  dispatch_failed: 0,
  dispatched: 0,
  sent: 1,
  signed: 2,
  all_signed: 3,
  declined: 3,
  canceled: 3,
  expired: 3,
};
const CALLBACK_STATUS: Record<SignatureEventType, ApprovalStatus> = {
  signature_request_sent: 'sent',
  signature_request_signed: 'signed',
  signature_request_all_signed: 'all_signed',
  signature_request_declined: 'declined',
  signature_request_canceled: 'canceled',
  signature_request_expired: 'expired',
};

export type ContractRow = typeof contract.$inferSelect;
export type EnrollmentRow = typeof enrollment.$inferSelect;

export interface SignatureReceivedInput {
  approvalRequestId: string;
  callbackEventType: SignatureEventType;
  callbackEventTime: string;
}

/**
 * Applies one provider callback to its approval request. On
 * `signature_request_all_signed` every document of the package is recorded as
 * signed and LegalDocumentsSigned is enqueued (once). On declined, canceled
 * or expired the request and its package are closed and
 * ApprovalRequestClosed is enqueued (once).
 * Throws PermanentError when the approval request does not exist.
 */
export async function applySignatureReceived(tx: Transaction, input: SignatureReceivedInput): Promise<{ legalDocumentsSigned: boolean }> {
  const [request] = await tx.select().from(approvalRequest).where(eq(approvalRequest.id, input.approvalRequestId)).for('update');
  if (!request) throw new PermanentError(`SignatureReceived references missing ApprovalRequest ${input.approvalRequestId}`);

  const target = CALLBACK_STATUS[input.callbackEventType];
  if (APPROVAL_RANK[target] <= APPROVAL_RANK[request.status]) return { legalDocumentsSigned: false };

  const eventTime = new Date(input.callbackEventTime);
  await tx
    .update(approvalRequest)
    .set({
      status: target,
      dispatchedAt: request.dispatchedAt ?? eventTime,
      completedAt: APPROVAL_RANK[target] === 3 ? eventTime : request.completedAt,
      updatedAt: sql`now()`,
    })
    .where(eq(approvalRequest.id, request.id));
  if (target === 'declined' || target === 'canceled' || target === 'expired') {
    await closePackage(tx, request.packageId, request.id, target, eventTime);
    return { legalDocumentsSigned: false };
  }
  if (target !== 'all_signed') return { legalDocumentsSigned: false };

  return { legalDocumentsSigned: await markPackageSigned(tx, request.packageId, request.id, eventTime) };
}

/** Closes a package whose request ended unsigned; a signed or approved package is left alone. */
async function closePackage(tx: Transaction, packageId: string, approvalRequestId: string, outcome: 'declined' | 'canceled' | 'expired', closedAt: Date): Promise<void> {
  const [pkg] = await tx.select().from(contractingPackage).where(eq(contractingPackage.id, packageId)).for('update');
  if (!pkg) throw new PermanentError(`ApprovalRequest ${approvalRequestId} references missing ContractingPackage ${packageId}`);
  if (pkg.status !== 'pending_signatures') return;
  await tx.update(contractingPackage).set({ status: 'closed', updatedAt: sql`now()` }).where(eq(contractingPackage.id, packageId));
  await enqueue(tx, ApprovalRequestClosed.build({ approvalRequestId, packageId, petId: pkg.petId, outcome, closedAt: closedAt.toISOString() }));
}

/**
 * Records every document of the package as signed and moves the package to
 * `signed`, enqueuing LegalDocumentsSigned. No-op (false) when already done.
 */
export async function markPackageSigned(tx: Transaction, packageId: string, approvalRequestId: string, signedAt: Date): Promise<boolean> {
  const [pkg] = await tx.select().from(contractingPackage).where(eq(contractingPackage.id, packageId)).for('update');
  if (!pkg) throw new PermanentError(`ApprovalRequest ${approvalRequestId} references missing ContractingPackage ${packageId}`);
  if (pkg.status !== 'pending_signatures') return false;

  const documents = await tx.select().from(packageDocument).where(eq(packageDocument.packageId, packageId));
  if (documents.length > 0) {
    await tx
      .insert(signedDocument)
      .values(documents.map((d) => ({ documentId: d.id, approvalRequestId, sha256: d.sha256, signedAt })))
      .onConflictDoNothing({ target: signedDocument.documentId });
  }
  await tx.update(contractingPackage).set({ status: 'signed', updatedAt: sql`now()` }).where(eq(contractingPackage.id, packageId));
  await enqueue(
    tx,
    LegalDocumentsSigned.build({
      packageId,
      approvalRequestId,
      petId: pkg.petId,
      documentIds: documents.map((d) => d.id),
      signedAt: signedAt.toISOString(),
    }),
  );
  return true;
}

/**
 * Approves a signed package and creates its contract, enqueuing
 * ContractCreated on `stream:contracting:contract_changes` (partition key =
 * contract id). Returns the contract (existing one when already created).
 * Throws PermanentError when the package does not exist.
 */
export async function approvePackageAndCreateContract(tx: Transaction, packageId: string, cause = 'LegalDocumentsSigned'): Promise<ContractRow> {
  const [pkg] = await tx.select().from(contractingPackage).where(eq(contractingPackage.id, packageId)).for('update');
  if (!pkg) throw new PermanentError(`${cause} references missing ContractingPackage ${packageId}`);
  const [existing] = await tx.select().from(contract).where(eq(contract.packageId, packageId));
  if (existing) return existing;
  if (pkg.status === 'pending_signatures') {
    throw new PermanentError(`${cause}: ContractingPackage ${packageId} still has documents waiting for signature`);
  }

  const [plan] = await tx.select().from(insurancePlan).where(eq(insurancePlan.code, pkg.planCode));
  if (!plan) throw new PermanentError(`ContractingPackage ${packageId} references missing InsurancePlan ${pkg.planCode}`);

  await tx
    .update(contractingPackage)
    .set({ status: 'approved', approvedAt: sql`now()`, updatedAt: sql`now()` })
    .where(eq(contractingPackage.id, packageId));
  const [created] = await tx
    .insert(contract)
    .values({
      packageId,
      petId: pkg.petId,
      ownerGlobalUserId: pkg.ownerGlobalUserId,
      planCode: plan.code,
      monthlyPremiumCents: plan.monthlyPremiumCents,
      status: 'created',
      startsOn: sql`current_date`,
    })
    .returning();
  const row = created as ContractRow;
  await enqueue(
    tx,
    ContractCreated.build({
      contractId: row.id,
      packageId,
      petId: row.petId,
      ownerGlobalUserId: row.ownerGlobalUserId,
      planCode: row.planCode,
      monthlyPremiumCents: row.monthlyPremiumCents,
      startsOn: row.startsOn,
    }),
  );
  return row;
}

/**
 * Enrolls the pet of a contract: enrollment row, contract `active`, pet
 * `enrolled`, draft at `success`, PetEnrolled enqueued. Returns the
 * enrollment (the existing one when the pet was already enrolled by it).
 * Throws PermanentError when the contract does not exist.
 */
export async function enrollPetForContract(tx: Transaction, contractId: string, cause = 'ContractCreated'): Promise<EnrollmentRow> {
  const [row] = await tx.select().from(contract).where(eq(contract.id, contractId)).for('update');
  if (!row) throw new PermanentError(`${cause} references missing Contract ${contractId}`);
  const [existing] = await tx.select().from(enrollment).where(eq(enrollment.contractId, contractId));
  if (existing) return existing;

  const [pet] = await tx.select().from(petProfile).where(eq(petProfile.id, row.petId)).for('update');
  if (!pet) throw new PermanentError(`Contract ${contractId} references missing PetProfile ${row.petId}`);

  const [created] = await tx.insert(enrollment).values({ petId: row.petId, contractId, ownerGlobalUserId: row.ownerGlobalUserId }).returning();
  const enrolled = created as EnrollmentRow;
  await tx.update(contract).set({ status: 'active', updatedAt: sql`now()` }).where(eq(contract.id, contractId));
  await tx.update(petProfile).set({ status: 'enrolled', updatedAt: sql`now()` }).where(eq(petProfile.id, row.petId));
  await tx.update(dependentDraft).set({ step: 'success', updatedAt: sql`now()` }).where(eq(dependentDraft.petId, row.petId));
  await enqueue(
    tx,
    PetEnrolled.build({
      petId: row.petId,
      contractId,
      enrollmentId: enrolled.id,
      ownerGlobalUserId: row.ownerGlobalUserId,
      enrolledAt: enrolled.enrolledAt.toISOString(),
    }),
  );
  return enrolled;
}

/** The audit group's effect of a PetEnrolled event: one row per event id. Idempotent. */
export async function recordEnrollmentAudit(
  tx: Transaction,
  entry: { eventId: string; petId: string; contractId: string; groupName: string },
): Promise<boolean> {
  const inserted = await tx.insert(enrollmentAuditEntry).values(entry).onConflictDoNothing().returning({ eventId: enrollmentAuditEntry.eventId });
  return inserted.length > 0;
}

/** Whether the pet of `petId` owned by `owner` is enrolled; undefined when no such pet. */
export async function findEnrollmentOfPet(
  db: Pick<Transaction, 'select'>,
  petId: string,
  owner: string,
): Promise<{ pet: typeof petProfile.$inferSelect; enrollment: EnrollmentRow | undefined } | undefined> {
  const [pet] = await db
    .select()
    .from(petProfile)
    .where(and(eq(petProfile.id, petId), eq(petProfile.ownerGlobalUserId, owner)));
  if (!pet) return undefined;
  const [row] = await db.select().from(enrollment).where(eq(enrollment.petId, petId));
  return { pet, enrollment: row };
}
