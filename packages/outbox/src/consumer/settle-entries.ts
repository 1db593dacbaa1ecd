/**
 * Settles a batch of entries read from one partition, in entry-id order:
 * each is handled (its effect and its processed_event row commit together),
 * recognised as a duplicate, skipped (no handler), or dead-lettered.
 *
 * Fast path: the whole batch in ONE transaction (one processed_event insert
 * for all event ids, handlers run in order, pipelined where they allow it,
 * lease fence, commit). When a handler throws, the transaction rolls back;
 * the entries before it are committed again as a smaller batch, then the
 * failing entry is retried alone with backoff until it succeeds or is
 * dead-lettered, then the rest continues. Each entry's effect stays atomic and order is kept.
 */
import type { Logger } from 'pino';
import type { Database, Transaction } from '../db';
import { UUID_PATTERN } from '../event-id';
import type { LeaseRole } from '../lease/lease';
import { decodeEntry, MalformedEntryError, type StreamEvent } from '../streams';
import { backoffDelay, sleepUnlessAborted, type BackoffPolicy } from './backoff';
import { recordDeadLetter, type NewDeadLetter } from './dead-letters';
import { assertPartitionLease, markProcessed } from './inbox';
import type { ConsumerMetrics } from './metrics';
import type { RawEntry } from './redis-group';
import { PermanentError, type HandlerContext, type HandlerRegistry, type RegisteredHandler } from './registry';

export interface PartitionContext {
  db: Database;
  registry: HandlerRegistry;
  metrics: ConsumerMetrics;
  logger: Logger;
  group: string;
  role: LeaseRole;
  ownerId: string;
  /** Logical stream name. */
  stream: string;
  /** Partition stream name (lease name, dead-letter stream_name). */
  partitionStream: string;
  maxAttempts: number;
  backoff: BackoffPolicy;
  /** Aborted on stop: cuts retry waits short (the entry stays pending for the next owner). */
  signal: AbortSignal;
}

/** A payload that fails the handler's schema; dead-lettered at once. */
export class PayloadSchemaError extends Error {
  constructor(eventType: string, detail: string) {
    super(`payload of ${eventType} fails its schema: ${detail}`);
    this.name = 'PayloadSchemaError';
  }
}

type Item =
  | { kind: 'handle'; entryId: string; event: StreamEvent; handler: RegisteredHandler; payload: unknown }
  | { kind: 'skip'; entryId: string; event: StreamEvent }
  | { kind: 'gone'; entryId: string }
  | { kind: 'reject'; entryId: string; event: StreamEvent | null; fields: Record<string, string>; error: Error; reason: string };

interface FailureState {
  entryId: string;
  failures: number;
  firstFailedAt: Date;
  error: Error;
}

/** Thrown inside the batch transaction to roll it back and say which item failed. */
class HandlerFailure extends Error {
  constructor(
    readonly index: number,
    readonly failure: Error,
  ) {
    super(failure.message);
  }
}

function fieldsOf(flat: readonly string[]): Record<string, string> {
  const fields: Record<string, string> = {};
  for (let i = 0; i + 1 < flat.length; i += 2) fields[flat[i] as string] = flat[i + 1] as string;
  return fields;
}

function classify(ctx: PartitionContext, raw: RawEntry): Item {
  if (!raw.fields) return { kind: 'gone', entryId: raw.id };
  let event: StreamEvent;
  try {
    event = decodeEntry(raw.fields);
    if (!UUID_PATTERN.test(event.eventId)) {
      throw new MalformedEntryError(`stream entry field event_id is not a UUID (got ${JSON.stringify(event.eventId)})`, fieldsOf(raw.fields));
    }
    event.eventId = event.eventId.toLowerCase();
  } catch (error) {
    return { kind: 'reject', entryId: raw.id, event: null, fields: fieldsOf(raw.fields), error: error as Error, reason: 'malformed_entry' };
  }
  const handler = ctx.registry.get(event.type);
  if (!handler) return { kind: 'skip', entryId: raw.id, event };
  const parsed = handler.schema.safeParse(event.payload);
  if (!parsed.success) {
    const detail = parsed.error.issues.map((i) => `${['payload', ...i.path.map(String)].join('.')}: ${i.message}`).join('; ');
    return { kind: 'reject', entryId: raw.id, event, fields: {}, error: new PayloadSchemaError(event.type, detail), reason: 'schema' };
  }
  return { kind: 'handle', entryId: raw.id, event, handler, payload: parsed.data };
}

/**
 * PermanentError means "dead-letter now". Checked by name too, so a handler
 * module that loaded its own copy of @petcover/outbox is still understood.
 */
export function isPermanentError(error: unknown): boolean {
  return error instanceof PermanentError || (error instanceof Error && error.name === 'PermanentError');
}

/**
 * Errors that say Postgres itself is unreachable or restarting: not the
 * handler's fault, so they must not burn the event's attempts. They abort the
 * batch and the partition loop backs off and re-reads its pending entries.
 */
const CONNECTION_ERROR_CODES = new Set([
  'ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'CONNECTION_CLOSED', 'CONNECTION_ENDED', 'CONNECTION_DESTROYED',
  'CONNECT_TIMEOUT', '57P01', '57P02', '57P03',
]);
export function isDatabaseUnavailableError(error: unknown): boolean {
  const code = String((error as { code?: unknown })?.code ?? '');
  return CONNECTION_ERROR_CODES.has(code) || code.startsWith('08');
}

function asError(error: unknown): Error {
  return error instanceof Error ? error : new Error(String(error));
}

function deadLetterOf(ctx: PartitionContext, item: Item & { kind: 'handle' | 'reject' }, error: Error, attempts: number, firstFailedAt: Date | null): NewDeadLetter {
  const event = item.event;
  return {
    groupName: ctx.group,
    streamName: ctx.partitionStream,
    redisEntryId: item.entryId,
    eventId: event?.eventId ?? null,
    eventType: event?.type ?? null,
    partitionKey: event?.partitionKey ?? null,
    payload: event?.payload ?? null,
    headers: event?.headers ?? null,
    rawEntry: item.kind === 'reject' && !event ? item.fields : null,
    errorMessage: error.message || error.name,
    errorStack: error.stack ?? null,
    attempts,
    firstFailedAt,
  };
}

interface BatchCounts {
  handled: Item[];
  duplicates: Item[];
  rejected: (Item & { kind: 'reject' })[];
  latencies: { type: string; seconds: number }[];
}

/**
 * Runs `items` in one transaction. Resolves {ok:true} after commit, or
 * {ok:false, index, error} when a handler threw (nothing committed).
 * Infrastructure errors (database down, lease lost) are thrown.
 */
async function runBatch(
  ctx: PartitionContext,
  items: readonly Item[],
  attempt: number,
): Promise<{ ok: true; counts: BatchCounts } | { ok: false; index: number; error: Error }> {
  const counts: BatchCounts = { handled: [], duplicates: [], rejected: [], latencies: [] };
  try {
    await ctx.db.transaction(async (tx: Transaction) => {
      for (const item of items) {
        if (item.kind !== 'reject') continue;
        await recordDeadLetter(tx, deadLetterOf(ctx, item, item.error, 1, null));
        counts.rejected.push(item);
      }
      const toHandle = items.filter((i): i is Item & { kind: 'handle' } => i.kind === 'handle');
      const fresh = await markProcessed(tx, ctx.group, toHandle.map((i) => i.event.eventId));
      // Pipelined handlers started but not yet awaited, in batch order.
      const inFlight: Promise<void>[] = [];
      for (let index = 0; index < items.length; index++) {
        const item = items[index] as Item;
        if (item.kind !== 'handle') continue;
        // A second entry with the same event_id in this batch is a duplicate too.
        if (!fresh.delete(item.event.eventId)) {
          counts.duplicates.push(item);
          continue;
        }
        if (item.handler.pipelined) {
          const handled = runHandler(ctx, tx, attempt, item, index, counts);
          handled.catch(() => undefined); // settled (and rethrown) by awaitInFlight
          inFlight.push(handled);
        } else {
          await awaitInFlight(inFlight);
          await runHandler(ctx, tx, attempt, item, index, counts);
        }
      }
      // The lease fence goes out right behind the last pipelined statements (no
      // round trip of its own); its row lock is held until COMMIT either way.
      const fence = assertPartitionLease(tx, partitionLease(ctx));
      fence.catch(() => undefined); // settled (and rethrown) by awaitInFlight
      inFlight.push(fence);
      await awaitInFlight(inFlight);
    });
  } catch (error) {
    if (error instanceof HandlerFailure) return { ok: false, index: error.index, error: error.failure };
    throw error;
  }
  return { ok: true, counts };
}

function partitionLease(ctx: PartitionContext) {
  return { streamName: ctx.partitionStream, role: ctx.role, ownerId: ctx.ownerId, group: ctx.group };
}

/** Runs one handler; its failure becomes a HandlerFailure naming its index, unless Postgres itself is unreachable. */
async function runHandler(ctx: PartitionContext, tx: Transaction, attempt: number, item: Item & { kind: 'handle' }, index: number, counts: BatchCounts): Promise<void> {
  const started = process.hrtime.bigint();
  try {
    await item.handler.handle({ ...item.event, stream: ctx.stream, payload: item.payload, entryId: item.entryId }, handlerContext(ctx, tx, attempt, item));
  } catch (error) {
    if (isDatabaseUnavailableError(error)) throw error;
    throw new HandlerFailure(index, asError(error));
  }
  counts.latencies.push({ type: item.event.type, seconds: Number(process.hrtime.bigint() - started) / 1e9 });
  counts.handled.push(item);
}

/**
 * Waits for every pipelined handler in flight, then throws the failure of
 * the earliest one that failed: statements run in the order they were sent,
 * so later handlers of an aborted transaction only echo that first failure.
 */
async function awaitInFlight(inFlight: Promise<void>[]): Promise<void> {
  if (inFlight.length === 0) return;
  const results = await Promise.allSettled(inFlight);
  inFlight.length = 0;
  const failed = results.find((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed) throw failed.reason;
}

/** The handler's context; its child logger is built only if the handler logs (a child per event costs throughput). */
function handlerContext(ctx: PartitionContext, tx: Transaction, attempt: number, item: Item & { kind: 'handle' }): HandlerContext {
  let logger: Logger | undefined;
  return {
    tx,
    attempt,
    group: ctx.group,
    get logger() {
      logger ??= ctx.logger.child({ eventId: item.event.eventId, eventType: item.event.type, entryId: item.entryId });
      return logger;
    },
  };
}

function labels(ctx: PartitionContext, type: string) {
  return { group: ctx.group, stream: ctx.stream, event_type: type };
}

function countByType(items: readonly Item[]): Map<string, number> {
  const counts = new Map<string, number>();
  for (const item of items) if (item.kind === 'handle') counts.set(item.event.type, (counts.get(item.event.type) ?? 0) + 1);
  return counts;
}

function recordCommitted(ctx: PartitionContext, counts: BatchCounts): void {
  // One increment per event type and batch: a labelled inc per entry shows up at tens of thousands per second.
  for (const [type, n] of countByType(counts.handled)) ctx.metrics.handled.inc(labels(ctx, type), n);
  for (const [type, n] of countByType(counts.duplicates)) ctx.metrics.duplicates.inc(labels(ctx, type), n);
  for (const { type, seconds } of counts.latencies) ctx.metrics.handlerSeconds.observe({ group: ctx.group, event_type: type }, seconds);
  for (const item of counts.rejected) {
    ctx.metrics.deadLettered.inc({ ...labels(ctx, item.event?.type ?? 'unknown'), reason: item.reason });
    ctx.logger.error(
      { group: ctx.group, stream: ctx.partitionStream, entryId: item.entryId, eventId: item.event?.eventId, eventType: item.event?.type, reason: item.reason, err: item.error },
      'entry dead-lettered at once',
    );
  }
}

/**
 * Settles `entries` (in order) and returns the ids that may now be
 * acknowledged: a prefix of `entries`, all of them unless stop was requested
 * while an entry was waiting for a retry (that entry and the rest stay
 * pending for whoever owns the partition next).
 * Throws on infrastructure errors (database down, PartitionLeaseLostError).
 */
export async function settleEntries(ctx: PartitionContext, entries: readonly RawEntry[]): Promise<string[]> {
  let queue = entries.map((raw) => classify(ctx, raw));
  const settled: string[] = [];
  for (const item of queue) {
    if (item.kind === 'skip') ctx.metrics.skipped.inc(labels(ctx, item.event.type));
    if (item.kind === 'gone') ctx.logger.warn({ group: ctx.group, stream: ctx.partitionStream, entryId: item.entryId }, 'pending entry no longer in the stream (trimmed); acknowledging');
  }
  let failing: FailureState | undefined;
  let limit = queue.length;
  while (queue.length > 0) {
    if (failing && failing.entryId === (queue[0] as Item).entryId) {
      const done = await retryAlone(ctx, queue[0] as Item & { kind: 'handle' }, failing);
      if (!done) return settled;
      settled.push((queue[0] as Item).entryId);
      queue = queue.slice(1);
      failing = undefined;
      limit = queue.length;
      continue;
    }
    const batch = queue.slice(0, limit);
    const outcome = await runBatch(ctx, batch, 1);
    if (outcome.ok) {
      recordCommitted(ctx, outcome.counts);
      settled.push(...batch.map((i) => i.entryId));
      queue = queue.slice(batch.length);
      limit = queue.length;
      continue;
    }
    const item = batch[outcome.index] as Item & { kind: 'handle' };
    noteFailure(ctx, item, 1, outcome.error);
    failing = { entryId: item.entryId, failures: 1, firstFailedAt: new Date(), error: outcome.error };
    // Commit what came before it first (order), then retry it alone.
    limit = outcome.index;
  }
  return settled;
}

function noteFailure(ctx: PartitionContext, item: Item & { kind: 'handle' }, attempt: number, error: Error): void {
  ctx.metrics.failed.inc(labels(ctx, item.event.type));
  const context = { group: ctx.group, stream: ctx.partitionStream, entryId: item.entryId, eventId: item.event.eventId, eventType: item.event.type, attempt, err: error };
  if (attempt === 1) ctx.logger.warn(context, 'handler failed; will retry unless permanent');
  else ctx.logger.debug(context, 'handler failed again');
}

/**
 * Retries one failing entry with backoff in its own transactions until it
 * commits or is dead-lettered. Returns false when stop cut a wait short.
 */
async function retryAlone(ctx: PartitionContext, item: Item & { kind: 'handle' }, state: FailureState): Promise<boolean> {
  for (;;) {
    const permanent = isPermanentError(state.error);
    if (permanent || state.failures >= ctx.maxAttempts) {
      await deadLetterHandlerFailure(ctx, item, state, permanent);
      return true;
    }
    if (!(await sleepUnlessAborted(backoffDelay(ctx.backoff, state.failures), ctx.signal))) return false;
    ctx.metrics.retried.inc(labels(ctx, item.event.type));
    const attempt = state.failures + 1;
    const outcome = await runBatch(ctx, [item], attempt);
    if (outcome.ok) {
      recordCommitted(ctx, outcome.counts);
      ctx.logger.info({ group: ctx.group, stream: ctx.partitionStream, entryId: item.entryId, eventId: item.event.eventId, eventType: item.event.type, attempt }, 'handler succeeded after retrying');
      return true;
    }
    state.failures = attempt;
    state.error = outcome.error;
    noteFailure(ctx, item, attempt, outcome.error);
  }
}

async function deadLetterHandlerFailure(ctx: PartitionContext, item: Item & { kind: 'handle' }, state: FailureState, permanent: boolean): Promise<void> {
  await ctx.db.transaction(async (tx) => {
    await recordDeadLetter(tx, deadLetterOf(ctx, item, state.error, state.failures, state.firstFailedAt));
    await assertPartitionLease(tx, partitionLease(ctx));
  });
  const reason = permanent ? 'permanent_error' : 'retries_exhausted';
  ctx.metrics.deadLettered.inc({ ...labels(ctx, item.event.type), reason });
  ctx.logger.error(
    { group: ctx.group, stream: ctx.partitionStream, entryId: item.entryId, eventId: item.event.eventId, eventType: item.event.type, attempts: state.failures, reason, err: state.error },
    'entry dead-lettered',
  );
}
