/**
 * Settles a batch of entries read from one partition, in entry-id order:
 * each is handled (its effect and its processed_event row commit together),
 * recognised as a duplicate, skipped (no handler), parked behind its key, or
 * dead-lettered.
 *
 * Fast path: the whole batch in ONE transaction (one processed_event insert
 * for all event ids, handlers run in order, a batch handler once per run of
 * consecutive entries of its type, lease fence, commit). When a handler
 * throws (or runs past its deadline), the transaction rolls back; the
 * entries before it are committed again as a smaller batch, then the
 * failing entry is either dead-lettered (permanent, or out of attempts under
 * `dead-letter-and-continue`) or PARKED (issue 19): its key goes to
 * events.parked_key with its next attempt due after the backoff, the entry to
 * events.parked_event with its inbox row, all in one transaction, and the
 * partition moves on at once. Later entries of a parked key are parked behind
 * it inside the batch transaction, in order, without running; entries of
 * other keys run. The partition's retry scheduler (retry-parked-keys.ts)
 * re-runs a parked key when due through the same runBatch, on its parked
 * events instead of fresh entries. (A failed batch handler's run is first
 * re-run one entry per call, to find the failing entry.)
 *
 * The parts: classify (decode, schema, replay target), runBatch (one
 * transaction bounded by the deadline, on fresh or parked entries),
 * callHandler (one handler call under withDeadline), parkFailure and
 * deadLetterHandlerFailure (each one transaction).
 */
import type { Logger } from 'pino';
import type { Database, Transaction } from '../db';
import { databaseErrorOf } from '../errors';
import { UUID_PATTERN } from '../event-id';
import type { LeaseRole } from '../lease/lease';
import { decodeEntry, MalformedEntryError, type StreamEvent } from '../streams';
import { backoffDelay, type BackoffPolicy } from '../backoff';
import { landDeadLetter, REPLAY_FOR_GROUP_HEADER, withoutNul, type DeadLetterLanding, type NewDeadLetter } from './dead-letters';
import { boundTransaction, HandlerTimeoutError, withDeadline } from './handler-timeout';
import { commitFenced, markProcessed, PartitionLeaseLostError, type PartitionLeaseRef } from './inbox';
import type { ConsumerMetrics } from './metrics';
import { parkedKeysAmong, parkEntries, parkKey, type ParkingScope } from './parking';
import type { RawEntry } from './redis-group';
import { traceDeadLetter, traceHandlerCall } from '../tracing';
import { PermanentError, type ExhaustedPolicy, type HandledEvent, type HandlerContext, type HandlerRegistry, type RegisteredHandler } from './registry';

export interface PartitionContext {
  db: Database;
  registry: HandlerRegistry;
  metrics: ConsumerMetrics;
  logger: Logger;
  group: string;
  role: LeaseRole;
  ownerId: string;
  /** Token of the lease grant this worker runs under; every commit is fenced on it (assertPartitionLease). */
  fencingToken: string;
  /** Logical stream name. */
  stream: string;
  /** Partition stream name (lease name, dead-letter stream_name). */
  partitionStream: string;
  maxAttempts: number;
  backoff: BackoffPolicy;
  /** What happens to a key whose head runs out of attempts, unless its handler's registration says otherwise. */
  onExhausted: ExhaustedPolicy;
  /** What the worker knows of its partition's parked keys (see ParkingHint). */
  parking: ParkingHint;
  /** Deadline of a handler call unless its registration overrides it. */
  handlerTimeoutMs: number;
  /** How often a partition with parked keys (and none due) looks again for an operator's release or discard. */
  parkingRecheckMs: number;
  /** Called whenever the partition moves (a handler call ends, a batch commits): the watchdog's pulse. */
  progress(): void;
  /** Backend pid of the batch transaction in flight (null after it ends), for the watchdog. */
  inTransaction(pid: number | null): void;
  /** Aborted on stop. */
  signal: AbortSignal;
}

/**
 * The worker's knowledge of its partition's parked keys. `any` false means
 * none: only the lease holder parks (every parking transaction checks the
 * lease), so while it parked nothing since it last counted, the per-batch
 * lookup of parked keys is skipped. `checkAt` (Date.now() ms) is when the
 * worker next looks for due keys; parking a key brings it forward.
 */
export interface ParkingHint {
  any: boolean;
  checkAt: number;
}

/** Bring the parking check forward to `delayMs` from now (a key was parked or became due). */
export function parkingDueIn(hint: ParkingHint, delayMs: number): void {
  hint.any = true;
  hint.checkAt = Math.min(hint.checkAt, Date.now() + delayMs);
}

/** A payload that fails the handler's schema; dead-lettered at once. */
export class PayloadSchemaError extends Error {
  constructor(eventType: string, detail: string) {
    super(`payload of ${eventType} fails its schema: ${detail}`);
    this.name = 'PayloadSchemaError';
  }
}

/**
 * One entry to settle. `attempt` is the attempt a handler call makes (1, or
 * a parked head's failures + 1); `parkedId` the parked_event row of an entry
 * run by the retry scheduler.
 */
export type Item =
  | { kind: 'handle'; entryId: string; event: StreamEvent; handler: RegisteredHandler; payload: unknown; attempt: number; parkedId?: string }
  | { kind: 'skip'; entryId: string; event: StreamEvent }
  | { kind: 'gone'; entryId: string }
  | { kind: 'reject'; entryId: string; event: StreamEvent | null; fields: Record<string, string>; error: Error; reason: string; parkedId?: string };

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
  return classifyHandled(raw.id, event, handler, 1);
}

/** An event with a handler: to handle, or rejected when its payload fails the handler's schema. */
export function classifyHandled(entryId: string, event: StreamEvent, handler: RegisteredHandler, attempt: number, parkedId?: string): Item {
  const parsed = handler.schema.safeParse(event.payload);
  if (!parsed.success) {
    const detail = parsed.error.issues.map((i) => `${['payload', ...i.path.map(String)].join('.')}: ${i.message}`).join('; ');
    return { kind: 'reject', entryId, event, fields: {}, error: new PayloadSchemaError(event.type, detail), reason: 'schema', parkedId };
  }
  return { kind: 'handle', entryId, event, handler, payload: parsed.data, attempt, parkedId };
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

export interface BatchCounts {
  handled: Item[];
  duplicates: Item[];
  /** Entries parked behind their key in this transaction. */
  parked: Item[];
  rejected: { item: Item & { kind: 'reject' }; landing: DeadLetterLanding }[];
  latencies: { type: string; seconds: number }[];
}

export type HandleItem = Item & { kind: 'handle' };

/** Entries handled by one handler call: one entry, or a batch handler's run of consecutive entries. */
interface HandlerRun {
  /** Index (in the batch) of its first entry. */
  index: number;
  items: HandleItem[];
}

export type BatchOutcome = { ok: true; counts: BatchCounts } | { ok: false; index: number; error: Error; batched: boolean };

/** The deadline of a handler call: its registration's override, else the consumer's. */
function timeoutOf(ctx: PartitionContext, handler: RegisteredHandler): number {
  return handler.timeoutMs ?? ctx.handlerTimeoutMs;
}

/**
 * Where a batch's entries come from, and so how it claims them inside the
 * batch transaction. `claim` returns the event ids whose handler runs now
 * (`run`) and those it parked (`parked`); any other is a duplicate.
 * `afterRun` runs in the transaction before the lease fence.
 */
export interface EntrySource {
  claim(tx: Transaction, items: readonly (HandleItem | RejectWithEvent)[]): Promise<{ run: Set<string>; parked: Set<string> }>;
  afterRun?(tx: Transaction): Promise<void>;
}

export function parkingScope(ctx: PartitionContext): ParkingScope {
  return { group: ctx.group, partitionStream: ctx.partitionStream };
}

/**
 * Entries read from Redis: each gets its inbox row (processed_event); an
 * entry already there is a duplicate. When the partition has parked keys,
 * the entries of those keys are parked behind them instead of run (their
 * inbox rows stay: a re-delivery is a duplicate, the parked row runs once).
 */
function freshEntries(ctx: PartitionContext): EntrySource {
  return {
    async claim(tx, items) {
      const handled = items.filter((i): i is HandleItem => i.kind === 'handle');
      const keys = ctx.parking.any ? await parkedKeysAmong(tx, parkingScope(ctx), handled.map((i) => i.event.partitionKey)) : new Set<string>();
      const run = await markProcessed(tx, ctx.group, items.map((i) => i.event.eventId));
      const parked = new Set<string>();
      if (keys.size > 0) {
        const toPark = handled.filter((i) => keys.has(i.event.partitionKey) && run.delete(i.event.eventId));
        for (const item of toPark) parked.add(item.event.eventId);
        await parkEntries(tx, parkingScope(ctx), toPark);
      }
      return { run, parked };
    },
  };
}

/**
 * Runs `items` in one transaction. Resolves {ok:true} after commit, or
 * {ok:false, index, error, batched} when a handler threw or ran past its
 * deadline (nothing committed). Consecutive entries to run of a type with a
 * batch handler go to it in one call, unless `oneByOne`. Rejected entries
 * (malformed, schema) are dead-lettered in the same transaction with their
 * inbox row; one already in the inbox was dead-lettered (or handled) before
 * and is a duplicate. `source` claims the entries (fresh: inbox rows, and
 * parking behind parked keys; parked: deleting their parked rows).
 * Infrastructure errors (database down, lease lost, DeadLetterRefusedError)
 * are thrown.
 */
export async function runBatch(ctx: PartitionContext, items: readonly Item[], oneByOne: boolean, source: EntrySource = freshEntries(ctx)): Promise<BatchOutcome> {
  const counts: BatchCounts = { handled: [], duplicates: [], parked: [], rejected: [], latencies: [] };
  // The longest deadline of the handlers this transaction runs (the default when it runs none).
  let deadlineMs = 0;
  for (const item of items) if (item.kind === 'handle') deadlineMs = Math.max(deadlineMs, timeoutOf(ctx, item.handler));
  if (deadlineMs === 0) deadlineMs = ctx.handlerTimeoutMs;
  try {
    await commitFenced(ctx.db, partitionLease(ctx), async (tx: Transaction) => {
      const withEventId = items.filter((i): i is HandleItem | RejectWithEvent => i.kind === 'handle' || (i.kind === 'reject' && i.event !== null));
      // One round trip for both: postgres.js pipelines the statements of one
      // connection, and the server runs them in the order sent (the bounds
      // first, both are issued in this same tick), so the claim's lock waits
      // are already bounded. A failure of either rolls the transaction back.
      const [, { run: fresh, parked }] = await Promise.all([
        boundTransaction(tx, deadlineMs).then((pid) => ctx.inTransaction(pid)),
        source.claim(tx, withEventId),
      ]);
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
          if (parked.delete(item.event.eventId)) counts.parked.push(item);
          else counts.duplicates.push(item);
          continue;
        }
        const batchable = !oneByOne && item.handler.handleBatch !== undefined;
        if (run && batchable && run.items[0]!.handler === item.handler) {
          run.items.push(item);
          continue;
        }
        if (run) await callHandler(ctx, tx, run, counts);
        run = { index, items: [item] };
        if (!batchable) {
          await callHandler(ctx, tx, run, counts);
          run = undefined;
        }
      }
      if (run) await callHandler(ctx, tx, run, counts);
      await source.afterRun?.(tx);
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

export type RejectWithEvent = Item & { kind: 'reject'; event: StreamEvent };

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

export function partitionLease(ctx: PartitionContext): PartitionLeaseRef {
  return { streamName: ctx.partitionStream, role: ctx.role, ownerId: ctx.ownerId, fencingToken: ctx.fencingToken, group: ctx.group };
}

/** One handler call: `handle` for a single entry, `handleBatch` for a run of several. */
async function callHandler(ctx: PartitionContext, tx: Transaction, run: HandlerRun, counts: BatchCounts): Promise<void> {
  const first = run.items[0]!;
  const attempt = first.attempt;
  const handler = first.handler;
  const started = process.hrtime.bigint();
  try {
    await traceHandlerCall(ctx, run.items, attempt, () =>
      withDeadline(first.event.type, timeoutOf(ctx, handler), (signal) =>
        run.items.length > 1 && handler.handleBatch
          ? handler.handleBatch(run.items.map((item) => handledEvent(ctx, item)), handlerContext(ctx, tx, attempt, run.items, signal))
          : handler.handle(handledEvent(ctx, first), handlerContext(ctx, tx, attempt, run.items, signal)),
      ),
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

export function metricLabels(ctx: PartitionContext, type: string) {
  return { group: ctx.group, stream: ctx.stream, event_type: type };
}

function countByType(items: readonly Item[]): Map<string, number> {
  const counts = new Map<string, number>();
  for (const item of items) if (item.kind === 'handle') counts.set(item.event.type, (counts.get(item.event.type) ?? 0) + 1);
  return counts;
}

export function recordCommitted(ctx: PartitionContext, counts: BatchCounts): void {
  // One increment per event type and batch: a labelled inc per entry shows up at tens of thousands per second.
  for (const [type, n] of countByType(counts.handled)) ctx.metrics.handled.inc(metricLabels(ctx, type), n);
  for (const [type, n] of countByType(counts.duplicates)) ctx.metrics.duplicates.inc(metricLabels(ctx, type), n);
  for (const [type, n] of countByType(counts.parked)) ctx.metrics.parked.inc(metricLabels(ctx, type), n);
  for (const { type, seconds } of counts.latencies) ctx.metrics.handlerSeconds.observe({ group: ctx.group, event_type: type }, seconds);
  for (const { item, landing } of counts.rejected) {
    ctx.metrics.deadLettered.inc({ ...metricLabels(ctx, item.event?.type ?? 'unknown'), reason: item.reason });
    traceDeadLetter(ctx, item.entryId, item.event, { error: item.error, reason: item.reason, attempts: 1 });
    ctx.logger.error(
      { group: ctx.group, stream: ctx.partitionStream, entryId: item.entryId, eventId: item.event?.eventId, eventType: item.event?.type, reason: item.reason, landing, err: item.error },
      landing === 'minimal' ? 'entry dead-lettered at once (minimal row: the full one was refused)' : 'entry dead-lettered at once',
    );
  }
}

/**
 * Settles `entries` (in order) and returns the ids that may now be
 * acknowledged: all of them, unless an infrastructure error is thrown
 * (database down, PartitionLeaseLostError, DeadLetterRefusedError), in which
 * case nothing of the call is acknowledged and what committed is recognised
 * as duplicates when re-read. A failing entry never holds the partition: it
 * is parked (or dead-lettered, or its key halted) and the rest goes on.
 */
export async function settleEntries(ctx: PartitionContext, entries: readonly RawEntry[]): Promise<string[]> {
  const queue = entries.map((raw) => classify(ctx, raw));
  for (const item of queue) {
    if (item.kind === 'skip') ctx.metrics.skipped.inc(metricLabels(ctx, item.event.type));
    if (item.kind === 'gone') ctx.logger.warn({ group: ctx.group, stream: ctx.partitionStream, entryId: item.entryId }, 'pending entry no longer in the stream (trimmed); acknowledging');
  }
  return settleInOrder(ctx, queue, freshEntries(ctx), {
    async onFailure(item, error) {
      await settleFailure(ctx, item, error, null, freshEntries(ctx));
      return 'continue';
    },
  });
}

/** What a settle loop is told to do with an entry whose handler failed, once the entries before it committed. */
export interface InOrderOptions {
  /** Entries of the first transaction (default all): 1 runs a retried head alone first. */
  firstLimit?: number;
  /** After each commit, with the entries it settled. */
  onCommitted?(batch: readonly Item[]): void;
  /** Settles the failing entry ('continue': go on with the rest) or leaves it and the rest unsettled ('stop'). */
  onFailure(item: HandleItem, error: Error): Promise<'continue' | 'stop'>;
}

/**
 * The settle loop, for fresh and parked entries alike: `queue` in order
 * through runBatch, as whole batches; after a batch handler failed, its run
 * one entry per call (the failing entry then shows); for a failing entry,
 * the entries before it are committed first (order), then `onFailure`
 * decides. Returns the ids of the entries settled (a prefix of `queue`).
 */
export async function settleInOrder(ctx: PartitionContext, items: readonly Item[], source: EntrySource, options: InOrderOptions): Promise<string[]> {
  let queue = items;
  const settled: string[] = [];
  let failing: { item: HandleItem; error: Error } | undefined;
  let limit = options.firstLimit ?? queue.length;
  // After a batch handler failed, the rest is handled one entry per call.
  let oneByOne = false;
  while (queue.length > 0) {
    const first = queue[0] as Item;
    if (failing && failing.item === first) {
      const { item, error } = failing;
      failing = undefined;
      if ((await options.onFailure(item, error)) === 'stop') break;
      settled.push(first.entryId);
      queue = queue.slice(1);
      limit = queue.length;
      continue;
    }
    const batch = queue.slice(0, limit);
    const outcome = await runBatch(ctx, batch, oneByOne, source);
    if (outcome.ok) {
      recordCommitted(ctx, outcome.counts);
      options.onCommitted?.(batch);
      settled.push(...batch.map((i) => i.entryId));
      queue = queue.slice(batch.length);
      limit = queue.length;
      continue;
    }
    const item = batch[outcome.index] as HandleItem;
    if (outcome.batched) {
      // Which entry of the run failed is unknown: commit what came before it, then take the run one entry at a time.
      ctx.logger.warn(
        { group: ctx.group, stream: ctx.partitionStream, entryId: item.entryId, eventType: item.event.type, err: outcome.error },
        'batch handler failed; handling its entries one by one to find the failing one',
      );
      oneByOne = true;
      limit = outcome.index > 0 ? outcome.index : queue.length;
      continue;
    }
    noteFailure(ctx, item, outcome.error);
    failing = { item, error: outcome.error };
    limit = outcome.index;
  }
  return settled;
}

function noteFailure(ctx: PartitionContext, item: HandleItem, error: Error): void {
  ctx.metrics.failed.inc(metricLabels(ctx, item.event.type));
  if (item.attempt > 1) ctx.metrics.retried.inc(metricLabels(ctx, item.event.type));
  if (error instanceof HandlerTimeoutError) ctx.metrics.timedOut.inc(metricLabels(ctx, item.event.type));
}

/** What happens to a head that failed: retried after a delay, dead-lettered, or its key halted. */
export type FailureDecision = { kind: 'retry'; delayMs: number } | { kind: 'dead-letter'; reason: string } | { kind: 'halt' };

/**
 * The retry policy: a PermanentError, or the `maxAttempts`-th failure,
 * exhausts the key's head; then its handler's `onExhausted` (else the
 * group's) says dead-letter-and-continue or halt. Otherwise the next attempt
 * comes after the exponential backoff.
 */
export function decideFailure(ctx: PartitionContext, item: HandleItem, error: Error): FailureDecision {
  const permanent = isPermanentError(error);
  if (!permanent && item.attempt < ctx.maxAttempts) return { kind: 'retry', delayMs: backoffDelay(item.attempt, ctx.backoff) };
  if ((item.handler.onExhausted ?? ctx.onExhausted) === 'halt') return { kind: 'halt' };
  return { kind: 'dead-letter', reason: permanent ? 'permanent_error' : error instanceof HandlerTimeoutError ? 'timeout' : 'retries_exhausted' };
}

/**
 * Settles an entry read fresh whose handler just failed (attempt 1): it is
 * dead-lettered, or parked with its key (to retry after the delay, or halted),
 * in one transaction with its inbox row. `firstFailedAt` null: now.
 */
async function settleFailure(ctx: PartitionContext, item: HandleItem, error: Error, firstFailedAt: Date | null, source: EntrySource): Promise<void> {
  const decision = decideFailure(ctx, item, error);
  if (decision.kind === 'dead-letter') {
    logKeyFailure(ctx, item, error, decision);
    await deadLetterHandlerFailure(ctx, item, error, firstFailedAt, decision.reason, source);
    return;
  }
  logKeyFailure(ctx, item, error, decision);
  const halted = decision.kind === 'halt';
  const delayMs = decision.kind === 'retry' ? decision.delayMs : 0;
  let fresh = false;
  try {
    await commitFenced(ctx.db, partitionLease(ctx), async (tx) => {
      fresh = (await markProcessed(tx, ctx.group, [item.event.eventId])).size > 0;
      if (fresh) {
        await parkKey(tx, parkingScope(ctx), { partitionKey: item.event.partitionKey, attempts: item.attempt, delayMs, error: errorText(error), halted });
        await parkEntries(tx, parkingScope(ctx), [item]);
      }
    });
  } catch (refusal) {
    if (isDatabaseUnavailableError(refusal) || refusal instanceof PartitionLeaseLostError) throw refusal;
    // Postgres refused the parked row for its content (e.g. a NUL in the key): a dead letter always lands, parking must not stop the partition.
    ctx.logger.error({ group: ctx.group, stream: ctx.partitionStream, entryId: item.entryId, eventId: item.event.eventId, err: refusal }, 'could not park the failing entry; dead-lettering it instead');
    await deadLetterHandlerFailure(ctx, item, error, firstFailedAt, 'park_refused', source);
    return;
  }
  ctx.progress();
  if (!fresh) {
    ctx.metrics.duplicates.inc(metricLabels(ctx, item.event.type));
    return;
  }
  ctx.metrics.parked.inc(metricLabels(ctx, item.event.type));
  parkingDueIn(ctx.parking, halted ? ctx.parkingRecheckMs : Math.min(delayMs, ctx.parkingRecheckMs));
}

/** The error as stored with a parked key (Postgres text refuses NUL). */
export function errorText(error: Error): string {
  return withoutNul((error.message || error.name).slice(0, 2_000));
}

/** One log line per change of a key's state: parked (first failure), halted. Later failures of a parked head are debug. */
export function logKeyFailure(ctx: PartitionContext, item: HandleItem, error: Error, decision: FailureDecision): void {
  const context = {
    group: ctx.group, stream: ctx.partitionStream, partitionKey: item.event.partitionKey, entryId: item.entryId, eventId: item.event.eventId,
    eventType: item.event.type, attempt: item.attempt, err: error, ...(decision.kind === 'retry' ? { retryInMs: decision.delayMs } : {}),
  };
  if (decision.kind === 'halt') {
    ctx.logger.error(context, 'key halted: its head ran out of attempts (policy halt); its later events stay parked until an operator runs events key release or discard');
  } else if (item.attempt === 1) {
    const what = error instanceof HandlerTimeoutError ? 'handler ran past its deadline; rolled back' : 'handler failed';
    ctx.logger.warn(
      context,
      decision.kind === 'retry' ? `${what}; key parked (its later events wait behind it, other keys go on), retrying when due` : `${what}; out of attempts`,
    );
  } else {
    ctx.logger.debug(context, 'parked key failed again');
  }
}

/**
 * Dead-letters a handler failure: the letter (full, or minimal if refused)
 * and the event's claim (`source`: its inbox row for an entry read fresh, the
 * deletion of its parked row and the key's release or next head for a parked
 * one) in ONE transaction, so a crash before XACK neither runs the handler
 * again nor writes a second letter, and a later re-delivery (Redis data loss,
 * outbox replay) is acknowledged as a duplicate while the letter stands.
 * Replay removes the inbox row.
 */
export async function deadLetterHandlerFailure(
  ctx: PartitionContext,
  item: HandleItem,
  error: Error,
  firstFailedAt: Date | null,
  reason: string,
  source: EntrySource,
): Promise<void> {
  let landing: DeadLetterLanding | 'duplicate' = 'duplicate';
  await commitFenced(ctx.db, partitionLease(ctx), async (tx) => {
    landing = 'duplicate';
    const { run } = await source.claim(tx, [item]);
    if (run.size > 0) {
      landing = await landDeadLetter(tx, deadLetterOf(ctx, item, error, item.attempt, firstFailedAt), () => rawFieldsOf(item), isDatabaseUnavailableError);
    }
    await source.afterRun?.(tx);
  });
  ctx.progress();
  if (landing === 'duplicate') {
    ctx.metrics.duplicates.inc(metricLabels(ctx, item.event.type));
    return;
  }
  ctx.metrics.deadLettered.inc({ ...metricLabels(ctx, item.event.type), reason });
  traceDeadLetter(ctx, item.entryId, item.event, { error, reason, attempts: item.attempt });
  ctx.logger.error(
    { group: ctx.group, stream: ctx.partitionStream, partitionKey: item.event.partitionKey, entryId: item.entryId, eventId: item.event.eventId, eventType: item.event.type, attempts: item.attempt, reason, landing, err: error },
    landing === 'minimal' ? 'entry dead-lettered (minimal row: the full one was refused)' : 'entry dead-lettered',
  );
}
