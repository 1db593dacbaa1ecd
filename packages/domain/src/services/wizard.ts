/**
 * The enrollment wizard (SPEC §4): Profile → Plan → Confirmation →
 * LegalDocsSigning → Success. Every function is scoped to one owner: a row of
 * another owner is reported as NotFoundError, exactly like a missing one.
 * Every change and the event it emits commit in one transaction.
 */
import { randomUUID } from 'node:crypto';
import { and, eq, sql } from 'drizzle-orm';
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

export interface WizardDeps {
  db: Database;
  documentStore: DocumentStore;
  signatureProvider: SignatureProvider;
  /** DEV_AUTO_ENROLL_PET: approve inline and enroll synchronously at confirmation. */
  autoEnroll: boolean;
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

export interface DraftView {
  draft: DraftRow;
  package: PackageRow | undefined;
  approvalRequest: ApprovalRequestRow | undefined;
  documents: PackageDocumentRow[];
  /** Documents of the package not signed yet. */
  pendingDocumentCount: number;
}

export async function getDraft(db: Database | Transaction, owner: string, draftId: string): Promise<DraftView> {
  const [draft] = await db
    .select()
    .from(dependentDraft)
    .where(and(eq(dependentDraft.id, draftId), eq(dependentDraft.ownerGlobalUserId, owner)));
  if (!draft) throw new NotFoundError('draft', draftId);
  const [pkg] = await db.select().from(contractingPackage).where(eq(contractingPackage.draftId, draftId));
  if (!pkg) return { draft, package: undefined, approvalRequest: undefined, documents: [], pendingDocumentCount: 0 };
  const [request] = await db.select().from(approvalRequest).where(eq(approvalRequest.packageId, pkg.id));
  const documents = await db.select().from(packageDocument).where(eq(packageDocument.packageId, pkg.id));
  const pendingDocumentCount = pkg.status === 'pending_signatures' ? documents.length : 0;
  return { draft, package: pkg, approvalRequest: request, documents, pendingDocumentCount };
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
 * Confirmation step: creates the contracting package (version 2), renders its
 * documents to the document store (sha256 recorded), creates the approval
 * request and dispatches it to the signature provider. Idempotent and safe
 * under concurrency: the draft row is locked, so concurrent confirmations of
 * one draft make one package (and, with autoEnroll, one contract).
 * Throws NotFoundError, StateConflictError (no plan yet), SignatureDispatchError
 * (the package is kept; confirming again retries the dispatch).
 */
export async function confirmDraft(
  deps: WizardDeps,
  owner: string,
  draftId: string,
  signer?: { name: string; email: string },
): Promise<ConfirmationResult> {
  await deps.db.transaction(async (tx) => {
    const draft = await lockDraft(tx, owner, draftId);
    const [existing] = await tx.select().from(contractingPackage).where(eq(contractingPackage.draftId, draftId));
    if (existing) return;
    if (!draft.planCode) throw new StateConflictError(`draft ${draftId} has no plan yet; choose one before confirming`);
    await createPackage(tx, deps, draft, draft.planCode, signer ?? defaultSigner(owner));
  });

  if (!deps.autoEnroll) await dispatchApprovalRequest(deps, owner, draftId);
  const view = await getDraft(deps.db, owner, draftId);
  const [contractRow] = view.package ? await deps.db.select().from(contract).where(eq(contract.packageId, view.package.id)) : [];
  const [enrollmentRow] = contractRow ? await deps.db.select().from(enrollment).where(eq(enrollment.contractId, contractRow.id)) : [];
  return {
    outcome: enrollmentRow ? 'enrolled' : 'pending_signatures',
    view,
    contract: contractRow,
    enrollment: enrollmentRow,
  };
}

function defaultSigner(owner: string): { name: string; email: string } {
  return { name: 'Pet owner', email: `owner-${owner}@owners.petcover.invalid` };
}

async function createPackage(
  tx: Transaction,
  deps: WizardDeps,
  draft: DraftRow,
  planCode: string,
  signer: { name: string; email: string },
): Promise<string> {
  const plan = await findPlan(tx, planCode);
  if (!plan) throw new UnknownPlanError(planCode);
  const [pet] = await tx.select().from(petProfile).where(eq(petProfile.id, draft.petId));
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

  await tx.insert(contractingPackage).values({
    id: packageId,
    draftId: draft.id,
    petId: pet.id,
    ownerGlobalUserId: draft.ownerGlobalUserId,
    planCode: plan.code,
    version: 2,
    status: 'pending_signatures',
  });
  // Files are written before the rows commit: a row never names a missing
  // file; a rolled-back confirmation leaves an unreferenced file behind, which is harmless.
  const documents: PackageDocumentRow[] = [];
  for (const document of rendered) {
    const stored = await deps.documentStore.put(`packages/${packageId}/${document.kind}.pdf`, document.pdf);
    const [row] = await tx
      .insert(packageDocument)
      .values({ packageId, kind: document.kind, title: document.title, storageKey: stored.key, sha256: stored.sha256, byteSize: stored.byteSize })
      .returning();
    documents.push(row as PackageDocumentRow);
  }
  const provider = deps.autoEnroll ? 'manual' : deps.signatureProvider.name;
  await tx.insert(approvalRequest).values({
    id: approvalRequestId,
    packageId,
    provider,
    // Auto-enroll approves inline: nothing goes to a provider.
    providerRequestId: deps.autoEnroll ? `manual-${approvalRequestId}` : null,
    status: deps.autoEnroll ? 'all_signed' : 'created',
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
  return packageId;
}

/**
 * Sends the approval request of a confirmed draft to the provider unless it
 * was sent already. The approval request row stays locked during the call, so
 * concurrent confirmations dispatch once.
 */
async function dispatchApprovalRequest(deps: WizardDeps, owner: string, draftId: string): Promise<void> {
  await deps.db.transaction(async (tx) => {
    const [pkg] = await tx
      .select()
      .from(contractingPackage)
      .where(and(eq(contractingPackage.draftId, draftId), eq(contractingPackage.ownerGlobalUserId, owner)));
    if (!pkg) return;
    const [request] = await tx.select().from(approvalRequest).where(eq(approvalRequest.packageId, pkg.id)).for('update');
    if (!request || request.providerRequestId !== null) return;
    const [pet] = await tx.select().from(petProfile).where(eq(petProfile.id, pkg.petId));
    const row = { pkg, request, pet: pet as PetRow };
    const documents = await tx.select().from(packageDocument).where(eq(packageDocument.packageId, row.pkg.id));
    const files = await Promise.all(
      documents.map(async (d) => ({ fileName: `${d.kind}.pdf`, pdf: await deps.documentStore.get(d.storageKey) })),
    );
    const { providerRequestId } = await deps.signatureProvider.dispatch({
      approvalRequestId: row.request.id,
      title: `PetCover enrollment of ${row.pet.name}`,
      subject: `Please sign the insurance documents for ${row.pet.name}`,
      message: 'These documents complete the enrollment of your pet.',
      signer: { name: row.request.signerName, email: row.request.signerEmail },
      documents: files,
    });
    await tx
      .update(approvalRequest)
      .set({ providerRequestId, provider: deps.signatureProvider.name, updatedAt: sql`now()` })
      .where(eq(approvalRequest.id, row.request.id));
  });
}
