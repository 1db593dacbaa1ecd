/**
 * Maintenance, apart from the drain: trimming the Redis streams this process
 * holds (never past what a consumer group has not acknowledged), and pruning
 * published outbox rows past the retention window under the `maintenance`
 * lease (one replica at a time). Each loop catches, logs once per state
 * change and tries again on its next tick.
 */
import { acquireLease, releaseLease } from '../lease/lease';
import { FailureLog, sleep } from '../backoff';
import type { Sql } from '../db';
import type { PublisherContext } from './context';
import { trimStream } from './redis-scripts';
import { pruneWindow, recordTrim } from './statements';
import type { StreamDrainer } from './stream-drainer';

/** Lease row (stream_name) under which one replica prunes the outbox. */
export const MAINTENANCE_LEASE_STREAM = 'stream:events:outbox';

/** How long a graceful stop waits for the maintenance lease release (Postgres may be down). */
const RELEASE_TIMEOUT_MS = 2_000;

/**
 * Every `trimIntervalMs`, trims each partition stream of the held streams and
 * records the MINID used, so a later recovery never re-appends what a trim
 * removed by design. A partition that fails (e.g. WRONGTYPE: its drainer
 * reports that) does not stop the others.
 */
export async function runTrimLoop(ctx: PublisherContext, heldDrainers: () => StreamDrainer[], signal: AbortSignal): Promise<void> {
  const health = new FailureLog(ctx.log, { loop: 'trim' });
  while (await sleep(ctx.config.trimIntervalMs, signal)) {
    let failure: unknown;
    for (const drainer of heldDrainers()) {
      for (const { redisKey } of drainer.partitions) {
        try {
          const { removed, minId } = await trimStream(ctx.redis, redisKey, ctx.config.keepAcknowledgedMs, ctx.config.orphanMaxAgeMs);
          if (removed > 0 && minId !== null) {
            await recordTrim(ctx.sql, drainer.stream, redisKey, minId);
            ctx.metrics.trimmedEntries.inc({ stream: drainer.stream }, removed);
            ctx.log.debug({ stream: drainer.stream, redisKey, removed, minId }, 'trimmed acknowledged entries');
          }
        } catch (error) {
          failure ??= error;
        }
      }
    }
    if (failure === undefined) health.succeeded('trim');
    else health.failed(failure, 'trim');
  }
}

/**
 * Every `pruneIntervalMs`, prunes old published rows while holding the
 * maintenance lease; releases it on stop. A pass starts where the previous
 * one stopped, and from the bottom of the table (a full sweep) on the first
 * pass after taking the lease and every `pruneFullSweepIntervalMs` (see
 * PruneCursor).
 */
export async function runPruneLoop(ctx: PublisherContext, signal: AbortSignal): Promise<void> {
  const health = new FailureLog(ctx.log, { loop: 'prune' });
  const lease = { streamName: MAINTENANCE_LEASE_STREAM, role: 'maintenance' as const, ownerId: ctx.ownerId };
  const cursor = new PruneCursor(ctx.config.pruneFullSweepIntervalMs);
  let holding = false;
  while (await sleep(ctx.config.pruneIntervalMs, signal)) {
    try {
      const grant = await acquireLease(ctx.sql, { ...lease, ttlMs: Math.max(ctx.config.leaseTtlMs, ctx.config.pruneIntervalMs * 2) });
      holding = grant !== null;
      // Not ours, or just taken (from another replica, or after a gap): start again from the bottom.
      if (grant === null || grant.acquired) cursor.restart();
      if (holding) await prunePass(ctx, cursor, signal);
      health.succeeded('prune');
    } catch (error) {
      health.failed(error, 'prune');
    }
  }
  if (!holding) return;
  const timer = new AbortController();
  await Promise.race([releaseLease(ctx.sql, lease).catch(() => undefined), sleep(RELEASE_TIMEOUT_MS, timer.signal)]);
  timer.abort();
}

async function prunePass(ctx: PublisherContext, cursor: PruneCursor, signal: AbortSignal): Promise<void> {
  const { fromId, fullSweep } = cursor.next();
  const pass = await prunePublishedRows(ctx.sql, { fromId, retentionMs: ctx.config.retentionMs, windowRows: ctx.config.pruneBatchSize, signal });
  cursor.passed(pass);
  if (pass.deleted > 0) {
    ctx.metrics.prunedRows.inc(pass.deleted);
    ctx.log.info({ pruned: pass.deleted, windows: pass.windows, fullSweep, retentionMs: ctx.config.retentionMs }, 'pruned published outbox rows past the retention window');
  }
}

/** The lowest id a prune can start from (a full sweep): below every id bigserial hands out. */
export const PRUNE_FROM_BOTTOM = '-9223372036854775808';

/** What one prune pass did. */
export interface PrunePass {
  deleted: number;
  /** Windows walked, i.e. statements run (each one short transaction). */
  windows: number;
  /** Rows the windows held, deleted or kept. */
  examined: number;
  /** Where the next pass may start without missing a row that becomes due in the normal course (see prunePublishedRows). */
  resumeFrom: string;
  /** The pass stopped because `signal` was aborted, not because it was done. */
  aborted: boolean;
}

/**
 * One prune pass: deletes the rows published before the cutoff (now() minus
 * `retentionMs`, database clock), walking the primary key upward from
 * `fromId` in windows of `windowRows` rows (pruneWindow, one short
 * transaction each), and stops at the first window that holds a row created
 * at or after the cutoff, or at the end of the table. Idempotent; safe to
 * run beside the drain and beside another pass. Not ordered by age: it goes
 * by id.
 *
 * Why stopping there misses nothing. Ids come from one sequence, handed out
 * in increasing order as rows are inserted (bigserial, cache 1). A row's
 * created_at is its transaction's start, so it is at or before the moment
 * the row took its id. A row's published_at is set after the publisher read
 * the row committed, so it is after the moment that row took its id. Take a
 * row A created at or after the cutoff and any row B with a higher id: B took
 * its id after A did, so published_at(B) > time A took its id >= created_at(A)
 * >= cutoff. B is not due, whether it is published yet or not, committed yet
 * or not. So once a window holds one such A, nothing above it is due now.
 * The argument holds for timestamps the pipeline writes; rows inserted by hand
 * with a created_at later than they really are, or published_at set by hand
 * into the past, can be missed until a full sweep reaches them after a
 * window that is old throughout.
 *
 * Rows that stay unpublished for a long time (a stream whose Redis key is
 * broken) sit at the bottom once everything around them is pruned. A window
 * of them is old throughout, so the pass walks on through it and deletes
 * what is due above them; they are kept. Windows are counted in rows, not
 * ids, so the empty id ranges between them cost nothing, but reading them
 * costs one pass over those rows. To avoid paying it every pass, the caller
 * starts the next pass at `resumeFrom` (the first window of this pass that
 * held a recent row, or just past the end of the table), not at the bottom.
 * What a resumed pass never sees: rows below `resumeFrom` that become due
 * later — the stuck rows once their stream is published, rows created before
 * the cutoff but published after it (a backlog at the time), rows that
 * committed long after taking their id. None is due before it is published,
 * and it stays in the table; the caller's periodic full sweep (PruneCursor)
 * deletes it, at most one sweep interval later than its retention says.
 */
export async function prunePublishedRows(
  sql: Sql,
  options: { fromId?: string; retentionMs: number; windowRows: number; signal?: AbortSignal },
): Promise<PrunePass> {
  let from = options.fromId ?? PRUNE_FROM_BOTTOM;
  const pass: PrunePass = { deleted: 0, windows: 0, examined: 0, resumeFrom: from, aborted: false };
  for (;;) {
    const window = await pruneWindow(sql, from, options.retentionMs, options.windowRows);
    pass.windows += 1;
    pass.deleted += window.deleted;
    pass.examined += window.examined;
    if (window.reachedRecent) return { ...pass, resumeFrom: from };
    // The table ends inside the window: a later row can only take a higher id.
    if (window.lastId === null) return { ...pass, resumeFrom: from };
    from = String(BigInt(window.lastId) + 1n);
    if (window.examined < options.windowRows) return { ...pass, resumeFrom: from };
    if (options.signal?.aborted) return { ...pass, resumeFrom: from, aborted: true };
  }
}

/**
 * Where the maintenance loop starts each prune pass: at the bottom of the
 * table (a full sweep) after `restart()` and once `fullSweepIntervalMs` has
 * passed since the last full sweep began; otherwise where the previous pass
 * said (`resumeFrom`). The full sweep bounds how long a row that became due
 * below the resume point outlives its retention; the resumed passes keep the
 * steady cost to the rows that became due since the last pass plus one window.
 * Kept in memory: a new lease holder starts with a full sweep.
 */
export class PruneCursor {
  private resumeFrom: string | null = null;
  private lastFullSweepAt = Number.NEGATIVE_INFINITY;

  constructor(
    private readonly fullSweepIntervalMs: number,
    private readonly now: () => number = () => performance.now(),
  ) {}

  /** Forget the resume point: the next pass is a full sweep. */
  restart(): void {
    this.resumeFrom = null;
    this.lastFullSweepAt = Number.NEGATIVE_INFINITY;
  }

  next(): { fromId: string; fullSweep: boolean } {
    if (this.resumeFrom === null || this.now() - this.lastFullSweepAt >= this.fullSweepIntervalMs) {
      this.lastFullSweepAt = this.now();
      return { fromId: PRUNE_FROM_BOTTOM, fullSweep: true };
    }
    return { fromId: this.resumeFrom, fullSweep: false };
  }

  passed(pass: PrunePass): void {
    this.resumeFrom = pass.resumeFrom;
  }
}
