/**
 * Settles a batch of entries read from one partition, in entry-id order:
 * each is handled (its effect and its processed_event row commit together),
 * recognised as a duplicate, skipped (no handler), or dead-lettered.
 *
 * Fast path: the whole batch in ONE transaction (one processed_event insert
 * for all event ids, handlers run in order, a batch handler once per run of
 * consecutive entries of its type, lease fence, commit). When a handler
 * throws, the transaction rolls back; the entries before it are committed
 * again as a smaller batch, then the failing entry is retried alone with
 * backoff until it succeeds or is dead-lettered, then the rest continues
 * (a failed batch handler's run is first re-run one entry per call, to find
 * the failing entry). Each entry's effect stays atomic and order is kept.
 */
import type { Logger } from 'pino';
import type { Database, Transaction } from '../db';
import { UUID_PATTERN } from '../event-id';
import type { LeaseRole } from '../lease/lease';
import { decodeEntry, MalformedEntryError, type StreamEvent } from '../streams';
import { backoffDelay, sleep, type BackoffPolicy } from '../backoff';
import { recordDeadLetter, type NewDeadLetter } from './dead-letters';
import { assertPartitionLease, markProcessed } from './inbox';
import type { ConsumerMetrics } from './metrics';
import type { RawEntry } from './redis-group';
import { PermanentError, type HandledEvent, type HandlerContext, type HandlerRegistry, type RegisteredHandler } from './registry';

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
    /** A batch handler failed on a run starting at `index`: which entry is to blame is unknown. */
    readonly batched: boolean,
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

type HandleItem = Item & { kind: 'handle' };

/** Entries handled by one handler call: one entry, or a batch handler's run of consecutive entries. */
interface HandlerRun {
  /** Index (in the batch) of its first entry. */
  index: number;
  items: HandleItem[];
}

type BatchOutcome = { ok: true; counts: BatchCounts } | { ok: false; index: number; error: Error; batched: boolean };

/**
 * Runs `items` in one transaction. Resolves {ok:true} after commit, or
 * {ok:false, index, error, batched} when a handler threw (nothing committed).
 * Consecutive fresh entries of a type with a batch handler go to it in one
 * call, unless `oneByOne`. Infrastructure errors (database down, lease lost)
 * are thrown.
 */
async function runBatch(ctx: PartitionContext, items: readonly Item[], attempt: number, oneByOne: boolean): Promise<BatchOutcome> {
  const counts: BatchCounts = { handled: [], duplicates: [], rejected: [], latencies: [] };
  try {
    await ctx.db.transaction(async (tx: Transaction) => {
      for (const item of items) {
        if (item.kind !== 'reject') continue;
        await recordDeadLetter(tx, deadLetterOf(ctx, item, item.error, 1, null));
        counts.rejected.push(item);
      }
      const toHandle = items.filter((i): i is HandleItem => i.kind === 'handle');
      const fresh = await markProcessed(tx, ctx.group, toHandle.map((i) => i.event.eventId));
      let run: HandlerRun | undefined;
      for (let index = 0; index < items.length; index++) {
        const item = items[index] as Item;
        if (item.kind !== 'handle') continue;
        // A second entry with the same event_id in this batch is a duplicate too.
        if (!fresh.delete(item.event.eventId)) {
          counts.duplicates.push(item);
          continue;
        }
        const batchable = !oneByOne && item.handler.handleBatch !== undefined;
        if (run && batchable && run.items[0]!.handler === item.handler) {
          run.items.push(item);
          continue;
        }
        if (run) await callHandler(ctx, tx, attempt, run, counts);
        run = { index, items: [item] };
        if (!batchable) {
          await callHandler(ctx, tx, attempt, run, counts);
          run = undefined;
        }
      }
      if (run) await callHandler(ctx, tx, attempt, run, counts);
      await assertPartitionLease(tx, partitionLease(ctx));
    });
  } catch (error) {
    if (error instanceof HandlerFailure) return { ok: false, index: error.index, error: error.failure, batched: error.batched };
    throw error;
  }
  return { ok: true, counts };
}

function partitionLease(ctx: PartitionContext) {
  return { streamName: ctx.partitionStream, role: ctx.role, ownerId: ctx.ownerId, group: ctx.group };
}

/** One handler call: `handle` for a single entry, `handleBatch` for a run of several. */
async function callHandler(ctx: PartitionContext, tx: Transaction, attempt: number, run: HandlerRun, counts: BatchCounts): Promise<void> {
  const first = run.items[0]!;
  const handler = first.handler;
  const started = process.hrtime.bigint();
  try {
    if (run.items.length > 1 && handler.handleBatch) {
      await handler.handleBatch(run.items.map((item) => handledEvent(ctx, item)), handlerContext(ctx, tx, attempt, run.items));
    } else {
      await handler.handle(handledEvent(ctx, first), handlerContext(ctx, tx, attempt, run.items));
    }
  } catch (error) {
    if (isDatabaseUnavailableError(error)) throw error;
    throw new HandlerFailure(run.index, asError(error), run.items.length > 1);
  }
  counts.latencies.push({ type: first.event.type, seconds: Number(process.hrtime.bigint() - started) / 1e9 });
  counts.handled.push(...run.items);
}

/** The event as handlers see it; a literal, not a spread: this runs once per event on the hot path. */
function handledEvent(ctx: PartitionContext, item: HandleItem): HandledEvent<unknown> {
  const { event } = item;
  return {
    eventId: event.eventId,
    type: event.type,
    stream: ctx.stream,
    partitionKey: event.partitionKey,
    payload: item.payload,
    headers: event.headers,
    createdAt: event.createdAt,
    outboxId: event.outboxId,
    entryId: item.entryId,
  };
}

/** The handler's context; its child logger is built only if the handler logs (a child per event costs throughput). */
function handlerContext(ctx: PartitionContext, tx: Transaction, attempt: number, items: readonly HandleItem[]): HandlerContext {
  let logger: Logger | undefined;
  const first = items[0]!;
  const last = items[items.length - 1]!;
  return {
    tx,
    attempt,
    group: ctx.group,
    get logger() {
      logger ??= ctx.logger.child(
        items.length === 1
          ? { eventId: first.event.eventId, eventType: first.event.type, entryId: first.entryId }
          : { eventType: first.event.type, events: items.length, firstEntryId: first.entryId, lastEntryId: last.entryId },
      );
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
  // After a batch handler failed, the rest of this read is handled one entry per call.
  let oneByOne = false;
  while (queue.length > 0) {
    if (failing && failing.entryId === (queue[0] as Item).entryId) {
      const done = await retryAlone(ctx, queue[0] as HandleItem, failing);
      if (!done) return settled;
      settled.push((queue[0] as Item).entryId);
      queue = queue.slice(1);
      failing = undefined;
      limit = queue.length;
      continue;
    }
    const batch = queue.slice(0, limit);
    const outcome = await runBatch(ctx, batch, 1, oneByOne);
    if (outcome.ok) {
      recordCommitted(ctx, outcome.counts);
      settled.push(...batch.map((i) => i.entryId));
      queue = queue.slice(batch.length);
      limit = queue.length;
      continue;
    }
    if (outcome.batched) {
      // Which entry of the run failed is unknown: commit what came before it,
      // then take the run one entry at a time; the failing one then shows.
      const run = batch[outcome.index] as HandleItem;
      ctx.logger.warn(
        { group: ctx.group, stream: ctx.partitionStream, entryId: run.entryId, eventType: run.event.type, err: outcome.error },
        'batch handler failed; handling its entries one by one to find the failing one',
      );
      oneByOne = true;
      limit = outcome.index > 0 ? outcome.index : queue.length;
      continue;
    }
    const item = batch[outcome.index] as HandleItem;
    noteFailure(ctx, item, 1, outcome.error);
    failing = { entryId: item.entryId, failures: 1, firstFailedAt: new Date(), error: outcome.error };
    // Commit what came before it first (order), then retry it alone.
    limit = outcome.index;
  }
  return settled;
}

function noteFailure(ctx: PartitionContext, item: HandleItem, attempt: number, error: Error): void {
  ctx.metrics.failed.inc(labels(ctx, item.event.type));
  const context = { group: ctx.group, stream: ctx.partitionStream, entryId: item.entryId, eventId: item.event.eventId, eventType: item.event.type, attempt, err: error };
  if (attempt === 1) ctx.logger.warn(context, 'handler failed; will retry unless permanent');
  else ctx.logger.debug(context, 'handler failed again');
}

/**
 * Retries one failing entry with backoff in its own transactions until it
 * commits or is dead-lettered. Returns false when stop cut a wait short.
 */
async function retryAlone(ctx: PartitionContext, item: HandleItem, state: FailureState): Promise<boolean> {
  for (;;) {
    const permanent = isPermanentError(state.error);
    if (permanent || state.failures >= ctx.maxAttempts) {
      await deadLetterHandlerFailure(ctx, item, state, permanent);
      return true;
    }
    if (!(await sleep(backoffDelay(state.failures, ctx.backoff), ctx.signal))) return false;
    ctx.metrics.retried.inc(labels(ctx, item.event.type));
    const attempt = state.failures + 1;
    const outcome = await runBatch(ctx, [item], attempt, true);
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

async function deadLetterHandlerFailure(ctx: PartitionContext, item: HandleItem, state: FailureState, permanent: boolean): Promise<void> {
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
