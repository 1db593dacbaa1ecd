/**
 * Maintenance, apart from the drain: trimming the Redis streams this process
 * holds (never past what a consumer group has not acknowledged), and pruning
 * published outbox rows past the retention window under the `maintenance`
 * lease (one replica at a time). Each loop catches, logs once per state
 * change and tries again on its next tick.
 */
import { acquireLease, releaseLease } from '../lease/lease';
import { FailureLog, sleep } from '../backoff';
import type { PublisherContext } from './context';
import { trimStream } from './redis-scripts';
import { prunePublishedBatch, recordTrim } from './statements';
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

/** Every `pruneIntervalMs`, prunes old published rows while holding the maintenance lease; releases it on stop. */
export async function runPruneLoop(ctx: PublisherContext, signal: AbortSignal): Promise<void> {
  const health = new FailureLog(ctx.log, { loop: 'prune' });
  const lease = { streamName: MAINTENANCE_LEASE_STREAM, role: 'maintenance' as const, ownerId: ctx.ownerId };
  let holding = false;
  while (await sleep(ctx.config.pruneIntervalMs, signal)) {
    try {
      const grant = await acquireLease(ctx.sql, { ...lease, ttlMs: Math.max(ctx.config.leaseTtlMs, ctx.config.pruneIntervalMs * 2) });
      holding = grant !== null;
      if (holding) await prunePublishedRows(ctx, signal);
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

async function prunePublishedRows(ctx: PublisherContext, signal: AbortSignal): Promise<void> {
  let total = 0;
  for (;;) {
    const deleted = await prunePublishedBatch(ctx.sql, ctx.config.retentionMs, ctx.config.pruneBatchSize);
    total += deleted;
    if (deleted < ctx.config.pruneBatchSize || signal.aborted) break;
  }
  if (total > 0) {
    ctx.metrics.prunedRows.inc(total);
    ctx.log.info({ pruned: total, retentionMs: ctx.config.retentionMs }, 'pruned published outbox rows past the retention window');
  }
}
