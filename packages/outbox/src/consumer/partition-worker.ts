/**
 * The loop that owns one leased partition: reclaim what a previous owner left
 * pending, then read new entries with a bounded BLOCK, settle them strictly in
 * order, acknowledge. One worker per leased partition, each on its own Redis
 * connection (a blocking read holds its connection).
 */
import type { RedisClient } from '@petcover/service-kit';
import { backoffDelay, sleep } from '../backoff';
import { PartitionLeaseLostError } from './inbox';
import { pruneIdleConsumers } from './prune-idle-consumers';
import { acknowledge, claimAllPending, ensureGroup, isNoGroupError, pendingCountOf, readGroup } from './redis-group';
import { settleEntries, type PartitionContext } from './settle-entries';

/** Limits how many partitions settle a batch at the same time (`--concurrency`). */
export class ConcurrencyLimit {
  private active = 0;
  private readonly waiting: (() => void)[] = [];
  constructor(private readonly max: number) {}

  async acquire(): Promise<() => void> {
    if (this.active >= this.max) await new Promise<void>((resolve) => this.waiting.push(resolve));
    else this.active++;
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = this.waiting.shift();
      if (next) next();
      else this.active--;
    };
  }
}

export interface PartitionWorkerOptions {
  context: Omit<PartitionContext, 'signal'>;
  /** Dedicated connection; the worker disconnects it when it ends. */
  redis: RedisClient;
  key: string;
  batchSize: number;
  blockMs: number;
  /**
   * How often the owner sweeps the partition's pending list again. A replica
   * that lost its lease may still have read entries before noticing (they
   * then sit pending under its name); the sweep hands them to the owner.
   */
  reclaimEveryMs: number;
  limit: ConcurrencyLimit;
  /** Called once when the loop ends by itself (lease lost), not on stop(). */
  onLeaseLost(): void;
}

export class PartitionWorker {
  private readonly abort = new AbortController();
  private loop: Promise<void> | undefined;
  private stopping: Promise<void> | undefined;

  constructor(private readonly options: PartitionWorkerOptions) {}

  get partitionStream(): string {
    return this.options.context.partitionStream;
  }

  start(): void {
    this.loop ??= this.run();
  }

  /**
   * Finishes the batch in hand, acknowledges it, ends the loop and closes the
   * connection. Idempotent. A read in flight returns within `blockMs`; if
   * Redis is unreachable the connection is cut after that grace.
   */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
      this.abort.abort();
      if (!this.loop) return;
      let timer: NodeJS.Timeout | undefined;
      const grace = new Promise<'timeout'>((resolve) => {
        timer = setTimeout(() => resolve('timeout'), this.options.blockMs + 3_000);
      });
      const outcome = await Promise.race([this.loop.then(() => 'done' as const), grace]);
      clearTimeout(timer);
      if (outcome === 'timeout') this.options.redis.disconnect();
      await this.loop;
    })();
    return this.stopping;
  }

  private async run(): Promise<void> {
    const { context, redis, key, batchSize, blockMs, reclaimEveryMs } = this.options;
    const signal = this.abort.signal;
    const ctx: PartitionContext = { ...context, signal };
    const logContext = { group: ctx.group, stream: ctx.partitionStream, key };
    let from = '0-0';
    let reclaim = true;
    let failures = 0;
    let leaseLost = false;
    let lastReclaim = 0;
    // Settled (committed) but not yet acknowledged: sent with the next read, or flushed when the loop ends.
    let unacked: string[] = [];
    while (!signal.aborted) {
      try {
        if (reclaim || (from === '>' && Date.now() - lastReclaim >= reclaimEveryMs)) {
          await ensureGroup(redis, key, ctx.group);
          const claimed = await claimAllPending(redis, key, ctx.group, ctx.ownerId);
          if (claimed > 0) ctx.logger.info({ ...logContext, claimed }, 'reclaimed entries left pending by a previous owner');
          // Consumers idle for ten sweeps with nothing pending are long gone.
          await pruneIdleConsumers(redis, key, ctx.group, ctx.ownerId, reclaimEveryMs * 10);
          reclaim = false;
          lastReclaim = Date.now();
          from = '0-0';
        }
        const { entries, olderPending } = await readGroup(redis, { key, group: ctx.group, consumer: ctx.ownerId, from, count: batchSize, blockMs, ackFirst: unacked });
        unacked = [];
        if (entries.length === 0) {
          // Own pending list drained: switch to new entries.
          from = '>';
          continue;
        }
        if (olderPending) {
          // Older entries are pending (under a replica that lost this partition,
          // or ours): claim them, then re-read our pending list, oldest first.
          // The entries just read are in that list too, so nothing is skipped.
          reclaim = true;
          continue;
        }
        const release = await this.options.limit.acquire();
        let settled: string[];
        try {
          settled = await settleEntries(ctx, entries);
        } finally {
          release();
        }
        unacked = settled;
        if (from !== '>' && settled.length > 0) from = settled[settled.length - 1] as string;
        if (failures > 0) ctx.logger.info(logContext, 'partition consuming again');
        failures = 0;
        if (settled.length < entries.length) break; // stop requested during a retry wait
      } catch (error) {
        if (error instanceof PartitionLeaseLostError) {
          ctx.logger.warn(logContext, 'partition lease lost; leaving the partition to its new owner');
          leaseLost = true;
          break;
        }
        if (isNoGroupError(error)) {
          // Redis restarted empty or was flushed: recreate the group and go on.
          ctx.logger.warn(logContext, 'consumer group missing (Redis restarted or flushed?); recreating it');
          reclaim = true;
          // A short pause keeps a key deleted again and again from turning this into a busy loop.
          await sleep(backoffDelay(1, { baseDelayMs: 100, maxDelayMs: 100 }), signal);
          continue;
        }
        failures++;
        if (failures === 1) ctx.logger.error({ ...logContext, err: error }, 'partition loop failing; backing off and retrying');
        // Whatever we read but did not acknowledge is in our pending list: re-read it first.
        from = '0-0';
        await sleep(backoffDelay(failures), signal);
      }
    }
    if (unacked.length > 0) {
      try {
        await acknowledge(redis, key, ctx.group, unacked);
      } catch (error) {
        // Committed already: whoever reads the partition next sees duplicates and acknowledges them.
        ctx.logger.warn({ ...logContext, err: error, entries: unacked.length }, 'could not acknowledge the last batch before stopping');
      }
    }
    if (!leaseLost) await this.reportLeftovers(logContext);
    this.options.redis.disconnect();
    if (leaseLost) this.options.onLeaseLost();
  }

  private async reportLeftovers(logContext: Record<string, string>): Promise<void> {
    const { context, redis, key } = this.options;
    try {
      const left = await pendingCountOf(redis, key, context.group, context.ownerId);
      if (left > 0) {
        context.logger.warn({ ...logContext, pending: left }, 'stopping with entries pending (a retry wait was cut short); the next owner reclaims them');
      }
    } catch {
      // Redis unreachable at stop: nothing to report, the next owner reclaims.
    }
  }
}
