/**
 * Settles a batch of entries read from one partition, in entry-id order:
 * each is handled (its effect and its processed_event row commit together),
 * recognised as a duplicate, skipped (no handler), or dead-lettered.
 *
 * Fast path: the whole batch in ONE transaction (one processed_event insert
 * for all event ids, handlers run in order, a batch handler once per run of
 * consecutive entries of its type, lease fence, commit). When a handler
 * throws (or runs past its deadline), the transaction rolls back; the
 * entries before it are committed again as a smaller batch, then the
 * failing entry is either dead-lettered (permanent, or out of attempts) or
 * handed back to the partition worker as a PendingRetry: the worker waits
 * out the backoff WITHOUT holding a concurrency slot or the batch, re-reads
 * the partition's pending entries and calls settleEntries again with it, and
 * the entry is attempted alone (a failed batch handler's run is first re-run
 * one entry per call, to find the failing entry). Each entry's effect stays
 * atomic and order is kept.
 *
 * The parts: classify (decode, schema, replay target), runBatch (one
 * transaction bounded by the deadline), callHandler (one handler call under
 * withDeadline), attemptRetry (the failing entry alone), and
 * deadLetterHandlerFailure (letter + inbox row in one transaction).
 */
import type { Logger } from 'pino';
import type { Database, Transaction } from '../db';
import { databaseErrorOf } from '../errors';
import { UUID_PATTERN } from '../event-id';
import type { LeaseRole } from '../lease/lease';
import { decodeEntry, MalformedEntryError, type StreamEvent } from '../streams';
import { backoffDelay, type BackoffPolicy } from '../backoff';
import { landDeadLetter, REPLAY_FOR_GROUP_HEADER, type DeadLetterLanding, type NewDeadLetter } from './dead-letters';
import { boundTransaction, HandlerTimeoutError, withDeadline } from './handler-timeout';
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
  /** Deadline of a handler call unless its registration overrides it. */
  handlerTimeoutMs: number;
  /** Called whenever the partition moves (a handler call ends, a batch commits): the watchdog's pulse. */
  progress(): void;
  /** Backend pid of the batch transaction in flight (null after it ends), for the watchdog. */
  inTransaction(pid: number | null): void;
  /** Aborted on stop. */
  signal: AbortSignal;
}

/**
 * An entry that failed and waits for its next attempt. The worker sleeps
 * `delayMs` outside its concurrency slot, then passes it back to
 * settleEntries with the re-read entries (it is then the first of them).
 */
export interface PendingRetry {
  entryId: string;
  /** Attempts that failed so far. */
  failures: number;
  firstFailedAt: Date;
  error: Error;
  delayMs: number;
}

/** What settleEntries did: the ids that may be acknowledged (a prefix of the entries) and, if any, the entry to retry. */
export interface SettleResult {
  settled: string[];
  retry?: PendingRetry;
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

type FailureState = Omit<PendingRetry, 'delayMs'>;

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
  // A replayed dead letter is re-delivered to its own group only (see replayDeadLetter).
  const replayFor = event.headers[REPLAY_FOR_GROUP_HEADER];
  if (replayFor !== undefined && replayFor !== ctx.group) return { kind: 'skip', entryId: raw.id, event };
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
  const code = String((databaseErrorOf(error) as { code?: unknown })?.code ?? '');
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
  rejected: { item: Item & { kind: 'reject' }; landing: DeadLetterLanding }[];
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

/** The deadline of a handler call: its registration's override, else the consumer's. */
function timeoutOf(ctx: PartitionContext, handler: RegisteredHandler): number {
  return handler.timeoutMs ?? ctx.handlerTimeoutMs;
}

/**
 * Runs `items` in one transaction. Resolves {ok:true} after commit, or
 * {ok:false, index, error, batched} when a handler threw or ran past its
 * deadline (nothing committed). Consecutive fresh entries of a type with a
 * batch handler go to it in one call, unless `oneByOne`. Rejected entries
 * (malformed, schema) are dead-lettered in the same transaction with their
 * inbox row; one already in the inbox was dead-lettered (or handled) before
 * and is a duplicate. Infrastructure errors (database down, lease lost,
 * DeadLetterRefusedError) are thrown.
 */
async function runBatch(ctx: PartitionContext, items: readonly Item[], attempt: number, oneByOne: boolean): Promise<BatchOutcome> {
  const counts: BatchCounts = { handled: [], duplicates: [], rejected: [], latencies: [] };
  // The longest deadline of the handlers this transaction runs (the default when it runs none).
  let deadlineMs = 0;
  for (const item of items) if (item.kind === 'handle') deadlineMs = Math.max(deadlineMs, timeoutOf(ctx, item.handler));
  if (deadlineMs === 0) deadlineMs = ctx.handlerTimeoutMs;
  try {
    await ctx.db.transaction(async (tx: Transaction) => {
      ctx.inTransaction(await boundTransaction(tx, deadlineMs));
      const withEventId = items.filter((i): i is HandleItem | RejectWithEvent => i.kind === 'handle' || (i.kind === 'reject' && i.event !== null));
      const fresh = await markProcessed(tx, ctx.group, withEventId.map((i) => i.event.eventId));
      for (const item of items) {
        if (item.kind !== 'reject') continue;
        if (item.event && !fresh.delete(item.event.eventId)) {
          counts.duplicates.push(item);
          continue;
        }
        const landing = await landDeadLetter(tx, deadLetterOf(ctx, item, item.error, 1, null), () => rawFieldsOf(item), isDatabaseUnavailableError);
        counts.rejected.push({ item, landing });
      }
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
  } finally {
    ctx.inTransaction(null);
  }
  ctx.progress();
  return { ok: true, counts };
}

type RejectWithEvent = Item & { kind: 'reject'; event: StreamEvent };

/** The entry's fields as received, for the minimal dead letter. */
function rawFieldsOf(item: Item & { kind: 'handle' | 'reject' }): Record<string, string> {
  if (item.kind === 'reject' && !item.event) return item.fields;
  const event = item.event as StreamEvent;
  return {
    event_id: event.eventId,
    type: event.type,
    partition_key: event.partitionKey,
    outbox_id: event.outboxId,
    created_at: event.createdAt,
    payload: JSON.stringify(event.payload),
    headers: JSON.stringify(event.headers),
  };
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
    await withDeadline(first.event.type, timeoutOf(ctx, handler), (signal) =>
      run.items.length > 1 && handler.handleBatch
        ? handler.handleBatch(run.items.map((item) => handledEvent(ctx, item)), handlerContext(ctx, tx, attempt, run.items, signal))
        : handler.handle(handledEvent(ctx, first), handlerContext(ctx, tx, attempt, run.items, signal)),
    );
  } catch (error) {
    if (isDatabaseUnavailableError(error)) throw error;
    throw new HandlerFailure(run.index, asError(error), run.items.length > 1);
  } finally {
    ctx.progress();
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
function handlerContext(ctx: PartitionContext, tx: Transaction, attempt: number, items: readonly HandleItem[], signal: AbortSignal): HandlerContext {
  let logger: Logger | undefined;
  const first = items[0]!;
  const last = items[items.length - 1]!;
  return {
    tx,
    attempt,
    group: ctx.group,
    signal,
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
  for (const { item, landing } of counts.rejected) {
    ctx.metrics.deadLettered.inc({ ...labels(ctx, item.event?.type ?? 'unknown'), reason: item.reason });
    ctx.logger.error(
      { group: ctx.group, stream: ctx.partitionStream, entryId: item.entryId, eventId: item.event?.eventId, eventType: item.event?.type, reason: item.reason, landing, err: item.error },
      landing === 'minimal' ? 'entry dead-lettered at once (minimal row: the full one was refused)' : 'entry dead-lettered at once',
    );
  }
}

/**
 * Settles `entries` (in order) and returns the ids that may now be
 * acknowledged (a prefix of `entries`) and, when an entry failed and may be
 * retried, that entry as a PendingRetry (it and the rest stay pending).
 * `retry`: the PendingRetry of the previous call, whose backoff the worker
 * has waited out; if it is the first entry it is attempted alone at once.
 * Throws on infrastructure errors (database down, PartitionLeaseLostError,
 * DeadLetterRefusedError).
 */
export async function settleEntries(ctx: PartitionContext, entries: readonly RawEntry[], retry?: PendingRetry): Promise<SettleResult> {
  let queue = entries.map((raw) => classify(ctx, raw));
  const settled: string[] = [];
  for (const item of queue) {
    if (item.kind === 'skip') ctx.metrics.skipped.inc(labels(ctx, item.event.type));
    if (item.kind === 'gone') ctx.logger.warn({ group: ctx.group, stream: ctx.partitionStream, entryId: item.entryId }, 'pending entry no longer in the stream (trimmed); acknowledging');
  }
  const head = queue[0];
  let failing: FailureState | undefined =
    retry && head?.kind === 'handle' && head.entryId === retry.entryId
      ? { entryId: retry.entryId, failures: retry.failures, firstFailedAt: retry.firstFailedAt, error: retry.error }
      : undefined;
  let attemptNow = failing !== undefined;
  let limit = queue.length;
  // After a batch handler failed, the rest of this read is handled one entry per call.
  let oneByOne = false;
  while (queue.length > 0) {
    const first = queue[0] as Item;
    if (failing && failing.entryId === first.entryId) {
      const item = first as HandleItem;
      if (attemptNow) {
        attemptNow = false;
        if (await attemptRetry(ctx, item, failing)) {
          failing = undefined;
          settled.push(item.entryId);
          queue = queue.slice(1);
          limit = queue.length;
          continue;
        }
      }
      const permanent = isPermanentError(failing.error);
      if (!permanent && failing.failures < ctx.maxAttempts) {
        return { settled, retry: { ...failing, delayMs: backoffDelay(failing.failures, ctx.backoff) } };
      }
      await deadLetterHandlerFailure(ctx, item, failing, permanent);
      failing = undefined;
      settled.push(item.entryId);
      queue = queue.slice(1);
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
    // Commit what came before it first (order), then retry or dead-letter it.
    limit = outcome.index;
  }
  return { settled };
}

function noteFailure(ctx: PartitionContext, item: HandleItem, attempt: number, error: Error): void {
  ctx.metrics.failed.inc(labels(ctx, item.event.type));
  const timedOut = error instanceof HandlerTimeoutError;
  if (timedOut) ctx.metrics.timedOut.inc(labels(ctx, item.event.type));
  const context = { group: ctx.group, stream: ctx.partitionStream, entryId: item.entryId, eventId: item.event.eventId, eventType: item.event.type, attempt, err: error };
  if (attempt === 1) ctx.logger.warn(context, timedOut ? 'handler ran past its deadline; rolled back, will retry unless out of attempts' : 'handler failed; will retry unless permanent');
  else ctx.logger.debug(context, 'handler failed again');
}

/** One more attempt of the failing entry alone, in its own transaction; true when it committed. */
async function attemptRetry(ctx: PartitionContext, item: HandleItem, state: FailureState): Promise<boolean> {
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
  return false;
}

/**
 * Dead-letters a handler failure: the letter (full, or minimal if refused)
 * and the event's inbox row in ONE transaction, so a crash before XACK
 * neither runs the handler again nor writes a second letter, and a later
 * re-delivery (Redis data loss, outbox replay) is acknowledged as a
 * duplicate while the letter stands. Replay removes the inbox row.
 */
async function deadLetterHandlerFailure(ctx: PartitionContext, item: HandleItem, state: FailureState, permanent: boolean): Promise<void> {
  let landing: DeadLetterLanding | 'duplicate' = 'duplicate';
  await ctx.db.transaction(async (tx) => {
    landing = 'duplicate';
    const fresh = await markProcessed(tx, ctx.group, [item.event.eventId]);
    if (fresh.size > 0) {
      landing = await landDeadLetter(tx, deadLetterOf(ctx, item, state.error, state.failures, state.firstFailedAt), () => rawFieldsOf(item), isDatabaseUnavailableError);
    }
    await assertPartitionLease(tx, partitionLease(ctx));
  });
  ctx.progress();
  if (landing === 'duplicate') {
    ctx.metrics.duplicates.inc(labels(ctx, item.event.type));
    return;
  }
  const reason = permanent ? 'permanent_error' : state.error instanceof HandlerTimeoutError ? 'timeout' : 'retries_exhausted';
  ctx.metrics.deadLettered.inc({ ...labels(ctx, item.event.type), reason });
  ctx.logger.error(
    { group: ctx.group, stream: ctx.partitionStream, entryId: item.entryId, eventId: item.event.eventId, eventType: item.event.type, attempts: state.failures, reason, landing, err: state.error },
    landing === 'minimal' ? 'entry dead-lettered (minimal row: the full one was refused)' : 'entry dead-lettered',
  );
}
