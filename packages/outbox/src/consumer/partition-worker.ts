/**
 * The loop that owns one leased partition: reclaim what a previous owner left
 * pending, then read entries (bounded in count and bytes), settle them
 * strictly in order, acknowledge. One worker per leased partition, each on
 * its own Redis connection (a blocking read holds its connection).
 *
 * A failing entry never holds the partition (issue 19): it is parked with
 * its key in Postgres and acknowledged, and the worker goes on. Between reads,
 * while its partition has parked keys, the worker runs the ones that are due
 * (retry-parked-keys.ts), under its lease and slot.
 *
 * Memory: a worker reads, settles and retries parked keys only while holding
 * a concurrency slot, so at most `concurrency` batches of at most
 * `readMaxBytes` (plus one entry) are in hand. An idle worker waits for new
 * entries with a blocking read: holding its slot when there are no more
 * workers than slots (nobody can be kept waiting; the wait then brings the
 * whole batch in one round trip), else outside its slot with a read of ONE
 * entry. Either way no longer than until a parked key is due.
 *
 * Round trips per batch at a steady trickle: the wait (with the previous
 * batch's XACK in front of it and the batch read behind it), then the
 * settle transaction. A read that came back short means the partition was
 * caught up, so the next look is the wait itself, not an empty read first.
 */
import type { RedisClient } from '@petcover/service-kit';
import { databaseErrorOf } from '../errors';
import { answeredWithin, backoffDelay, NoAnswerError, sleep } from '../backoff';
import { DeadLetterRefusedError } from './dead-letters';
import { PartitionLeaseLostError } from './inbox';
import { pruneIdleConsumers } from './prune-idle-consumers';
import { acknowledge, claimAllPending, ensureGroup, isNoGroupError, pendingCountOf, readGroup, waitForEntry, type ReadResult } from './redis-group';
import { retryDueKeys } from './retry-parked-keys';
import { settleEntries, type PartitionContext } from './settle-entries';
import { clearStuckPartition, reportStuckPartition } from './stuck-partitions';

/**
 * Limits how many partitions read and settle a batch at the same time
 * (`--concurrency`). Workers join it while they run: with no more members
 * than slots, nobody ever waits for one, and a worker may keep its slot while
 * it waits for new entries (see PartitionWorker).
 */
export class ConcurrencyLimit {
  private active = 0;
  private members = 0;
  private readonly waiting: (() => void)[] = [];
  constructor(private readonly max: number) {}

  /** A worker starts (returns its leave function). */
  join(): () => void {
    this.members++;
    let left = false;
    return () => {
      if (!left) this.members--;
      left = true;
    };
  }

  /** No more members than slots: holding one while waiting keeps nobody waiting. */
  get uncontended(): boolean {
    return this.members <= this.max;
  }

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

/**
 * A short name for what went wrong on one partition, for the metric label and
 * the log. `fromRedis`: the error came from a Redis call; a refused or reset
 * connection reads the same from either server, so only the caller can tell.
 */
export function partitionErrorCause(error: unknown, fromRedis: boolean): string {
  if (error instanceof NoAnswerError) return 'redis_no_answer';
  if (error instanceof DeadLetterRefusedError) return 'dead_letter_refused';
  if (fromRedis) {
    const message = String((error as Error)?.message ?? error);
    if (message.startsWith('WRONGTYPE')) return 'wrong_key_type';
    if (/ECONNREFUSED|ECONNRESET|Connection is closed|aborted due to connection close|ETIMEDOUT|Stream isn't writeable/i.test(message)) return 'redis_unreachable';
    return 'error';
  }
  const code = String((databaseErrorOf(error) as { code?: unknown })?.code ?? '');
  if (code === '57014') return 'statement_timeout';
  if (code === '55P03') return 'lock_timeout';
  if (code.startsWith('08') || code.startsWith('57P') || /CONNECTION_|ECONN/.test(code)) return 'postgres_unreachable';
  return 'error';
}

export interface PartitionWorkerOptions {
  context: Omit<PartitionContext, 'signal' | 'progress' | 'inTransaction' | 'parking'>;
  /**
   * Opens the worker's own connection (a blocking read holds it); called again
   * to replace one that stopped answering. The worker disconnects it when it ends.
   */
  connect(): RedisClient;
  /**
   * How long a Redis call may go unanswered beyond its BLOCK time before the
   * connection is given up and replaced (a frozen server never fails a call;
   * a cluster client queues calls while it reconnects, without bound).
   */
  redisAnswerMs: number;
  key: string;
  batchSize: number;
  /** Byte budget of one read (fields and values; the first entry always comes). */
  readMaxBytes: number;
  blockMs: number;
  /**
   * How often the owner sweeps the partition's pending list again. A replica
   * that lost its lease may still have read entries before noticing (they
   * then sit pending under its name); the sweep hands them to the owner.
   */
  reclaimEveryMs: number;
  limit: ConcurrencyLimit;
  /** Redis hash of the group's stuck partitions (see stuck-partitions.ts). */
  stuckKey: string;
  /** Called once when the loop ends by itself (lease lost), not on stop(). */
  onLeaseLost(): void;
}

export class PartitionWorker {
  private readonly abort = new AbortController();
  private loop: Promise<void> | undefined;
  private stopping: Promise<void> | undefined;
  /** When the worker started working on entries it has not finished; null while idle or waiting. */
  private busySince: number | null = null;
  private lastProgress = Date.now();
  /** What the worker has in hand, for the watchdog's log line. */
  private inHand: { entryId: string; entries: number } | null = null;
  /** Backend pid of the batch transaction in flight. */
  private backendPid: number | null = null;

  /** The worker's connection; replaced when a call goes unanswered (see redisCall). */
  private redis: RedisClient;
  /** stop() closed the connection: the loop's last calls are not even tried. */
  private closedByStop = false;
  /** Errors thrown by this worker's Redis calls (see partitionErrorCause). */
  private readonly redisErrors = new WeakSet<object>();

  constructor(private readonly options: PartitionWorkerOptions) {
    this.redis = options.connect();
  }

  get partitionStream(): string {
    return this.options.context.partitionStream;
  }

  /** The token of the lease grant this worker runs under (its commits are fenced on it). */
  get fencingToken(): string {
    return this.options.context.fencingToken;
  }

  start(): void {
    this.loop ??= this.run();
  }

  /** Resolves when the loop has ended (for whatever reason). */
  get ended(): Promise<void> {
    return this.loop ?? Promise.resolve();
  }

  /**
   * How long the worker has been working on entries in hand without any
   * handler call ending or any batch committing (0 while idle or waiting
   * for its concurrency slot or new entries).
   */
  stalledMs(now = Date.now()): number {
    if (this.busySince === null) return 0;
    return now - Math.max(this.busySince, this.lastProgress);
  }

  get entryInHand(): { entryId: string; entries: number } | null {
    return this.inHand;
  }

  /** Backend pid of the batch transaction in flight, if any (the watchdog terminates it). */
  get transactionBackendPid(): number | null {
    return this.backendPid;
  }

  /**
   * Watchdog exit: ends the loop without waiting for it (it is stuck in a
   * call that does not return). Whatever it still commits is refused by the
   * lease fence once the lease is gone; its connection closes when it ends.
   */
  abandon(): void {
    this.abort.abort();
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
      if (outcome === 'timeout') {
        this.closedByStop = true;
        this.redis.disconnect();
      }
      await this.loop;
    })();
    return this.stopping;
  }

  private async run(): Promise<void> {
    const { context, key, batchSize, readMaxBytes, reclaimEveryMs } = this.options;
    const signal = this.abort.signal;
    const ctx: PartitionContext = {
      ...context,
      signal,
      progress: () => (this.lastProgress = Date.now()),
      inTransaction: (pid) => (this.backendPid = pid),
      // Unknown until the first look (at once): a previous owner may have left parked keys.
      parking: { any: true, checkAt: 0 },
    };
    const logContext = { group: ctx.group, stream: ctx.partitionStream, key };
    let from = '0-0';
    let reclaim = true;
    let failures = 0;
    let failingCause: string | null = null;
    let leaseLost = false;
    let lastReclaim = 0;
    // Entries the first XREADGROUP of the bounded read asks for: a guess from the last read's sizes.
    let firstChunk = 1;
    const stuckLogged = new Set<string>();
    let stuckReported = false;
    // Settled (committed) but not yet acknowledged: sent with the next read, or flushed when the loop ends.
    let unacked: string[] = [];
    // The last read of new entries returned fewer than it could: the next look is the blocking wait.
    let caughtUp = false;
    const leave = this.options.limit.join();
    while (!signal.aborted) {
      let release: (() => void) | undefined;
      try {
        if (reclaim || (from === '>' && Date.now() - lastReclaim >= reclaimEveryMs)) {
          await this.redisCall('XGROUP CREATE', (redis) => ensureGroup(redis, key, ctx.group));
          const claimed = await this.redisCall('XAUTOCLAIM', (redis) => claimAllPending(redis, key, ctx.group, ctx.ownerId));
          if (claimed > 0) ctx.logger.info({ ...logContext, claimed }, 'reclaimed entries left pending by a previous owner');
          // Consumers idle for ten sweeps with nothing pending are long gone.
          await this.redisCall('XINFO CONSUMERS', (redis) => pruneIdleConsumers(redis, key, ctx.group, ctx.ownerId, reclaimEveryMs * 10));
          reclaim = false;
          lastReclaim = Date.now();
          from = '0-0';
        }
        release = await this.options.limit.acquire();
        if (signal.aborted) break;
        if (Date.now() >= ctx.parking.checkAt) {
          this.busySince = Date.now();
          await retryDueKeys(ctx, { batchSize, readMaxBytes });
          this.busySince = null;
        }
        let read: ReadResult;
        if (caughtUp && from === '>') {
          // The last read took everything new: wait for more at once, acknowledging on the way (no empty read first).
          const waited = await this.waitForNew(ctx, release, unacked, firstChunk);
          unacked = [];
          release = waited.slot;
          read = waited;
        } else {
          read = await this.redisCall('XREADGROUP', (redis) =>
            readGroup(redis, { key, group: ctx.group, consumer: ctx.ownerId, from, count: batchSize, maxBytes: readMaxBytes, firstChunk, ackFirst: unacked }),
          );
          unacked = [];
          if (read.entries.length === 0) {
            if (from !== '>') {
              // Own pending list drained: switch to new entries.
              from = '>';
              continue;
            }
            const waited = await this.waitForNew(ctx, release, [], firstChunk);
            release = waited.slot;
            read = waited;
          }
        }
        // Nothing new within the wait: wait again (after a look at parked keys), without a read first.
        caughtUp = read.entries.length === 0;
        if (caughtUp) continue;
        firstChunk = Math.min(batchSize, Math.max(1, Math.floor(readMaxBytes / Math.max(1, read.bytes / read.entries.length))));
        if (read.olderPending) {
          // Older entries are pending (under a replica that lost this partition,
          // or ours): claim them, then re-read our pending list, oldest first.
          // The entries just read are in that list too, so nothing is skipped.
          reclaim = true;
          continue;
        }
        this.busySince = Date.now();
        this.inHand = { entryId: read.entries[0]!.id, entries: read.entries.length };
        const settled = await settleEntries(ctx, read.entries);
        this.busySince = null;
        this.inHand = null;
        unacked = settled;
        const last = settled[settled.length - 1];
        // Entries delivered but not settled (cut by the byte budget) are in our
        // pending list, after the last settled one: read them from there before anything new.
        if (from !== '>') from = last ?? from;
        else if (read.more || settled.length < read.entries.length) from = last ?? '0-0';
        else caughtUp = read.entries.length < batchSize;
        if (failures > 0 || stuckReported) {
          ctx.logger.info(logContext, 'partition consuming again');
          if (stuckReported) await this.redisCall('HDEL', (redis) => clearStuckPartition(redis, this.options.stuckKey, ctx.partitionStream));
          stuckReported = false;
        }
        failures = 0;
        failingCause = null;
      } catch (error) {
        this.busySince = null;
        this.inHand = null;
        release?.();
        release = undefined;
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
        const cause = partitionErrorCause(error, typeof error === 'object' && error !== null && this.redisErrors.has(error));
        ctx.metrics.partitionErrors.inc({ group: ctx.group, stream: ctx.partitionStream, cause });
        if (error instanceof DeadLetterRefusedError) {
          // Logged for every distinct stuck entry, not once per process; events status names it.
          if (!stuckLogged.has(error.entryId)) {
            stuckLogged.add(error.entryId);
            ctx.metrics.stuckEntries.inc({ group: ctx.group, stream: ctx.partitionStream });
            ctx.logger.error(
              { ...logContext, entryId: error.entryId, err: error.cause },
              'partition stuck: even a minimal dead letter was refused for this entry; it stays pending and is retried with backoff (see events status)',
            );
          }
          try {
            const stuck = {
              partitionStream: ctx.partitionStream,
              entryId: error.entryId,
              cause: String((error.cause as Error)?.message ?? error.cause).slice(0, 500),
              ownerId: ctx.ownerId,
              since: new Date().toISOString(),
            };
            await this.redisCall('HSET', (redis) => reportStuckPartition(redis, this.options.stuckKey, stuck));
            stuckReported = true;
          } catch {
            // Redis trouble shows in the read that follows.
          }
        } else if (cause !== failingCause) {
          failingCause = cause;
          ctx.logger.error({ ...logContext, cause, err: error }, 'partition loop failing; backing off this partition alone and retrying');
        }
        // Whatever we read but did not acknowledge is in our pending list: re-read it first.
        from = '0-0';
        await sleep(backoffDelay(failures), signal);
      } finally {
        release?.();
      }
    }
    if (unacked.length > 0 && !this.closedByStop) {
      try {
        await this.redisCall('XACK', (redis) => acknowledge(redis, key, ctx.group, unacked));
      } catch (error) {
        // Committed already: whoever reads the partition next sees duplicates and acknowledges them.
        ctx.logger.warn({ ...logContext, err: error, entries: unacked.length }, 'could not acknowledge the last batch before stopping');
      }
    }
    // Another replica samples this partition's parking from now on.
    const gauge = { group: ctx.group, stream: ctx.partitionStream };
    for (const metric of [ctx.metrics.parkedEntries, ctx.metrics.parkedKeys, ctx.metrics.haltedKeys]) metric.remove(gauge);
    leave();
    if (!leaseLost && !this.closedByStop) await this.reportLeftovers(logContext);
    this.redis.disconnect();
    if (leaseLost) this.options.onLeaseLost();
  }

  /**
   * Waits for new entries (waitForEntry), acknowledging `ackFirst` on the way.
   * Uncontended (no more workers than slots), the worker keeps its slot and
   * the wait brings a whole batch in one round trip. Otherwise it gives the
   * slot up while it waits, holding at most ONE entry, then takes the slot
   * back and reads what arrived with that entry. Returns the slot it holds.
   */
  private async waitForNew(ctx: PartitionContext, slot: () => void, ackFirst: readonly string[], firstChunk: number): Promise<ReadResult & { slot: (() => void) | undefined }> {
    const { key, batchSize, readMaxBytes, blockMs, limit } = this.options;
    // No longer than until a parked key is due (BLOCK 0 would mean forever).
    const untilDue = Math.max(1, Math.min(blockMs, ctx.parking.checkAt - Date.now()));
    const wait = { key, group: ctx.group, consumer: ctx.ownerId, blockMs: untilDue, ackFirst };
    if (limit.uncontended && batchSize > 1) {
      const read = await this.redisCall('XREADGROUP BLOCK', (redis) => waitForEntry(redis, { ...wait, rest: { count: batchSize - 1, maxBytes: readMaxBytes, firstChunk } }), untilDue);
      return { ...read, slot };
    }
    slot();
    const waited = await this.redisCall('XREADGROUP BLOCK', (redis) => waitForEntry(redis, wait), untilDue);
    if (waited.entries.length === 0) return { ...waited, slot: undefined };
    const reacquired = await limit.acquire();
    if (waited.olderPending || batchSize === 1 || waited.bytes >= readMaxBytes) return { ...waited, slot: reacquired };
    try {
      // Woken by one entry: take what arrived with it too, so a burst is still one batch.
      const rest = await this.redisCall('XREADGROUP', (redis) =>
        readGroup(redis, {
          key, group: ctx.group, consumer: ctx.ownerId, from: '>', count: batchSize - 1, maxBytes: readMaxBytes - waited.bytes, firstChunk, continuing: waited.entries[0]!.id,
        }),
      );
      return { entries: [...waited.entries, ...rest.entries], olderPending: rest.olderPending, more: rest.more, bytes: waited.bytes + rest.bytes, slot: reacquired };
    } catch (error) {
      reacquired();
      throw error;
    }
  }

  /**
   * One Redis call of the worker, bounded: unanswered `blockMs` +
   * `redisAnswerMs` after it was made, it fails with NoAnswerError and the
   * connection is given up for a fresh one. Without the bound a frozen
   * master (SIGSTOP, a paused VM) held the partition forever: the call never
   * failed, the lease was still renewed, and nothing said why (the watchdog
   * only watches handlers). What the call did on the server meanwhile is
   * unknown, as after a lost connection: the loop re-reads its pending list.
   */
  private async redisCall<T>(what: string, call: (redis: RedisClient) => Promise<T>, blockMs = 0): Promise<T> {
    const redis = this.redis;
    try {
      return await answeredWithin(call(redis), blockMs + this.options.redisAnswerMs, `Redis ${what} on ${this.options.key}`);
    } catch (error) {
      if (typeof error === 'object' && error !== null) this.redisErrors.add(error);
      if (error instanceof NoAnswerError && this.redis === redis) {
        redis.disconnect();
        if (!this.abort.signal.aborted) this.redis = this.options.connect();
      }
      throw error;
    }
  }

  private async reportLeftovers(logContext: Record<string, string>): Promise<void> {
    const { context, key } = this.options;
    try {
      const left = await this.redisCall('XPENDING', (redis) => pendingCountOf(redis, key, context.group, context.ownerId));
      if (left > 0) {
        context.logger.warn({ ...logContext, pending: left }, 'stopping with entries pending; the next owner reclaims them');
      }
    } catch {
      // Redis unreachable at stop: nothing to report, the next owner reclaims.
    }
  }
}
