/**
 * Event definitions of the enrollment domain: stream, payload schema and
 * partition key, shared by the services that enqueue them and the handlers
 * that consume them.
 */
import { defineEvent } from '@petcover/outbox';
import { z } from 'zod';

/** Provider callbacks, ordered per approval request. */
export const SIGNATURE_EVENTS_STREAM = 'stream:contracting:signature_events';
/** Package life cycle, ordered per package. */
export const PACKAGE_CHANGES_STREAM = 'stream:contracting:package_changes';
/** Contract life cycle, ordered per contract (SPEC §4). */
export const CONTRACT_CHANGES_STREAM = 'stream:contracting:contract_changes';
/** Pet enrollment outcomes, ordered per pet. */
export const PET_CHANGES_STREAM = 'stream:enrollment:pet_changes';

/** Dropbox Sign callback event types the chain reacts to: progress, then the terminal ones. */
export const SIGNATURE_EVENT_TYPES = [
  'signature_request_sent',
  'signature_request_signed',
  'signature_request_all_signed',
  'signature_request_declined',
  'signature_request_canceled',
  'signature_request_expired',
] as const;
export type SignatureEventType = (typeof SIGNATURE_EVENT_TYPES)[number];
/** The callbacks that simulate and the happy path send, in order. */
export const SIGNING_EVENT_TYPES = ['signature_request_sent', 'signature_request_signed', 'signature_request_all_signed'] as const satisfies readonly SignatureEventType[];

const isoTimestamp = z.string().datetime({ offset: true });

export const SignatureReceived = defineEvent({
  type: 'SignatureReceived',
  stream: SIGNATURE_EVENTS_STREAM,
  schema: z.object({
    approvalRequestId: z.string().uuid(),
    provider: z.string().min(1),
    providerRequestId: z.string().min(1).nullable(),
    callbackEventType: z.enum(SIGNATURE_EVENT_TYPES),
    callbackEventTime: isoTimestamp,
  }),
  partitionKey: (p) => p.approvalRequestId,
});

export const LegalDocumentsSigned = defineEvent({
  type: 'LegalDocumentsSigned',
  stream: PACKAGE_CHANGES_STREAM,
  schema: z.object({
    packageId: z.string().uuid(),
    approvalRequestId: z.string().uuid(),
    petId: z.string().uuid(),
    documentIds: z.array(z.string().uuid()),
    signedAt: isoTimestamp,
  }),
  partitionKey: (p) => p.packageId,
});

/** The owner declined, we or the provider canceled, or the request expired: the package will never be signed. */
export const ApprovalRequestClosed = defineEvent({
  type: 'ApprovalRequestClosed',
  stream: PACKAGE_CHANGES_STREAM,
  schema: z.object({
    approvalRequestId: z.string().uuid(),
    packageId: z.string().uuid(),
    petId: z.string().uuid(),
    outcome: z.enum(['declined', 'canceled', 'expired']),
    closedAt: isoTimestamp,
  }),
  partitionKey: (p) => p.packageId,
});

export const ContractCreated = defineEvent({
  type: 'ContractCreated',
  stream: CONTRACT_CHANGES_STREAM,
  schema: z.object({
    contractId: z.string().uuid(),
    packageId: z.string().uuid(),
    petId: z.string().uuid(),
    ownerGlobalUserId: z.string().uuid(),
    planCode: z.string().min(1),
    monthlyPremiumCents: z.number().int().nonnegative(),
    startsOn: z.string().regex(/^\d{4}-\d{2}-\d{2}$/),
  }),
  partitionKey: (p) => p.contractId,
});

export const ContractActivated = defineEvent({
  type: 'ContractActivated',
  stream: CONTRACT_CHANGES_STREAM,
  schema: z.object({
    contractId: z.string().uuid(),
    petId: z.string().uuid(),
    enrollmentId: z.string().uuid(),
  }),
  partitionKey: (p) => p.contractId,
});

export const PetEnrolled = defineEvent({
  type: 'PetEnrolled',
  stream: PET_CHANGES_STREAM,
  schema: z.object({
    petId: z.string().uuid(),
    contractId: z.string().uuid(),
    enrollmentId: z.string().uuid(),
    ownerGlobalUserId: z.string().uuid(),
    enrolledAt: isoTimestamp,
  }),
  partitionKey: (p) => p.petId,
});

export const PetProfileCreated = defineEvent({
  type: 'PetProfileCreated',
  stream: PET_CHANGES_STREAM,
  schema: z.object({
    petId: z.string().uuid(),
    draftId: z.string().uuid(),
    ownerGlobalUserId: z.string().uuid(),
    species: z.enum(['dog', 'cat']),
  }),
  partitionKey: (p) => p.petId,
});

export const PlanChosen = defineEvent({
  type: 'PlanChosen',
  stream: PET_CHANGES_STREAM,
  schema: z.object({
    petId: z.string().uuid(),
    draftId: z.string().uuid(),
    planCode: z.string().min(1),
  }),
  partitionKey: (p) => p.petId,
});

export const ContractingPackageCreated = defineEvent({
  type: 'ContractingPackageCreated',
  stream: PACKAGE_CHANGES_STREAM,
  schema: z.object({
    packageId: z.string().uuid(),
    approvalRequestId: z.string().uuid(),
    petId: z.string().uuid(),
    planCode: z.string().min(1),
    version: z.number().int(),
    documents: z.array(z.object({ documentId: z.string().uuid(), kind: z.string(), sha256: z.string().length(64) })),
  }),
  partitionKey: (p) => p.packageId,
});
