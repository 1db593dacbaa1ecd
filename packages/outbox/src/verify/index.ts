/**
 * `@petcover/outbox/verify`: reconciliation of the outbox with what consumer
 * groups handled (`events verify`, the chaos run), and the handled-order log
 * handlers may write for it. A proving tool, not something applications
 * need, hence its own subpath.
 */
export { ensureHandledLogTable, handledLogExists, handledRecordOf, recordHandled, HANDLED_LOG_SCHEMA, HANDLED_LOG_TABLE } from './handled-log';
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
