/**
 * @petcover/domain — pet enrollment: tables, services, events, handlers.
 */
export {
  approvalRequest,
  contract,
  contractingPackage,
  dependentDraft,
  enrollment,
  enrollmentAuditEntry,
  enrollmentSchema,
  insurancePlan,
  packageDocument,
  petProfile,
  signatureCallback,
  signedDocument,
  APPROVAL_STATUSES,
  SPECIES,
  TERMINAL_APPROVAL_STATUSES,
  WIZARD_STEPS,
} from './schema';
export type { ApprovalStatus, Species, WizardStep } from './schema';
export { domainMigrations } from './migrations';
export {
  ApprovalRequestClosed,
  ContractCreated,
  ContractingPackageCreated,
  CONTRACT_CHANGES_STREAM,
  LegalDocumentsSigned,
  PACKAGE_CHANGES_STREAM,
  PET_CHANGES_STREAM,
  PetEnrolled,
  PetProfileCreated,
  PlanChosen,
  SIGNATURE_EVENT_TYPES,
  SIGNATURE_EVENTS_STREAM,
  SIGNING_EVENT_TYPES,
  SignatureReceived,
} from './events';
export type { SignatureEventType } from './events';
export { DomainError, NotFoundError, SignatureDispatchError, SignatureProviderError, StateConflictError, UnknownPlanError } from './errors';
export { createLocalDocumentStore, DEFAULT_DOCUMENT_STORE_DIR, DocumentNotFoundError, sha256Hex } from './documents/document-store';
export type { DocumentStore, StoredDocument } from './documents/document-store';
export { PACKAGE_V2_DOCUMENT_KINDS, renderPackageDocuments } from './documents/render-package-documents';
export { createManualSignatureProvider } from './signature/provider';
export type { ProviderRequestState, SignatureDispatch, SignatureProvider } from './signature/provider';
export { createDropboxSignProvider, DEFAULT_DROPBOX_SIGN_BASE_URL } from './signature/dropbox-sign';
export type { DropboxSignOptions } from './signature/dropbox-sign';
export {
  buildSignatureCallback,
  CALLBACK_ACKNOWLEDGEMENT,
  CallbackRejectedError,
  computeEventHash,
  DEFAULT_CALLBACK_FRESHNESS,
  verifySignatureCallback,
} from './signature/callback';
export type { CallbackFreshness, SignatureCallback } from './signature/callback';
export { findPlan, listPlans } from './services/plans';
export type { InsurancePlan } from './services/plans';
export { addPet, choosePlan, confirmDraft, DISPATCH_CLAIM_STALE_AFTER_SECONDS, getDraft, getPet, listPetsOfOwner } from './services/wizard';
export type { ConfirmationResult, DraftView, NewPet, OwnerPet, WizardDeps } from './services/wizard';
export { receiveSignatureCallback } from './services/signature-callbacks';
export type { CallbackOutcome, ReceiveCallbackOptions } from './services/signature-callbacks';
export {
  applySignatureReceived,
  approvePackageAndCreateContract,
  enrollPetForContract,
  findEnrollmentOfPet,
  markPackageSigned,
  recordEnrollmentAudit,
} from './services/contracting';
export { domainConsumerModule, enrollmentAuditConsumerModule } from './handlers/register-handlers';
