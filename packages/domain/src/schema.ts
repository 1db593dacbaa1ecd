/**
 * Tables of the enrollment domain, in their own Postgres schema `enrollment`
 * so they never collide with the pipeline's `events.*`. Migrations are
 * generated from this file by drizzle-kit into ../drizzle.
 */
import { sql } from 'drizzle-orm';
import { bigserial, check, date, index, integer, pgSchema, text, timestamp, uniqueIndex, uuid } from 'drizzle-orm/pg-core';

export const enrollmentSchema = pgSchema('enrollment');

const createdAt = () => timestamp('created_at', { withTimezone: true }).notNull().defaultNow();
const updatedAt = () => timestamp('updated_at', { withTimezone: true }).notNull().defaultNow();

export const SPECIES = ['dog', 'cat'] as const;
export type Species = (typeof SPECIES)[number];

export const PET_STATUSES = ['draft', 'enrolled'] as const;
export type PetStatus = (typeof PET_STATUSES)[number];

/** Wizard steps in order (SPEC §4). */
export const WIZARD_STEPS = ['profile', 'plan', 'confirmation', 'legal_docs_signing', 'success'] as const;
export type WizardStep = (typeof WIZARD_STEPS)[number];

/** `closed`: its approval request was declined, canceled or expired; nothing more happens to it. */
export const PACKAGE_STATUSES = ['pending_signatures', 'signed', 'approved', 'closed'] as const;
export type PackageStatus = (typeof PACKAGE_STATUSES)[number];

/**
 * `dispatching`: committed, the provider call is in flight (or its process
 * died; a later confirmation takes it over once stale). `dispatch_failed`:
 * the provider refused or did not answer; confirming again retries.
 * `dispatched`: the provider took it. `created` is what rows made before the
 * two-step dispatch carry. Then the callbacks: sent → signed → all_signed,
 * or one of the terminal `declined`, `canceled`, `expired`.
 */
export const APPROVAL_STATUSES = [
  'created',
  'dispatching',
  'dispatch_failed',
  'dispatched',
  'sent',
  'signed',
  'all_signed',
  'declined',
  'canceled',
  'expired',
] as const;
export type ApprovalStatus = (typeof APPROVAL_STATUSES)[number];
/** A request in one of these states never changes again. */
export const TERMINAL_APPROVAL_STATUSES = ['all_signed', 'declined', 'canceled', 'expired'] as const satisfies readonly ApprovalStatus[];

export const CONTRACT_STATUSES = ['created', 'active'] as const;
export type ContractStatus = (typeof CONTRACT_STATUSES)[number];

export const petProfile = enrollmentSchema.table(
  'pet_profile',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    ownerGlobalUserId: uuid('owner_global_user_id').notNull(),
    name: text('name').notNull(),
    species: text('species').$type<Species>().notNull(),
    breed: text('breed').notNull(),
    birthDate: date('birth_date').notNull(),
    status: text('status').$type<PetStatus>().notNull().default('draft'),
    createdAt: createdAt(),
    updatedAt: updatedAt(),
  },
  (t) => [
    index('pet_profile_owner_idx').on(t.ownerGlobalUserId),
    check('pet_profile_species_check', sql`${t.species} IN ('dog', 'cat')`),
    check('pet_profile_status_check', sql`${t.status} IN ('draft', 'enrolled')`),
  ],
);

export const insurancePlan = enrollmentSchema.table('insurance_plan', {
  code: text('code').primaryKey(),
  name: text('name').notNull(),
  monthlyPremiumCents: integer('monthly_premium_cents').notNull(),
  /** Share of a vet bill reimbursed, in percent (70 = 70 %). */
  reimbursementRatePercent: integer('reimbursement_rate_percent').notNull(),
  annualLimitCents: integer('annual_limit_cents').notNull(),
  createdAt: createdAt(),
});

export const dependentDraft = enrollmentSchema.table(
  'dependent_draft',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    ownerGlobalUserId: uuid('owner_global_user_id').notNull(),
    petId: uuid('pet_id')
      .notNull()
      .references(() => petProfile.id),
    step: text('step').$type<WizardStep>().notNull(),
    planCode: text('plan_code').references(() => insurancePlan.code),
    createdAt: createdAt(),
    updatedAt: updatedAt(),
  },
  (t) => [uniqueIndex('dependent_draft_pet_uq').on(t.petId), index('dependent_draft_owner_idx').on(t.ownerGlobalUserId)],
);

export const contractingPackage = enrollmentSchema.table(
  'contracting_package',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    /** One package per draft: concurrent confirmations meet on this index. */
    draftId: uuid('draft_id')
      .notNull()
      .references(() => dependentDraft.id),
    petId: uuid('pet_id')
      .notNull()
      .references(() => petProfile.id),
    ownerGlobalUserId: uuid('owner_global_user_id').notNull(),
    planCode: text('plan_code')
      .notNull()
      .references(() => insurancePlan.code),
    version: integer('version').notNull().default(2),
    status: text('status').$type<PackageStatus>().notNull(),
    approvedAt: timestamp('approved_at', { withTimezone: true }),
    createdAt: createdAt(),
    updatedAt: updatedAt(),
  },
  (t) => [uniqueIndex('contracting_package_draft_uq').on(t.draftId)],
);

/** A rendered PDF of a package, kept in the document store. */
export const packageDocument = enrollmentSchema.table(
  'package_document',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    packageId: uuid('package_id')
      .notNull()
      .references(() => contractingPackage.id),
    kind: text('kind').notNull(),
    title: text('title').notNull(),
    storageKey: text('storage_key').notNull(),
    sha256: text('sha256').notNull(),
    byteSize: integer('byte_size').notNull(),
    createdAt: createdAt(),
  },
  (t) => [uniqueIndex('package_document_kind_uq').on(t.packageId, t.kind)],
);

/** One signature request at the provider for one package. */
export const approvalRequest = enrollmentSchema.table(
  'approval_request',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    packageId: uuid('package_id')
      .notNull()
      .references(() => contractingPackage.id),
    provider: text('provider').notNull(),
    providerRequestId: text('provider_request_id'),
    /** Where the signer signs at the provider (Dropbox Sign's https signing_url), recorded with the dispatch; null when the provider gave none. */
    signingUrl: text('signing_url'),
    status: text('status').$type<ApprovalStatus>().notNull(),
    signerName: text('signer_name').notNull(),
    signerEmail: text('signer_email').notNull(),
    /** Bumped by each claim of the dispatch; the claimer's number fences the result it records. */
    dispatchAttempt: integer('dispatch_attempt').notNull().default(0),
    /** When the current dispatch claim was taken (database clock); a stale claim may be taken over. */
    dispatchClaimedAt: timestamp('dispatch_claimed_at', { withTimezone: true }),
    dispatchedAt: timestamp('dispatched_at', { withTimezone: true }),
    completedAt: timestamp('completed_at', { withTimezone: true }),
    createdAt: createdAt(),
    updatedAt: updatedAt(),
  },
  (t) => [uniqueIndex('approval_request_package_uq').on(t.packageId), uniqueIndex('approval_request_provider_uq').on(t.provider, t.providerRequestId)],
);

/**
 * Every accepted provider callback, once: the unique dedupe key (what the
 * provider signs, event_time + event_type, plus the signature request id)
 * makes a repeated callback a no-op, whatever unsigned fields were edited.
 * Only what the chain and a debugging human need is kept: no event_hash, no
 * raw body (a stored valid hash could be replayed; the body carries
 * signer details).
 */
export const signatureCallback = enrollmentSchema.table(
  'signature_callback',
  {
    id: bigserial('id', { mode: 'bigint' }).primaryKey(),
    dedupeKey: text('dedupe_key').notNull(),
    approvalRequestId: uuid('approval_request_id').notNull(),
    provider: text('provider').notNull(),
    eventType: text('event_type').notNull(),
    eventTime: timestamp('event_time', { withTimezone: true }).notNull(),
    providerRequestId: text('provider_request_id'),
    relatedSignatureId: text('related_signature_id'),
    receivedAt: timestamp('received_at', { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [uniqueIndex('signature_callback_dedupe_uq').on(t.dedupeKey)],
);

export const signedDocument = enrollmentSchema.table(
  'signed_document',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    documentId: uuid('document_id')
      .notNull()
      .references(() => packageDocument.id),
    approvalRequestId: uuid('approval_request_id')
      .notNull()
      .references(() => approvalRequest.id),
    /** sha256 of the document that was signed (equals the rendered one). */
    sha256: text('sha256').notNull(),
    signedAt: timestamp('signed_at', { withTimezone: true }).notNull(),
    createdAt: createdAt(),
  },
  (t) => [uniqueIndex('signed_document_document_uq').on(t.documentId)],
);

export const contract = enrollmentSchema.table(
  'contract',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    packageId: uuid('package_id')
      .notNull()
      .references(() => contractingPackage.id),
    petId: uuid('pet_id')
      .notNull()
      .references(() => petProfile.id),
    ownerGlobalUserId: uuid('owner_global_user_id').notNull(),
    planCode: text('plan_code')
      .notNull()
      .references(() => insurancePlan.code),
    monthlyPremiumCents: integer('monthly_premium_cents').notNull(),
    status: text('status').$type<ContractStatus>().notNull(),
    startsOn: date('starts_on').notNull(),
    createdAt: createdAt(),
    updatedAt: updatedAt(),
  },
  (t) => [uniqueIndex('contract_package_uq').on(t.packageId)],
);

export const enrollment = enrollmentSchema.table(
  'enrollment',
  {
    id: uuid('id').primaryKey().defaultRandom(),
    petId: uuid('pet_id')
      .notNull()
      .references(() => petProfile.id),
    contractId: uuid('contract_id')
      .notNull()
      .references(() => contract.id),
    ownerGlobalUserId: uuid('owner_global_user_id').notNull(),
    enrolledAt: timestamp('enrolled_at', { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [uniqueIndex('enrollment_pet_uq').on(t.petId), uniqueIndex('enrollment_contract_uq').on(t.contractId)],
);

/** What the enrollment-audit consumer group records per PetEnrolled event. */
export const enrollmentAuditEntry = enrollmentSchema.table('enrollment_audit_entry', {
  eventId: uuid('event_id').primaryKey(),
  petId: uuid('pet_id').notNull(),
  contractId: uuid('contract_id').notNull(),
  groupName: text('group_name').notNull(),
  recordedAt: timestamp('recorded_at', { withTimezone: true }).notNull().defaultNow(),
});
