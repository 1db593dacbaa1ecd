/**
 * @petcover/outbox — the transactional-outbox pipeline. Knows nothing about pets.
 * What applications use; `events verify`'s reconciliation is behind the
 * `./verify` subpath and the test kit behind `./testing`. Internals (Lua
 * script wrappers, entry codec, lease bookkeeping) are imported by path.
 */
export { connectDatabase, executePrepared, withDatabaseName } from './db';
export type { Database, DatabaseHandle, DatabaseOptions, Sql, Transaction } from './db';
export { OutboxError, OutboxValidationError, DuplicateEventIdError, InvalidKeyPrefixError } from './errors';
export { newEventId } from './event-id';
export { backoffDelay, RECONNECT_BACKOFF } from './backoff';
export type { BackoffPolicy } from './backoff';
export { enqueue, enqueueMany, MAX_PAYLOAD_BYTES, MAX_TEXT_LENGTH, OUTBOX_NOTIFY_CHANNEL, OUTBOX_WAKE_LOCK_CLASS } from './enqueue';
export type { EnqueueOptions, EnqueuedEvent, OutboxEventInput } from './enqueue';
export { defineEvent } from './define-event';
export { traceIdOf, TRACE_CONTEXT_HEADERS } from './tracing';
export type { EventDefinition } from './define-event';
export { createDatabaseIfMissing, outboxMigrations, runMigrations } from './migrations';
export type { MigrationSet } from './migrations';
export { acquireLease, forceReleaseLease, ImpossibleLeaseError } from './lease/lease';
export { deadLetter, eventsSchema, outboxEvent, parkedEvent, parkedKey, processedEvent, relayNode, streamLease, DEAD_LETTER_STATUSES } from './schema';
export type { DeadLetterStatus } from './schema';
export {
  assertKeyPrefix,
  assertStreamName,
  formatStreamPartitions,
  keyPrefixSchema,
  logicalStreamOf,
  PARTITION_STREAM_NAME_PATTERN,
  parsePartitionStreamName,
  parseStreamPartitions,
  partitionCount,
  partitionFor,
  partitionStreamName,
  partitionStreamNames,
  redisStreamKey,
  STREAM_NAME_PATTERN,
  streamPartitionsSchema,
} from './streams';
export type { StreamPartitions } from './streams';
export { createHandlerRegistry, DuplicateHandlerError, EXHAUSTED_POLICIES, HandlerRegistry, InvalidHandlerOptionsError, PermanentError } from './consumer/registry';
export type { EventHandler, ExhaustedPolicy, HandledEvent, HandlerContext, HandlerOptions } from './consumer/registry';
export { HandlerTimeoutError } from './consumer/handler-timeout';
export { INBOX_MAINTENANCE_STREAM, INBOX_RETENTION_DEFAULTS } from './consumer/inbox-retention';
export { connectReadiness, migrationsCheck, postgresCheck, redisCheck } from './readiness';
export type { ReadinessConnections } from './readiness';
export { createPublisher, PUBLISHER_DEFAULTS } from './publisher/publisher';
export type { Publisher, PublisherHooks, PublisherOptions } from './publisher/publisher';
export { deleteKeysWithPrefix } from './publisher/redis-scripts';
export { collectEventsStatus, collectNodesAndLeases } from './diagnostics/status';
export { createNodeHeartbeat, NODE_HEARTBEAT_DEFAULTS } from './liveness/node-heartbeat';
export type { NodeHeartbeat, NodeHeartbeatOptions } from './liveness/node-heartbeat';
export { listNodes, releaseLeasesOfDeadOwners } from './liveness/nodes';
export type { NodeDeadReason, NodeStatus, ReleasedLease } from './liveness/nodes';
export type {
  CollectStatusOptions,
  DeadLetterCount,
  EventsStatus,
  GroupPartitionStatus,
  GroupStatus,
  LeaseEntry,
  LeaseStatus,
  PartitionParkingStatus,
  PartitionStreamStatus,
  StreamStatus,
} from './diagnostics/status';
export { diagnose, DEFAULT_DIAGNOSIS_THRESHOLDS, InvalidDiagnosisThresholdsError, resolveDiagnosisThresholds } from './diagnostics/diagnosis';
export type { DiagnosisThresholds, ProblemKind, StatusProblem } from './diagnostics/diagnosis';
export { formatEventsStatus } from './diagnostics/format';
/** The `events` command's Redis client (one attempt, no queue): for tools that run `events status` in-process, like chaos. */
export { connectCliRedis } from './cli/redis-client';
export { lookupEvents } from './diagnostics/event-journey';
export type { EventJourney, GroupStep, LookupOptions, LookupQueryKind, LookupResult } from './diagnostics/event-journey';
export { deadLettersOfFingerprint, fingerprintOf, listDeadLetterGroups, resolveDeadLetters } from './consumer/dead-letter-groups';
export type { BulkOutcome, DeadLetterFingerprint, DeadLetterGroup } from './consumer/dead-letter-groups';
export { replayOutbox } from './diagnostics/outbox-replay';
export type { OutboxReplayResult } from './diagnostics/outbox-replay';
export { resolveConsumerModule, InvalidConsumerModuleError } from './consumer/module';
export type { ConsumerModule, ConsumerStreamDeclaration } from './consumer/module';
export { createConsumer, CONSUMER_DEFAULTS, InvalidConsumerOptionsError } from './consumer/consumer';
export type { Consumer, ConsumerOptions, ConsumerStatus } from './consumer/consumer';
export { PartitionLeaseLostError } from './consumer/inbox';
export { PayloadSchemaError } from './consumer/settle-entries';
export {
  DeadLetterNotFoundError,
  DeadLetterStateError,
  discardDeadLetter,
  getDeadLetter,
  listDeadLetters,
  replayDeadLetter,
} from './consumer/dead-letters';
export type { DeadLetterFilter, DeadLetterRow } from './consumer/dead-letters';
export { discardParkedHead, listParkedKeys, ParkedKeyNotFoundError, releaseParkedKey } from './consumer/parked-keys';
export type { ParkedKeyFilter, ParkedKeyRef, ParkedKeyRow } from './consumer/parked-keys';
