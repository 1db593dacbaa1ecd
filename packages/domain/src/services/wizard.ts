/**
 * The enrollment wizard (SPEC §4): Profile → Plan → Confirmation →
 * LegalDocsSigning → Success. Every function is scoped to one owner: a row of
 * another owner is reported as NotFoundError, exactly like a missing one.
 * Every change and the event it emits commit in one transaction.
 */
import { randomUUID } from 'node:crypto';
import { and, desc, eq, isNull, sql } from 'drizzle-orm';
import type { Logger } from 'pino';
import { enqueue, type Database, type Transaction } from '@petcover/outbox';
import { ContractingPackageCreated, PetProfileCreated, PlanChosen } from '../events';
import { renderPackageDocuments } from '../documents/render-package-documents';
import type { DocumentStore } from '../documents/document-store';
import { NotFoundError, StateConflictError, UnknownPlanError } from '../errors';
import type { SignatureProvider } from '../signature/provider';
import {
  approvalRequest,
  contract,
  contractingPackage,
  dependentDraft,
  enrollment,
  packageDocument,
  petProfile,
  type Species,
} from '../schema';
import { approvePackageAndCreateContract, enrollPetForContract, markPackageSigned } from './contracting';
import { findPlan } from './plans';

export type PetRow = typeof petProfile.$inferSelect;
export type DraftRow = typeof dependentDraft.$inferSelect;
export type PackageRow = typeof contractingPackage.$inferSelect;
export type ApprovalRequestRow = typeof approvalRequest.$inferSelect;
export type PackageDocumentRow = typeof packageDocument.$inferSelect;
export type ContractRow = typeof contract.$inferSelect;
export type EnrollmentRow = typeof enrollment.$inferSelect;

export interface WizardDeps {
  db: Database;
  documentStore: DocumentStore;
  signatureProvider: SignatureProvider;
  /** DEV_AUTO_ENROLL_PET: approve inline and enroll synchronously at confirmation. */
  autoEnroll: boolean;
  /** Where confirmation reports what no caller sees (a lost dispatch claim and its cancel). */
  logger?: Logger;
}

export interface NewPet {
  name: string;
  species: Species;
  breed: string;
  /** YYYY-MM-DD, not in the future. */
  birthDate: string;
}

/** Profile step: creates the pet and its draft (now at step `plan`). Emits PetProfileCreated. */
export async function addPet(db: Database, owner: string, input: NewPet): Promise<{ pet: PetRow; draft: DraftRow }> {
  return db.transaction(async (tx) => {
    const [pet] = await tx.insert(petProfile).values({ ...input, ownerGlobalUserId: owner }).returning();
    const petRow = pet as PetRow;
    const [draft] = await tx.insert(dependentDraft).values({ ownerGlobalUserId: owner, petId: petRow.id, step: 'plan' }).returning();
    const draftRow = draft as DraftRow;
    await enqueue(tx, PetProfileCreated.build({ petId: petRow.id, draftId: draftRow.id, ownerGlobalUserId: owner, species: petRow.species }));
    return { pet: petRow, draft: draftRow };
  });
}

export async function getPet(db: Database, owner: string, petId: string): Promise<{ pet: PetRow; draft: DraftRow | undefined }> {
  const [pet] = await db
    .select()
    .from(petProfile)
    .where(and(eq(petProfile.id, petId), eq(petProfile.ownerGlobalUserId, owner)));
  if (!pet) throw new NotFoundError('pet', petId);
  const [draft] = await db.select().from(dependentDraft).where(eq(dependentDraft.petId, petId));
  return { pet, draft };
}

export interface OwnerPet {
  pet: PetRow;
  draft: DraftRow | undefined;
  /** The draft's contracting package status (`closed`: its request was declined, canceled or expired). */
  packageStatus: PackageRow['status'] | undefined;
  /** The package's approval request status. */
  approvalStatus: ApprovalRequestRow['status'] | undefined;
}

/** The owner's pets, newest first, each with its draft and where its package stands. Read-only. */
export async function listPetsOfOwner(db: Database, owner: string): Promise<OwnerPet[]> {
  const rows = await db
    .select({ pet: petProfile, draft: dependentDraft, packageStatus: contractingPackage.status, approvalStatus: approvalRequest.status })
    .from(petProfile)
    .leftJoin(dependentDraft, eq(dependentDraft.petId, petProfile.id))
    .leftJoin(contractingPackage, eq(contractingPackage.draftId, dependentDraft.id))
    .leftJoin(approvalRequest, eq(approvalRequest.packageId, contractingPackage.id))
    .where(eq(petProfile.ownerGlobalUserId, owner))
    .orderBy(desc(petProfile.createdAt));
  return rows.map((row) => ({ pet: row.pet, draft: row.draft ?? undefined, packageStatus: row.packageStatus ?? undefined, approvalStatus: row.approvalStatus ?? undefined }));
}

export interface DraftView {
  draft: DraftRow;
  package: PackageRow | undefined;
  approvalRequest: ApprovalRequestRow | undefined;
  documents: PackageDocumentRow[];
  /** Documents of the package not signed yet. */
  pendingDocumentCount: number;
  /** Created when the package is approved (all signed). */
  contract: ContractRow | undefined;
  /** Created when the contract's ContractCreated is handled (or at once with autoEnroll). */
  enrollment: EnrollmentRow | undefined;
}

export async function getDraft(db: Database | Transaction, owner: string, draftId: string): Promise<DraftView> {
  const [draft] = await db
    .select()
    .from(dependentDraft)
    .where(and(eq(dependentDraft.id, draftId), eq(dependentDraft.ownerGlobalUserId, owner)));
  if (!draft) throw new NotFoundError('draft', draftId);
  const [pkg] = await db.select().from(contractingPackage).where(eq(contractingPackage.draftId, draftId));
  if (!pkg) return { draft, package: undefined, approvalRequest: undefined, documents: [], pendingDocumentCount: 0, contract: undefined, enrollment: undefined };
  const [request] = await db.select().from(approvalRequest).where(eq(approvalRequest.packageId, pkg.id));
  const documents = await db.select().from(packageDocument).where(eq(packageDocument.packageId, pkg.id));
  const pendingDocumentCount = pkg.status === 'pending_signatures' ? documents.length : 0;
  const [contractRow] = await db.select().from(contract).where(eq(contract.packageId, pkg.id));
  const [enrollmentRow] = contractRow ? await db.select().from(enrollment).where(eq(enrollment.contractId, contractRow.id)) : [];
  return { draft, package: pkg, approvalRequest: request, documents, pendingDocumentCount, contract: contractRow, enrollment: enrollmentRow };
}

async function lockDraft(tx: Transaction, owner: string, draftId: string): Promise<DraftRow> {
  const [draft] = await tx
    .select()
    .from(dependentDraft)
    .where(and(eq(dependentDraft.id, draftId), eq(dependentDraft.ownerGlobalUserId, owner)))
    .for('update');
  if (!draft) throw new NotFoundError('draft', draftId);
  return draft;
}

/**
 * Plan step: records the plan and moves the draft to `confirmation`. May be
 * repeated until the draft is confirmed. Throws UnknownPlanError,
 * NotFoundError, StateConflictError (already confirmed). Emits PlanChosen.
 */
export async function choosePlan(db: Database, owner: string, draftId: string, planCode: string): Promise<DraftRow> {
  return db.transaction(async (tx) => {
    const draft = await lockDraft(tx, owner, draftId);
    const plan = await findPlan(tx, planCode);
    if (!plan) throw new UnknownPlanError(planCode);
    if (draft.step === 'legal_docs_signing' || draft.step === 'success') {
      throw new StateConflictError(`draft ${draftId} is already confirmed; its plan can no longer change`);
    }
    const [updated] = await tx
      .update(dependentDraft)
      .set({ planCode: plan.code, step: 'confirmation', updatedAt: sql`now()` })
      .where(eq(dependentDraft.id, draftId))
      .returning();
    await enqueue(tx, PlanChosen.build({ petId: draft.petId, draftId, planCode: plan.code }));
    return updated as DraftRow;
  });
}

export interface ConfirmationResult {
  /** `pending_signatures` (202) or `enrolled` (DEV_AUTO_ENROLL_PET). */
  outcome: 'pending_signatures' | 'enrolled';
  view: DraftView;
  contract?: typeof contract.$inferSelect;
  enrollment?: typeof enrollment.$inferSelect;
}

/**
 * How long a `dispatching` claim is trusted before another confirmation may
 * take it over: well above the provider call's own timeout (10 s), so a
 * live dispatcher is never doubled, yet an owner whose api died mid-call
 * can retry within a minute.
 */
export const DISPATCH_CLAIM_STALE_AFTER_SECONDS = 60;

/**
 * Confirmation step, in steps so that no transaction, row lock or pooled
 * connection is held while rendering files or waiting on the provider:
 *
 * 1. render the documents and write them to the document store (no
 *    transaction yet; their keys carry a fresh package id);
 * 2. one transaction creates the package, its documents and its approval
 *    request in status `dispatching` (claim 1) — or, with autoEnroll,
 *    approves and enrolls inline. If it fails, or a concurrent confirmation
 *    made the package first, the files of step 1 are deleted;
 * 3. the provider call, outside any transaction;
 * 4. one UPDATE records the result (`dispatched` + provider id, or
 *    `dispatch_failed`), fenced by the claim number, so a slow first
 *    dispatcher cannot overwrite a takeover.
 *
 * Recovery: a confirmation that finds the request `dispatch_failed`, or
 * `dispatching` with a claim older than DISPATCH_CLAIM_STALE_AFTER_SECONDS
 * (its process died between 2 and 4), claims it again and dispatches. A
 * provider request orphaned that way is never bound: its callbacks name a
 * signature_request_id we did not record, and are refused. Canceling it:
 * - a dispatcher that stalled and lost its claim still holds the id the
 *   provider gave it; its fenced UPDATE matches nothing, and it cancels that
 *   request at the provider (cancelLostDispatch);
 * - a dispatcher that died took the id with it: the takeover cannot name
 *   the orphan (Dropbox Sign cannot be searched by our metadata), so it is
 *   left to expire at the provider; it can never approve anything.
 *
 * Idempotent and safe under concurrency: one package per draft, one
 * dispatch in flight per request. Throws NotFoundError, StateConflictError
 * (no plan yet), SignatureDispatchError (recorded as dispatch_failed;
 * confirming again retries).
 */
export async function confirmDraft(
  deps: WizardDeps,
  owner: string,
  draftId: string,
  signer?: { name: string; email: string },
): Promise<ConfirmationResult> {
  const before = await getDraft(deps.db, owner, draftId);
  let created = false;
  if (!before.package) {
    if (!before.draft.planCode) throw new StateConflictError(`draft ${draftId} has no plan yet; choose one before confirming`);
    created = await createPackage(deps, before.draft, before.draft.planCode, signer ?? defaultSigner(owner));
  }

  if (!deps.autoEnroll) await dispatchApprovalRequest(deps, owner, draftId, created);
  const view = await getDraft(deps.db, owner, draftId);
  return {
    outcome: view.enrollment ? 'enrolled' : 'pending_signatures',
    view,
    contract: view.contract,
    enrollment: view.enrollment,
  };
}

function defaultSigner(owner: string): { name: string; email: string } {
  return { name: 'Pet owner', email: `owner-${owner}@owners.petcover.invalid` };
}

/**
 * Steps 1 and 2 of confirmDraft. Resolves true when this call made the
 * package (and so holds dispatch claim 1), false when a concurrent one did.
 * Leaves no file behind when it does not commit.
 */
async function createPackage(deps: WizardDeps, draft: DraftRow, planCode: string, signer: { name: string; email: string }): Promise<boolean> {
  const plan = await findPlan(deps.db, planCode);
  if (!plan) throw new UnknownPlanError(planCode);
  const [pet] = await deps.db.select().from(petProfile).where(eq(petProfile.id, draft.petId));
  if (!pet) throw new NotFoundError('pet', draft.petId);

  const packageId = randomUUID();
  const approvalRequestId = randomUUID();
  const issuedOn = new Date().toISOString().slice(0, 10);
  const rendered = await renderPackageDocuments({
    packageId,
    ownerGlobalUserId: draft.ownerGlobalUserId,
    pet: { name: pet.name, species: pet.species, breed: pet.breed, birthDate: pet.birthDate },
    plan,
    signer,
    issuedOn,
  });
  const stored: Array<{ kind: string; title: string; key: string; sha256: string; byteSize: number }> = [];
  let committed = false;
  try {
    for (const document of rendered) {
      const file = await deps.documentStore.put(`packages/${packageId}/${document.kind}.pdf`, document.pdf);
      stored.push({ kind: document.kind, title: document.title, ...file });
    }
    committed = await deps.db.transaction(async (tx) => {
      const locked = await lockDraft(tx, draft.ownerGlobalUserId, draft.id);
      const [existing] = await tx.select({ id: contractingPackage.id }).from(contractingPackage).where(eq(contractingPackage.draftId, draft.id));
      // A concurrent confirmation won; ours is dropped with its files.
      if (existing) return false;
      if (locked.planCode !== planCode) throw new StateConflictError(`draft ${draft.id} changed its plan during confirmation; confirm again`);
      await insertPackageRows(tx, deps, { draft, pet, plan, packageId, approvalRequestId, signer, stored });
      return true;
    });
  } finally {
    if (!committed) await Promise.allSettled(stored.map((d) => deps.documentStore.delete(d.key)));
  }
  return committed;
}

async function insertPackageRows(
  tx: Transaction,
  deps: WizardDeps,
  input: {
    draft: DraftRow;
    pet: PetRow;
    plan: { code: string };
    packageId: string;
    approvalRequestId: string;
    signer: { name: string; email: string };
    stored: Array<{ kind: string; title: string; key: string; sha256: string; byteSize: number }>;
  },
): Promise<void> {
  const { draft, pet, plan, packageId, approvalRequestId, signer } = input;
  await tx.insert(contractingPackage).values({
    id: packageId,
    draftId: draft.id,
    petId: pet.id,
    ownerGlobalUserId: draft.ownerGlobalUserId,
    planCode: plan.code,
    version: 2,
    status: 'pending_signatures',
  });
  const documents = await tx
    .insert(packageDocument)
    .values(input.stored.map((d) => ({ packageId, kind: d.kind, title: d.title, storageKey: d.key, sha256: d.sha256, byteSize: d.byteSize })))
    .returning();
  await tx.insert(approvalRequest).values({
    id: approvalRequestId,
    packageId,
    // Auto-enroll approves inline: nothing goes to a provider.
    provider: deps.autoEnroll ? 'manual' : deps.signatureProvider.name,
    providerRequestId: deps.autoEnroll ? `manual-${approvalRequestId}` : null,
    status: deps.autoEnroll ? 'all_signed' : 'dispatching',
    dispatchAttempt: deps.autoEnroll ? 0 : 1,
    dispatchClaimedAt: deps.autoEnroll ? null : sql`now()`,
    signerName: signer.name,
    signerEmail: signer.email,
    dispatchedAt: deps.autoEnroll ? sql`now()` : null,
    completedAt: deps.autoEnroll ? sql`now()` : null,
  });
  await enqueue(
    tx,
    ContractingPackageCreated.build({
      packageId,
      approvalRequestId,
      petId: pet.id,
      planCode: plan.code,
      version: 2,
      documents: documents.map((d) => ({ documentId: d.id, kind: d.kind, sha256: d.sha256 })),
    }),
  );

  if (deps.autoEnroll) {
    // Nothing is left to sign, so LegalDocsSigning advances at once.
    await markPackageSigned(tx, packageId, approvalRequestId, new Date());
    const created = await approvePackageAndCreateContract(tx, packageId, 'Confirmation');
    await enrollPetForContract(tx, created.id, 'Confirmation');
  } else {
    await tx.update(dependentDraft).set({ step: 'legal_docs_signing', updatedAt: sql`now()` }).where(eq(dependentDraft.id, draft.id));
  }
}

/**
 * Takes the dispatch of the draft's approval request: the claim made by
 * createPackage in this call, or a failed or stale one. Resolves with the
 * claim number, or undefined when there is nothing to send (already sent,
 * or another live dispatcher holds it). One statement on the database clock.
 */
async function claimDispatch(db: Database, packageId: string): Promise<{ id: string; attempt: number } | undefined> {
  const rows = await db.execute<{ id: string; dispatch_attempt: number }>(sql`
    UPDATE enrollment.approval_request
       SET dispatch_attempt = dispatch_attempt + 1, status = 'dispatching', dispatch_claimed_at = now(), updated_at = now()
     WHERE package_id = ${packageId}
       AND provider_request_id IS NULL
       AND (status = 'dispatch_failed'
            OR status = 'created'
            OR (status = 'dispatching' AND (dispatch_claimed_at IS NULL
                  OR dispatch_claimed_at < now() - make_interval(secs => ${DISPATCH_CLAIM_STALE_AFTER_SECONDS}))))
    RETURNING id, dispatch_attempt`);
  const [row] = rows;
  return row ? { id: row.id, attempt: Number(row.dispatch_attempt) } : undefined;
}

/** Steps 3 and 4 of confirmDraft; `createdByUs`: this call holds claim 1. */
async function dispatchApprovalRequest(deps: WizardDeps, owner: string, draftId: string, createdByUs: boolean): Promise<void> {
  const [found] = await deps.db
    .select({ pkg: contractingPackage, request: approvalRequest, pet: petProfile })
    .from(contractingPackage)
    .innerJoin(approvalRequest, eq(approvalRequest.packageId, contractingPackage.id))
    .innerJoin(petProfile, eq(petProfile.id, contractingPackage.petId))
    .where(and(eq(contractingPackage.draftId, draftId), eq(contractingPackage.ownerGlobalUserId, owner)));
  if (!found || found.request.providerRequestId !== null || found.pkg.status !== 'pending_signatures') return;
  // The claim createPackage just made is ours; any other must be failed or stale.
  const claim = createdByUs ? { id: found.request.id, attempt: 1 } : await claimDispatch(deps.db, found.pkg.id);
  if (!claim) return;

  const documents = await deps.db.select().from(packageDocument).where(eq(packageDocument.packageId, found.pkg.id));
  let providerRequestId: string;
  let signingUrl: string | undefined;
  try {
    const files = await Promise.all(documents.map(async (d) => ({ fileName: `${d.kind}.pdf`, pdf: await deps.documentStore.get(d.storageKey) })));
    ({ providerRequestId, signingUrl } = await deps.signatureProvider.dispatch({
      approvalRequestId: claim.id,
      title: `PetCover enrollment of ${found.pet.name}`,
      subject: `Please sign the insurance documents for ${found.pet.name}`,
      message: 'These documents complete the enrollment of your pet.',
      signer: { name: found.request.signerName, email: found.request.signerEmail },
      documents: files,
    }));
  } catch (error) {
    await deps.db
      .update(approvalRequest)
      .set({ status: 'dispatch_failed', updatedAt: sql`now()` })
      .where(and(eq(approvalRequest.id, claim.id), eq(approvalRequest.dispatchAttempt, claim.attempt), eq(approvalRequest.status, 'dispatching')));
    throw error;
  }
  const recorded = await deps.db
    .update(approvalRequest)
    .set({ providerRequestId, signingUrl: signingUrl ?? null, provider: deps.signatureProvider.name, status: 'dispatched', dispatchedAt: sql`now()`, updatedAt: sql`now()` })
    .where(and(eq(approvalRequest.id, claim.id), eq(approvalRequest.dispatchAttempt, claim.attempt), isNull(approvalRequest.providerRequestId)))
    .returning({ id: approvalRequest.id });
  if (recorded.length === 0) await cancelLostDispatch(deps, claim, providerRequestId);
}

/**
 * Our claim was taken over while the provider answered (this dispatcher
 * stalled past DISPATCH_CLAIM_STALE_AFTER_SECONDS), so the request we just
 * sent is one we will never record or bind: cancel it at the provider, so
 * the owner is not asked to sign two requests of which only one counts.
 * Best effort: a refusal is logged, never thrown at the owner.
 */
async function cancelLostDispatch(deps: WizardDeps, claim: { id: string; attempt: number }, providerRequestId: string): Promise<void> {
  const context = { approvalRequestId: claim.id, dispatchAttempt: claim.attempt, providerRequestId };
  try {
    await deps.signatureProvider.cancelRequest(providerRequestId);
    deps.logger?.warn(context, 'dispatch claim taken over while the provider answered; canceled the request it sent');
  } catch (error) {
    deps.logger?.error({ ...context, err: error }, 'dispatch claim taken over while the provider answered; canceling the request it sent failed (cancel it at the provider)');
  }
}
