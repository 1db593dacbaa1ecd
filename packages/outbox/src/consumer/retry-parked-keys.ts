/**
 * The retry scheduler of one partition (issue 19): run by the partition's
 * worker, under its lease and concurrency slot, so exactly one replica
 * retries a parked key, and a new lease owner simply continues where the
 * rows say. For each due key it loads the key's oldest parked events (bounded
 * like a read) and runs them in order through runBatch: each transaction
 * deletes the parked rows it runs (their inbox rows were written when they
 * were parked), runs the handlers, releases the key when nothing of it is
 * left parked (else its next head starts afresh) and checks the lease.
 *
 * When the head fails again: the key's attempts, error and next attempt are
 * recorded; out of attempts (or a PermanentError) the key's policy decides:
 * dead-letter-and-continue dead-letters the head and goes on with the key's
 * next event, halt halts the key until an operator acts.
 */
import { commitFenced } from './inbox';
import { loadParkedEntries, partitionParking, recordParkedFailure, settleParkedKey, unparkEvents, type ParkedEntry, type PartitionParking } from './parking';
import {
  classifyHandled,
  deadLetterHandlerFailure,
  decideFailure,
  errorText,
  logKeyFailure,
  metricLabels,
  parkingDueIn,
  parkingScope,
  partitionLease,
  settleInOrder,
  type EntrySource,
  type Item,
  type PartitionContext,
} from './settle-entries';

/** Due keys taken per look; the worker looks again at once while keys are due. */
const DUE_KEYS_PER_LOOK = 10;

/** Bounds of one key's retry, those of a read. */
export interface RetryLimits {
  batchSize: number;
  readMaxBytes: number;
}

/** A parked entry as an Item; its handler gone since it was parked → dead-lettered (it stays replayable). */
function itemOf(ctx: PartitionContext, parked: ParkedEntry, attempt: number): Item {
  const handler = ctx.registry.get(parked.event.type);
  if (!handler) {
    return {
      kind: 'reject', entryId: parked.entryId, event: parked.event, fields: {}, parkedId: parked.id, reason: 'no_handler',
      error: new Error(`no handler is registered for ${parked.event.type} any more (the event was parked while one was)`),
    };
  }
  return classifyHandled(parked.entryId, parked.event, handler, attempt, parked.id);
}

/** Parked events of one key: claimed by deleting their rows; each transaction then settles the key. */
function parkedEntries(ctx: PartitionContext, partitionKey: string): EntrySource {
  return {
    async claim(tx, items) {
      return { run: await unparkEvents(tx, ctx.group, items.map((i) => i.parkedId as string)), parked: new Set() };
    },
    async afterRun(tx) {
      await settleParkedKey(tx, parkingScope(ctx), partitionKey);
    },
  };
}

/**
 * Looks at the partition's parking, runs the keys due now, and sets when to
 * look again (`ctx.parking`). Returns what it saw (for the gauges).
 * Infrastructure errors (database down, lease lost) are thrown.
 */
export async function retryDueKeys(ctx: PartitionContext, limits: RetryLimits): Promise<PartitionParking> {
  const parking = await partitionParking(ctx.db, parkingScope(ctx), DUE_KEYS_PER_LOOK);
  const gauge = { group: ctx.group, stream: ctx.partitionStream };
  ctx.metrics.parkedEntries.set(gauge, parking.entries);
  ctx.metrics.parkedKeys.set(gauge, parking.keys);
  ctx.metrics.haltedKeys.set(gauge, parking.halted);
  ctx.parking.any = parking.keys > 0;
  ctx.parking.checkAt = Infinity;
  if (parking.nextDueInMs !== null) parkingDueIn(ctx.parking, parking.nextDueInMs);
  // An operator's release or discard (events key ..., the console) changes parked keys outside any schedule: a
  // halted key has none, a retrying one may not be due for a minute. Look again now and then while any is parked.
  if (parking.keys > 0) parkingDueIn(ctx.parking, ctx.parkingRecheckMs);
  for (const due of parking.due) {
    if (ctx.signal.aborted) break;
    await retryKey(ctx, due.partitionKey, due.attempts, due.firstFailedAt, limits);
  }
  // Due keys were run (or more are due): look again at once.
  if (parking.due.length > 0) parkingDueIn(ctx.parking, 0);
  return parking;
}

/** Runs one due key's parked events in order, until its head fails again or the loaded events are done. */
async function retryKey(ctx: PartitionContext, partitionKey: string, failures: number, firstFailedAt: Date | null, limits: RetryLimits): Promise<void> {
  const scope = parkingScope(ctx);
  const parked = await loadParkedEntries(ctx.db, scope, partitionKey, limits.batchSize, limits.readMaxBytes);
  const source = parkedEntries(ctx, partitionKey);
  if (parked.length === 0) {
    // Its events were discarded by an operator meanwhile: release it.
    await commitFenced(ctx.db, partitionLease(ctx), (tx) => settleParkedKey(tx, scope, partitionKey));
    return;
  }
  const queue = parked.map((p, index) => itemOf(ctx, p, index === 0 ? failures + 1 : 1));
  const head = queue[0];
  let stopped = false;
  await settleInOrder(ctx, queue, source, {
    // A head that failed before is attempted alone first (its own transaction), then what follows it as a batch.
    firstLimit: failures > 0 ? 1 : queue.length,
    onCommitted(batch) {
      const first = batch[0];
      if (first?.kind !== 'handle' || first.attempt === 1) return;
      ctx.metrics.retried.inc(metricLabels(ctx, first.event.type));
      ctx.logger.info(
        { group: ctx.group, stream: ctx.partitionStream, partitionKey, entryId: first.entryId, eventId: first.event.eventId, eventType: first.event.type, attempt: first.attempt },
        'parked key handled after retrying; its later events follow in order',
      );
    },
    async onFailure(item, error) {
      const decision = decideFailure(ctx, item, error);
      logKeyFailure(ctx, item, error, decision);
      if (decision.kind === 'dead-letter') {
        // The key goes on with its next event (attempt 1).
        await deadLetterHandlerFailure(ctx, item, error, item === head ? firstFailedAt : null, decision.reason, source);
        return 'continue';
      }
      await commitFenced(ctx.db, partitionLease(ctx), (tx) =>
        recordParkedFailure(tx, scope, {
          partitionKey, attempts: item.attempt, delayMs: decision.kind === 'retry' ? decision.delayMs : 0, error: errorText(error), halted: decision.kind === 'halt',
        }),
      );
      ctx.progress();
      stopped = true;
      return 'stop';
    },
  });
  if (!stopped && parked.length >= limits.batchSize) parkingDueIn(ctx.parking, 0);
}
