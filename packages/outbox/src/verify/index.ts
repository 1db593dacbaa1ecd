/** Reconciliation of the outbox with what consumer groups handled. */
export { ensureHandledLogTable, handledLogExists, recordHandled, HANDLED_LOG_SCHEMA, HANDLED_LOG_TABLE } from './handled-log';
export type { HandledRecord } from './handled-log';
export { discoverSubscriptions, verifyPipeline } from './verify';
export type {
  DeadLetterExample,
  DoubledExample,
  EventRef,
  GroupTally,
  MissingExample,
  OutOfOrderExample,
  Subscription,
  SubscriptionSource,
  VerifyOptions,
  VerifyReport,
} from './verify';
export { formatVerifyReport } from './format';
