/**
 * Consumer modules of the domain (the `ConsumerModule` shape agreed with the
 * consumer app: `{ streams, register(registry) }`).
 *
 * - `domainConsumerModule`: the chain SignatureReceived → LegalDocumentsSigned
 *   → ContractCreated → PetEnrolled, run by the default consumer group.
 * - `enrollmentAuditConsumerModule`: a second, independent group that records
 *   every PetEnrolled (proves fan-out to several groups).
 */
import type { HandlerRegistry, MigrationSet } from '@petcover/outbox';
import { domainMigrations } from '../migrations';
import { ContractCreated, CONTRACT_CHANGES_STREAM, LegalDocumentsSigned, PACKAGE_CHANGES_STREAM, PET_CHANGES_STREAM, PetEnrolled, SIGNATURE_EVENTS_STREAM, SignatureReceived } from '../events';
import { applySignatureReceived, approvePackageAndCreateContract, enrollPetForContract, recordEnrollmentAudit } from '../services/contracting';

/** Same shape as `ConsumerModule` of @petcover/outbox (declared here until both branches meet). */
export interface DomainConsumerModule {
  streams: Array<{ name: string; partitions?: number }>;
  register(registry: HandlerRegistry): void;
  /** Tables the handlers write; the consumer's /readyz waits for them. */
  migrations: readonly MigrationSet[];
}

export const domainConsumerModule: DomainConsumerModule = {
  streams: [{ name: SIGNATURE_EVENTS_STREAM }, { name: PACKAGE_CHANGES_STREAM }, { name: CONTRACT_CHANGES_STREAM }],
  migrations: [domainMigrations],
  register(registry) {
    registry.register(SignatureReceived, async (event, ctx) => {
      const { legalDocumentsSigned } = await applySignatureReceived(ctx.tx, event.payload);
      ctx.logger.info(
        { eventId: event.eventId, approvalRequestId: event.payload.approvalRequestId, callback: event.payload.callbackEventType, legalDocumentsSigned },
        'signature callback applied',
      );
    });
    registry.register(LegalDocumentsSigned, async (event, ctx) => {
      const created = await approvePackageAndCreateContract(ctx.tx, event.payload.packageId);
      ctx.logger.info({ eventId: event.eventId, packageId: event.payload.packageId, contractId: created.id }, 'package approved, contract created');
    });
    registry.register(ContractCreated, async (event, ctx) => {
      const enrolled = await enrollPetForContract(ctx.tx, event.payload.contractId);
      ctx.logger.info({ eventId: event.eventId, contractId: event.payload.contractId, petId: enrolled.petId }, 'pet enrolled');
    });
  },
};

export const enrollmentAuditConsumerModule: DomainConsumerModule = {
  streams: [{ name: PET_CHANGES_STREAM }],
  migrations: [domainMigrations],
  register(registry) {
    registry.register(PetEnrolled, async (event, ctx) => {
      await recordEnrollmentAudit(ctx.tx, {
        eventId: event.eventId,
        petId: event.payload.petId,
        contractId: event.payload.contractId,
        groupName: ctx.group,
      });
      ctx.logger.info({ eventId: event.eventId, petId: event.payload.petId }, 'enrollment audited');
    });
  },
};
