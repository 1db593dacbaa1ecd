/**
 * One drainer per stream whose publisher lease this process holds. It owns
 * that stream's state and its failures: a Redis error on this stream (a
 * WRONGTYPE key, a script error, an oversized entry) is logged once, counted,
 * recorded for `events status`, and backed off here while every other stream
 * keeps flowing.
 *
 * State, explicit:
 * - `heads`: per partition stream, the last entry id Redis must have. It comes
 *   from Postgres (`events.redis_stream_position`, written by the statement
 *   that marks rows published) when the drainer reconciles, then follows its
 *   own appends. Every append is a compare-and-set on it (append.lua).
 * - `syncNeeded`: reconcile Redis with Postgres before the next append (on
 *   taking the lease, after any error, after Redis answered MOVED or NOMETA,
 *   and when the idle check sees the stream change).
 * - `cursor`: the keyset cursor of the drain ('0' = a full sweep).
 * - `marking`: the batch whose published_at UPDATE runs while the next batch
 *   is selected and appended (at most one).
 * - `wake`: awake (holding the stream's wake lock, polling every `gatherMs`
 *   so one batch carries what committed meanwhile) or asleep on NOTIFY; see
 *   wake-lock.ts for how it falls asleep without missing a commit.
 */
import { ReplyError } from 'ioredis';
import { acquireLease, ImpossibleLeaseError, type LeaseGrant } from '../lease/lease';
import { compareEntryIds, entryIdParts, NO_ENTRY } from '../entry-id';
import { partitionCount, partitionFor, partitionStreamName, redisStreamKey } from '../streams';
import { answeredWithin, FailureLog, NoAnswerError, sleep, Wakeup } from '../backoff';
import { tracePublish } from '../tracing';
import type { PublisherContext } from './context';
import { StreamWake } from './wake-lock';
import { appendBatch, entriesAfter, stampFence, streamHead, type AppendedEntry, type OutboxRowForAppend } from './redis-scripts';
import {
  DrainBatchSizer,
  readPositions,
  recordEntries,
  recordFault,
  recordPosition,
  requeueRows,
  selectRecordedAfter,
  selectUnpublishedBatch,
  type EntryRecord,
} from './statements';

type DrainOutcome = 'full' | 'partial' | 'idle' | 'stop';

interface Partition {
  index: number;
  redisKey: string;
  /** The stream's last entry id as Redis must have it; undefined until reconciled. */
  head: string | undefined;
}

interface InFlightMark {
  fencingToken: string;
  /** Never rejects unhandled (see startMark). */
  result: Promise<{ leaseHeld: boolean; updated: number }>;
}

/** Our lease is gone (expired, deleted, taken over) or a newer owner fenced Redis: stop draining. */
class LeaseGoneError extends Error {}

/** A Redis error of one partition stream, with the key it happened on. */
class PartitionFault extends Error {
  /** The Redis error code: WRONGTYPE, ERR, BUSY, ... */
  readonly code: string;

  constructor(
    readonly redisKey: string,
    original: Error,
  ) {
    super(`${redisKey}: ${original.message}`);
    this.name = 'PartitionFault';
    this.code = /^[A-Z]+/.exec(original.message)?.[0] ?? 'ERR';
  }
}

/**
 * How long a Redis call of the drain may go unanswered before the drain gives
 * it up (and re-syncs from what Redis holds, as after a lost connection): a
 * frozen master never fails a call, and a cluster client may queue one
 * forever while it reconnects. Far above a cluster's own failover retries.
 */
const REDIS_ANSWER_MS = 10_000;

/**
 * A Redis call on one partition key, bounded by REDIS_ANSWER_MS; a reply
 * error is tagged with the key it came from, so it is reported against that key.
 */
function onKey<T>(redisKey: string, promise: Promise<T>): Promise<T> {
  return answeredWithin(promise, REDIS_ANSWER_MS, `Redis on ${redisKey}`).catch((error: unknown) => {
    throw error instanceof ReplyError ? new PartitionFault(redisKey, error as Error) : error;
  });
}

/**
 * A Postgres step of a stream's drain or lease, bounded by postgresAnswerMs:
 * past it the step fails with NoAnswerError, counted by `step`. The caller
 * treats that like any failure of the step (the drain backs off, re-syncs and
 * goes on, on other connections of the pool). The call itself is abandoned:
 * a select's late rows are dropped, and a late mark or lease statement is
 * fenced and idempotent (see PUBLISHER_DEFAULTS.postgresAnswerMs).
 */
export function postgresStep<T>(ctx: PublisherContext, stream: string, step: string, call: Promise<T>): Promise<T> {
  return answeredWithin(call, ctx.config.postgresAnswerMs, `Postgres ${step} of stream ${stream}`).catch((error: unknown) => {
    if (error instanceof NoAnswerError) ctx.metrics.postgresNoAnswer.inc({ stream, step });
    throw error;
  });
}

export class StreamDrainer {
  readonly stream: string;
  fencingToken: string;
  readonly partitions: Partition[];
  private readonly wakeup = new Wakeup();
  private readonly controller = new AbortController();
  private readonly health: FailureLog;
  /** Rows per select, shrunk to the byte budget at the size of recent rows. */
  private readonly sizer: DrainBatchSizer;
  private syncNeeded = true;
  private cursor = '0';
  private marking: InFlightMark | undefined;
  private idle = false;
  /** The fault recorded in Postgres for `events status` (key and message), to clear it once. */
  private recordedFault: { redisKey: string; message: string } | undefined;
  private done: Promise<void> | undefined;
  /** Awake (polling, holding the wake lock) or asleep on NOTIFY: see wake-lock.ts. */
  private readonly wake: StreamWake;
  /** The last drainBatch selected rows. */
  private rowsSeen = false;

  constructor(
    private readonly ctx: PublisherContext,
    grant: LeaseGrant,
    /** Called once when the drainer stops on its own (lease lost or fenced). */
    private readonly onDropped: (drainer: StreamDrainer, reason: string) => void,
  ) {
    this.stream = grant.streamName;
    this.fencingToken = grant.fencingToken;
    const count = partitionCount(this.stream, ctx.partitions);
    this.partitions = Array.from({ length: count }, (_, index) => ({
      index,
      redisKey: redisStreamKey(partitionStreamName(this.stream, index, count), ctx.keyPrefix),
      head: undefined,
    }));
    this.health = new FailureLog(ctx.log, { loop: 'drain', stream: this.stream });
    this.sizer = new DrainBatchSizer({ rows: ctx.config.batchSize, bytes: ctx.config.batchMaxBytes });
    this.wake = new StreamWake(ctx.wakeLocks, ctx.sql, this.stream, ctx.config.wakeLingerMs, ctx.hooks?.onWakeState);
  }

  start(): void {
    this.done ??= this.run();
  }

  /** Aborts the loop; resolves once the batch in hand is appended and marked (or failed). */
  stop(): Promise<void> {
    this.controller.abort();
    return this.done ?? Promise.resolve();
  }

  /** New rows (NOTIFY) or a reason to look again. */
  ring(): void {
    this.wakeup.ring();
  }

  /** Our lease row was re-inserted with a new token (deleted by hand): fence with it, reconcile first. */
  adoptToken(fencingToken: string): void {
    this.fencingToken = fencingToken;
    this.syncNeeded = true;
    this.cursor = '0';
    this.ring();
  }

  /**
   * For an idle stream no append comes that would notice Redis changing
   * (restored from a snapshot, flushed, key deleted): compare each partition's
   * end with its head; any difference wakes the drainer to reconcile.
   */
  async checkIdle(): Promise<void> {
    if (!this.idle || this.syncNeeded) return;
    const heads = await Promise.all(this.partitions.map((p) => onKey(p.redisKey, streamHead(this.ctx.redis, p.redisKey))));
    if (!this.idle) return; // the drainer woke meanwhile: its own appends moved the heads
    if (heads.some((h, i) => !h.hasMeta || h.lastEntryId !== this.partitions[i]!.head)) {
      this.syncNeeded = true;
      this.ring();
    }
  }

  private async run(): Promise<void> {
    const signal = this.controller.signal;
    while (!signal.aborted) {
      try {
        if (this.syncNeeded) {
          await this.settleMark();
          await this.reconcile();
        }
        this.rowsSeen = false;
        const outcome = await this.drainBatch();
        this.healthy();
        if (outcome === 'stop') break;
        if (this.rowsSeen) await this.pg('wake', this.wake.sawRows());
        if (outcome === 'full') continue;
        // Traffic: poll after the gather interval (producers send no NOTIFY while we are awake).
        if (outcome === 'partial' || (await this.pg('wake', this.wake.idle())) === 'poll') {
          await sleep(this.wake.pollDelayMs(this.ctx.config.gatherMs), signal);
          continue;
        }
        const sleepMs = await this.pg('wake', this.wake.sleepMs(this.ctx.config.pollIntervalMs));
        this.idle = true;
        await this.wakeup.wait(sleepMs, signal);
        this.idle = false;
      } catch (error) {
        this.idle = false;
        // A hand-edited lease row is the lease keeper's to report (once); this drainer just stops.
        if (error instanceof LeaseGoneError || error instanceof ImpossibleLeaseError) {
          this.drop(error.message);
          break;
        }
        this.cursor = '0';
        this.syncNeeded = true;
        this.ctx.metrics.appendErrors.inc({ stream: this.stream });
        await this.noteFault(error);
        await sleep(this.health.failed(error, 'drain'), signal);
      }
    }
    // A graceful stop lets the batch in hand be marked before the lease is released.
    await this.settleMark().catch((error: unknown) =>
      this.ctx.log.warn({ stream: this.stream, err: error }, 'marking the last batch published failed; the next owner marks it from the Redis entries'),
    );
    await this.pg('wake', this.wake.stop()).catch(() => undefined); // a lock left held only costs producers their NOTIFY
  }

  private pg<T>(step: string, call: Promise<T>): Promise<T> {
    return postgresStep(this.ctx, this.stream, step, call);
  }

  private drop(reason: string): void {
    this.controller.abort();
    this.onDropped(this, reason);
  }

  // ---- the drain ----------------------------------------------------------

  /**
   * One batch: select in id order, append per partition (pipelined), then
   * start its fenced UPDATE and return without waiting for it. The next batch
   * is selected and appended while that UPDATE runs; it is awaited before the
   * next UPDATE starts and before any sweep (which would see its rows again).
   */
  private async drainBatch(): Promise<DrainOutcome> {
    const { stream, ctx } = this;
    const sweeping = this.cursor === '0';
    if (sweeping) await this.settleMark();
    const fencingToken = this.fencingToken;
    const batch = await this.pg('select', selectUnpublishedBatch(ctx.sql, stream, this.cursor, this.sizer.bounds));
    this.sizer.observe(batch);
    const { rows, full } = batch;
    if (rows.length === 0) {
      this.cursor = '0'; // caught up on the cursor: sweep from the start once before going idle
      return sweeping ? 'idle' : 'full';
    }
    this.rowsSeen = true;
    // Until this batch is marked published, any early return restarts from a sweep.
    this.cursor = '0';
    for (const row of rows) {
      if (!row.payloadIsObject) {
        ctx.log.warn({ stream, outboxId: row.id, eventId: row.eventId, type: row.type }, 'payload is not a JSON object; publishing it as is (consumers will dedupe or dead-letter it)');
      }
    }
    ctx.hooks?.beforeAppend?.(stream, rows);
    const record = await tracePublish(stream, rows, () => this.appendToPartitions(rows, fencingToken));
    if (!record) return 'full'; // reconcile first, then this batch again
    ctx.hooks?.afterAppend?.(stream, rows);
    if ((await this.settleMark()) === 'retry') return 'full';
    this.marking = this.startMark(record, fencingToken);
    // The cursor only moves past rows this owner appended and is marking published.
    this.cursor = full ? rows[rows.length - 1]!.id : '0';
    return full || !sweeping ? 'full' : 'partial';
  }

  /**
   * One Lua call per partition, all sent at once (ioredis pipelines them on
   * the connection), each a compare-and-set on that partition's head. Per-key
   * order holds because a key maps to one partition and rows keep their id
   * order within it. Returns what to record, or undefined when Redis moved
   * under us (partitions already appended are marked by the reconcile).
   */
  private async appendToPartitions(rows: readonly OutboxRowForAppend[], fencingToken: string): Promise<EntryRecord | undefined> {
    const count = this.partitions.length;
    const byPartition = new Map<number, OutboxRowForAppend[]>();
    for (const row of rows) {
      const p = partitionFor(row.partitionKey, count);
      const list = byPartition.get(p);
      if (list) list.push(row);
      else byPartition.set(p, [row]);
    }
    const writer = this.ctx.writerWith(fencingToken);
    const results = await Promise.all(
      [...byPartition].map(async ([index, list]) => {
        const partition = this.partitions[index]!;
        return { partition, list, result: await onKey(partition.redisKey, appendBatch(this.ctx.redis, partition.redisKey, writer, partition.head ?? NO_ENTRY, list)) };
      }),
    );
    const ids: string[] = [];
    const eventIds: string[] = [];
    const entryIds: string[] = [];
    const heads: Array<EntryRecord['heads'][number]> = [];
    let moved = false;
    for (const { partition, list, result } of results) {
      if (result.status === 'fenced') {
        if (this.fencingToken !== fencingToken) moved = true; // re-acquired with a new token meanwhile
        else {
          this.ctx.metrics.fencedRefusals.inc({ stream: this.stream });
          this.ctx.log.warn(
            { stream: this.stream, redisKey: partition.redisKey, fencingToken, redisFencingToken: result.currentToken },
            'append refused: a newer publisher fenced this stream; stopping to drain it',
          );
          throw new LeaseGoneError('fenced by a newer owner');
        }
      } else if (result.status === 'lost' || result.status === 'moved') {
        moved = true;
      } else {
        this.ctx.noteForeignDatabase(this.stream, partition.redisKey, result.previousDatabaseId);
        list.forEach((row, i) => {
          ids.push(row.id);
          eventIds.push(row.eventId);
          entryIds.push(result.entryIds[i]!);
        });
        partition.head = result.entryIds[result.entryIds.length - 1]!;
        heads.push({ redisKey: partition.redisKey, lastEntryId: partition.head, lastOutboxId: list[list.length - 1]!.id });
      }
    }
    if (moved) {
      this.syncNeeded = true;
      return undefined;
    }
    return { ids, eventIds, entryIds, heads };
  }

  /** Starts the fenced UPDATE of an appended batch without waiting for it. */
  private startMark(record: EntryRecord, fencingToken: string): InFlightMark {
    const result = recordEntries(this.ctx.sql, this.stream, this.ctx.ownerId, fencingToken, record);
    result.catch(() => undefined); // awaited (and rethrown) by settleMark
    return { fencingToken, result };
  }

  /**
   * Waits for the batch being marked published, if any. 'retry': the lease
   * was re-acquired with a new token meanwhile (the batch is marked by the
   * reconcile, from its Redis entries). Throws LeaseGoneError when the lease
   * is gone, and what the UPDATE threw (the loop then reconciles after a
   * pause: the appended rows are marked from Redis, never appended twice).
   */
  private async settleMark(): Promise<'ok' | 'retry'> {
    const mark = this.marking;
    if (!mark) return 'ok';
    this.marking = undefined;
    const { leaseHeld, updated } = await this.pg('mark', mark.result);
    if (!leaseHeld) {
      this.cursor = '0';
      if (this.fencingToken !== mark.fencingToken) return 'retry';
      throw new LeaseGoneError('marking published found the lease gone: it expired, was deleted or was taken over (the next owner marks the appended rows from Redis)');
    }
    this.ctx.metrics.eventsPublished.inc({ stream: this.stream }, updated);
    this.ctx.metrics.batches.inc({ stream: this.stream });
    return 'ok';
  }

  // ---- reconcile Redis with Postgres -------------------------------------

  /**
   * Before any append: confirm the lease, fence every partition with our
   * token, then bring each partition's head in line with what Postgres
   * recorded. Redis ahead → mark the rows its newer entries carry. Redis
   * behind → queue exactly the rows recorded after its last entry again; the
   * drain then appends them in outbox-id order, before any newer row.
   */
  private async reconcile(): Promise<void> {
    const { ctx, stream } = this;
    const grant = await this.pg('lease', acquireLease(ctx.sql, { streamName: stream, role: 'publisher', ownerId: ctx.ownerId, ttlMs: ctx.config.leaseTtlMs }));
    if (!grant) throw new LeaseGoneError('lease lost before reconciling Redis with Postgres');
    if (grant.fencingToken !== this.fencingToken) this.fencingToken = grant.fencingToken;
    const writer = ctx.writerWith(this.fencingToken);
    const stamps = await Promise.all(this.partitions.map((p) => onKey(p.redisKey, stampFence(ctx.redis, p.redisKey, writer))));
    for (const [i, stamp] of stamps.entries()) {
      if (stamp.status === 'fenced') {
        ctx.metrics.fencedRefusals.inc({ stream });
        ctx.log.error(
          { stream, redisKey: this.partitions[i]!.redisKey, fencingToken: this.fencingToken, redisFencingToken: stamp.currentToken },
          'Redis carries a newer fencing token than our lease; not draining this stream',
        );
        throw new LeaseGoneError('fenced by a newer owner');
      }
      ctx.noteForeignDatabase(stream, this.partitions[i]!.redisKey, stamp.previousDatabaseId);
    }
    const recorded = await this.pg('positions', readPositions(ctx.sql, this.partitions.map((p) => p.redisKey)));
    for (const [i, partition] of this.partitions.entries()) {
      const stamp = stamps[i]!;
      if (stamp.status !== 'ok') continue;
      const actual = stamp.lastEntryId;
      const position = recorded.get(partition.redisKey);
      const last = position?.lastEntryId ?? null;
      if (last === null || compareEntryIds(actual, last) > 0) {
        await this.markFromEntries(partition, last, actual);
      } else if (compareEntryIds(actual, last) < 0) {
        partition.head = actual;
        await this.requeueLost(partition, actual, last, position?.trimmedBelow ?? null);
      } else {
        partition.head = actual;
      }
    }
    this.syncNeeded = false;
    this.cursor = '0';
  }

  /**
   * Redis holds entries after what Postgres recorded (a crash or a failed
   * UPDATE between append and mark, or a partition never recorded): mark the
   * unpublished rows they carry, matched by outbox id and event id. With no
   * recorded position only the newest entries are read (the most an
   * interrupted owner can have appended unmarked is two batches).
   */
  private async markFromEntries(partition: Partition, after: string | null, actual: string): Promise<void> {
    const { ctx, stream } = this;
    let cursor = after;
    let marked = 0;
    for (;;) {
      const page = await onKey(partition.redisKey, entriesAfter(ctx.redis, partition.redisKey, cursor, ctx.config.batchSize * 2));
      if (page.lastSeen === null) break;
      const last: AppendedEntry | undefined = page.entries[page.entries.length - 1];
      const result = await this.pg(
        'mark',
        recordEntries(ctx.sql, stream, ctx.ownerId, this.fencingToken, {
          ids: page.entries.map((e) => e.outboxId),
          eventIds: page.entries.map((e) => e.eventId),
          entryIds: page.entries.map((e) => e.entryId),
          heads: [{ redisKey: partition.redisKey, lastEntryId: page.lastSeen, lastOutboxId: last?.outboxId ?? '0' }],
        }),
      );
      if (!result.leaseHeld) throw new LeaseGoneError('lease lost while marking rows from Redis entries');
      marked += result.updated;
      cursor = page.lastSeen;
      if (!page.more) break;
    }
    partition.head = actual;
    if (marked > 0) {
      ctx.metrics.markedFromRedis.inc({ stream }, marked);
      ctx.metrics.eventsPublished.inc({ stream }, marked);
      ctx.log.info(
        { stream, redisKey: partition.redisKey, marked, recordedEntryId: after, redisLastEntryId: actual },
        'Redis held entries not yet marked published (an append whose mark did not happen); marked their rows from the entries, nothing appended twice',
      );
    }
  }

  /**
   * Redis ends before what Postgres recorded (restarted from an older
   * snapshot, failover to a lagging replica, flush, stream deleted): the
   * published rows recorded after Redis's last entry (and not below the last
   * trim, which removed entries by design) go back into the queue in Postgres
   * — published_at and entry id cleared, fenced — and the drain appends them
   * again, in outbox-id order, before any newer row. Consumers dedupe by
   * event_id.
   *
   * Why queue them first rather than append while reading: the debt must stay
   * recorded until it is paid. Appending page by page left the rows not yet
   * re-sent with entry ids of the Redis that lost them; when Redis lost data
   * again mid-way (a second restore, a crash loop) those stale ids compared as
   * older than the new Redis's last entry, so the next recovery skipped them
   * for good (pnpm chaos --seed 930171721 --duration 600: 1,985 lost). The
   * partition's position moves to Redis's last entry only after every page is
   * queued, so a crash in between finds Redis behind again and finishes.
   */
  private async requeueLost(partition: Partition, actual: string, recordedLast: string, trimmedBelow: string | null): Promise<void> {
    const { ctx, stream } = this;
    const [ms, seq] = entryIdParts(actual);
    let bound = { ms, seq };
    if (trimmedBelow !== null && compareEntryIds(trimmedBelow, actual) > 0) {
      const [tMs, tSeq] = entryIdParts(trimmedBelow);
      bound = { ms: tMs, seq: tSeq - 1n }; // entries at or above the trim floor
    }
    ctx.metrics.redisDataLoss.inc({ stream });
    ctx.log.warn(
      { stream, redisKey: partition.redisKey, redisLastEntryId: actual, recordedEntryId: recordedLast, trimmedBelow },
      'Redis is behind what Postgres recorded (older snapshot, lagging replica, flush or deleted stream); queueing exactly the missing rows again, to be re-appended in outbox-id order before any newer row',
    );
    let afterId = '0';
    let requeued = 0;
    for (;;) {
      const { rows } = await this.pg('select', selectRecordedAfter(ctx.sql, stream, bound, afterId, this.sizer.bounds));
      if (rows.length === 0) break;
      afterId = rows[rows.length - 1]!.id;
      const mine = rows.filter((r) => partitionFor(r.partitionKey, this.partitions.length) === partition.index);
      if (mine.length === 0) continue;
      const result = await this.pg('requeue', requeueRows(ctx.sql, stream, ctx.ownerId, this.fencingToken, { ids: mine.map((r) => r.id), eventIds: mine.map((r) => r.eventId) }));
      if (!result.leaseHeld) throw new LeaseGoneError('lease lost while queueing the rows Redis lost');
      requeued += result.updated;
    }
    if (!(await this.pg('positions', recordPosition(ctx.sql, stream, ctx.ownerId, this.fencingToken, partition.redisKey, actual)))) {
      throw new LeaseGoneError('lease lost while recording where Redis ends');
    }
    ctx.metrics.republished.inc({ stream }, requeued);
    ctx.log.warn({ stream, redisKey: partition.redisKey, republished: requeued }, 'Redis had lost entries; the missing rows are queued again and re-appended before any newer row');
  }

  // ---- faults -------------------------------------------------------------

  /**
   * A Redis error of one partition (WRONGTYPE, script error, entry too
   * large) is this stream's alone: counted by cause, and recorded in Postgres
   * once per new message so `events status` names it. Connection errors are
   * not recorded: they are everyone's, and `/readyz` reports them.
   */
  private async noteFault(error: unknown): Promise<void> {
    if (!(error instanceof PartitionFault)) return;
    this.ctx.metrics.streamFaults.inc({ stream: this.stream, cause: error.code });
    if (this.recordedFault?.redisKey === error.redisKey && this.recordedFault.message === error.message) return;
    try {
      await this.pg('fault', recordFault(this.ctx.sql, this.stream, error.redisKey, error.message));
      this.recordedFault = { redisKey: error.redisKey, message: error.message };
    } catch {
      // Postgres down as well: the log line and the metric still say it; retried on the next failure.
    }
  }

  private healthy(): void {
    this.health.succeeded('drain');
    const fault = this.recordedFault;
    if (!fault) return;
    this.recordedFault = undefined;
    recordFault(this.ctx.sql, this.stream, fault.redisKey, null).catch(() => {
      this.recordedFault = fault; // cleared on the next success instead
    });
  }
}
