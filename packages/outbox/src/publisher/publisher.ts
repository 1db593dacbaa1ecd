/**
 * The events publisher, a thin facade over its parts:
 * - lease-keeper.ts: leases streams (role `publisher`), starts and stops a
 *   drainer per held stream;
 * - stream-drainer.ts: drains one stream's unpublished rows in id order,
 *   appends them to Redis (fenced compare-and-set, append.lua), marks them
 *   published with their Redis entry ids, and reconciles Redis with what
 *   Postgres recorded (re-appends what Redis lost, marks what it holds unmarked);
 * - maintenance.ts: trims Redis streams, prunes old published rows.
 *
 * Lifecycle: `start()` launches the loops and returns; `stop()` (memoised,
 * safe before start) lets each drain finish the batch in hand, then releases
 * the leases. Transient Redis/Postgres failures never end a loop: it logs once
 * per state change and backs off with jitter.
 */
import type { RedisClient } from '@petcover/service-kit';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import type { Sql } from '../db';
import { makeOwnerId } from '../lease/lease';
import { createNodeHeartbeat } from '../liveness/node-heartbeat';
import { assertKeyPrefix, type StreamPartitions } from '../streams';
import { sleep } from '../backoff';
import type { PublisherConfig, PublisherContext, PublisherHooks } from './context';
import { LeaseKeeper } from './lease-keeper';
import { runPruneLoop, runTrimLoop } from './maintenance';
import { createPublisherMetrics, type PublisherMetrics } from './metrics';
import { WakeLocks } from './wake-lock';

export { MAINTENANCE_LEASE_STREAM } from './maintenance';
export type { PublisherHooks } from './context';

export const PUBLISHER_DEFAULTS: PublisherConfig = {
  /** Rows per drain batch: large enough to amortise round trips, small enough for a short UPDATE (~10-40 ms). */
  batchSize: 1_000,
  /**
   * Bytes of payload + headers per drain batch (at least one row). Two batches
   * are in hand at once (one appending, one being marked), each held about
   * three times (Postgres reply, strings, Redis command): 2 × 3 × 8 MiB stays
   * far below the 384Mi pod limit next to Node's own ~80 MB.
   */
  batchMaxBytes: 8 * 1024 * 1024,
  /** Fallback when a NOTIFY is missed (e.g. sent while the LISTEN connection was down). */
  pollIntervalMs: 5_000,
  /**
   * While rows keep coming, the drainer polls instead of waiting for NOTIFYs
   * (producers send none then, see wake-lock.ts) and gathers what committed
   * meanwhile into one batch: each batch costs a select, a Redis call and an
   * UPDATE whatever its size. 5 ms adds at most that to a row's latency and
   * turns 1,000 single-row commits a second into ~200 batches.
   */
  gatherMs: 5,
  /**
   * An awake drainer polls this long without finding rows before it goes to
   * sleep on NOTIFY. Traffic with gaps shorter than this never pays for a
   * NOTIFY; an idle stream costs 20 ms of polling (about four selects).
   */
  wakeLingerMs: 20,
  /** A dead owner blocks its streams at most this long; renewal runs every ttl/3. */
  leaseTtlMs: 30_000,
  trimIntervalMs: 60_000,
  /** Acknowledged entries stay in Redis this long, for inspection and `XRANGE` debugging. */
  keepAcknowledgedMs: 60 * 60_000,
  /** A stream no group reads is trimmed past this age only (0 = never). */
  orphanMaxAgeMs: 7 * 24 * 3_600_000,
  pruneIntervalMs: 60_000,
  /** Published rows are kept this long: the outbox is the replay source after a Redis loss. */
  retentionMs: 7 * 24 * 3_600_000,
  /** Rows per prune window (one DELETE statement, at most this many deleted); a few thousand keeps each transaction short. */
  pruneBatchSize: 2_000,
  /**
   * Between full sweeps a pass resumes where the last one stopped, so rows kept
   * for a long time at the bottom (a stuck stream) are read once an hour, not
   * every minute. A row that became due below the resume point (published long
   * after it was created) outlives its retention by at most this much.
   */
  pruneFullSweepIntervalMs: 60 * 60_000,
  /** Graceful stop waits this long for batches in hand before releasing leases anyway. */
  stopTimeoutMs: 5_000,
  /**
   * A Postgres call that never answers would hold a drain for good while the
   * lease keeper, on other connections, keeps renewing its lease: a frozen
   * backend (SIGSTOP, a paused VM) keeps its socket open, and postgres.js has
   * stranded queries across a server restart. Past this, the step counts as
   * failed: the drain re-syncs from Redis and Postgres and goes on, on other
   * connections. Far above the statements' own time (10-40 ms) and ordinary
   * lock waits; the statement may still run later, which the statements
   * here tolerate (marks are fenced and idempotent, selects are dropped),
   * but for one compound case: a late mark landing between a requeue after
   * Redis data loss and the re-append's mark (docs/notes/2026-11-30/stop-25.md).
   */
  postgresAnswerMs: 15_000,
};

export interface PublisherOptions extends Partial<PublisherConfig> {
  /** postgres.js client; the pool should have a few connections per concurrently drained stream. */
  sql: Sql;
  /** ioredis client; the publisher registers its Lua scripts on it. */
  redis: RedisClient;
  logger: Logger;
  registry: Registry;
  ownerId?: string;
  partitions?: StreamPartitions;
  keyPrefix?: string;
  /** Registration in events.relay_node: heartbeat interval (default NODE_HEARTBEAT_DEFAULTS) and the app version shown. */
  heartbeatIntervalMs?: number;
  version?: string;
  hooks?: PublisherHooks;
}

export interface Publisher {
  readonly ownerId: string;
  readonly metrics: PublisherMetrics;
  /** Starts the loops and returns at once; connection problems are retried, not thrown. */
  start(): Promise<void>;
  /** Finishes batches in hand, releases leases. Memoised; safe before start. */
  stop(): Promise<void>;
  /** Streams whose publisher lease this process holds now. */
  heldStreams(): string[];
}

export function createPublisher(options: PublisherOptions): Publisher {
  const config: PublisherConfig = { ...PUBLISHER_DEFAULTS };
  for (const key of Object.keys(PUBLISHER_DEFAULTS) as Array<keyof PublisherConfig>) {
    const value = options[key];
    if (value !== undefined) config[key] = value;
  }
  const ownerId = options.ownerId ?? makeOwnerId();
  assertKeyPrefix(options.keyPrefix ?? '');
  const metrics = createPublisherMetrics(options.registry, options.sql);
  const log = options.logger.child({ ownerId });
  const node = createNodeHeartbeat({ sql: options.sql, ownerId, role: 'publisher', version: options.version, logger: options.logger, intervalMs: options.heartbeatIntervalMs });
  /** Streams already warned about being last written from another database (warn once each). */
  const foreignDatabaseWarned = new Set<string>();

  const ctx: PublisherContext = {
    sql: options.sql,
    redis: options.redis,
    log,
    metrics,
    config,
    ownerId,
    keyPrefix: options.keyPrefix ?? '',
    partitions: options.partitions,
    hooks: options.hooks,
    wakeLocks: new WakeLocks(options.sql),
    writerWith(fencingToken) {
      // Set before any stream is taken: the lease loop reads the identity before its first round.
      const databaseId = keeper.identity;
      if (databaseId === undefined) throw new Error('database identity not read yet');
      return { fencingToken, databaseId };
    },
    noteForeignDatabase(stream, redisKey, previousDatabaseId) {
      if (previousDatabaseId === undefined) return;
      metrics.foreignDatabaseResets.inc({ stream });
      if (foreignDatabaseWarned.has(stream)) return;
      foreignDatabaseWarned.add(stream);
      log.warn(
        { stream, redisKey, databaseId: keeper.identity, previousDatabaseId },
        `Redis stream ${redisKey} was last written from another database (${previousDatabaseId}); taking its fence over`,
      );
    },
  };
  const keeper = new LeaseKeeper(ctx);
  const main = new AbortController();
  const loops: Promise<void>[] = [];
  let started = false;
  let stopping: Promise<void> | undefined;

  return {
    ownerId,
    metrics,
    async start() {
      if (started || stopping) return;
      started = true;
      log.info({ batchSize: config.batchSize, pollIntervalMs: config.pollIntervalMs, leaseTtlMs: config.leaseTtlMs, keyPrefix: ctx.keyPrefix }, 'publisher starting');
      await node.start();
      if (main.signal.aborted) return; // stopped while registering
      loops.push(keeper.run(main.signal), runTrimLoop(ctx, () => keeper.drainers(), main.signal), runPruneLoop(ctx, main.signal));
    },
    stop() {
      stopping ??= (async () => {
        main.abort();
        const startedAt = Date.now();
        // The lease loop ends after its current round; then no stream is taken any more.
        const timer = new AbortController();
        await Promise.race([Promise.all(loops), sleep(config.stopTimeoutMs, timer.signal)]);
        timer.abort();
        const released = await keeper.stopAll(Math.max(0, config.stopTimeoutMs - (Date.now() - startedAt)));
        await ctx.wakeLocks.close();
        // After the leases: a node that is gone must hold none.
        await node.stop();
        log.info({ released }, 'publisher loops ended; leases released');
      })();
      return stopping;
    },
    heldStreams: () => keeper.heldStreams(),
  };
}
