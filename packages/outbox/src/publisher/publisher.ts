/**
 * The events publisher: leases streams (role `publisher`), drains each leased
 * stream's unpublished outbox rows in id order, appends them to Redis with an
 * idempotent, fenced Lua script, then marks them published with one fenced
 * UPDATE. Also trims Redis streams (never past what a consumer group has not
 * acknowledged), prunes old published rows under its own lease, and
 * re-publishes recent rows when Redis lost data.
 *
 * Lifecycle: `start()` launches the loops and returns; `stop()` (memoised,
 * safe before start) lets each drain finish the batch in hand, then releases
 * the leases. Transient Redis/Postgres failures never end a loop: it logs once
 * per state change and backs off with jitter.
 */
import { hostname } from 'node:os';
import type { RedisClient } from '@petcover/service-kit';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import type { Sql } from '../db';
import { OUTBOX_NOTIFY_CHANNEL } from '../enqueue';
import { acquireLease, makeOwnerId, releaseLease, type LeaseGrant } from '../lease/lease';
import { createNodeHeartbeat } from '../liveness/node-heartbeat';
import { assertKeyPrefix, partitionCount, partitionFor, redisStreamKeys, streamMetaKey, type StreamPartitions } from '../streams';
import { FailureLog, sleep, Wakeup } from '../backoff';
import { createPublisherMetrics, type PublisherMetrics } from './metrics';
import { appendBatch, stampFence, trimStream, type AppendResult, type StreamWriter } from './redis-scripts';
import {
  databaseIdentity,
  leaseHolder,
  markPublished,
  prunePublishedBatch,
  selectRecentlyPublishedBatch,
  selectUnpublishedBatch,
  DrainBatchSizer,
  streamsWithUnpublishedRows,
  type DrainRow,
} from './statements';

/** Lease row (stream_name) under which one replica prunes the outbox. */
export const MAINTENANCE_LEASE_STREAM = 'stream:events:outbox';

export const PUBLISHER_DEFAULTS = {
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
  /** Rows per prune DELETE; a few thousand keeps each transaction short. */
  pruneBatchSize: 2_000,
  /** On Redis data loss, rows published this recently are appended again. */
  recoveryWindowMs: 15 * 60_000,
  /** Graceful stop waits this long for batches in hand before releasing leases anyway. */
  stopTimeoutMs: 5_000,
} as const;

export interface PublisherHooks {
  /** Called with a selected batch right before it is appended. Test-only fault injection. */
  beforeAppend?: (stream: string, rows: readonly DrainRow[]) => void;
  /**
   * Called after a batch was appended to Redis and before it is marked
   * published. Test-only fault injection (the app wires `PETCOVER_FAULT`).
   */
  afterAppend?: (stream: string, rows: readonly DrainRow[]) => void;
}

export interface PublisherOptions {
  /** postgres.js client; the pool should have a few connections per concurrently drained stream. */
  sql: Sql;
  /** ioredis client; the publisher registers its Lua scripts on it. */
  redis: RedisClient;
  logger: Logger;
  registry: Registry;
  ownerId?: string;
  partitions?: StreamPartitions;
  keyPrefix?: string;
  batchSize?: number;
  batchMaxBytes?: number;
  pollIntervalMs?: number;
  leaseTtlMs?: number;
  trimIntervalMs?: number;
  keepAcknowledgedMs?: number;
  orphanMaxAgeMs?: number;
  pruneIntervalMs?: number;
  retentionMs?: number;
  pruneBatchSize?: number;
  recoveryWindowMs?: number;
  stopTimeoutMs?: number;
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

/** How long a graceful stop waits for lease releases (Postgres may be down). */
const RELEASE_TIMEOUT_MS = 2_000;

/** Waits for all `promises` (errors ignored) or `ms`, whichever comes first. */
async function boundedWait(ms: number, promises: Array<Promise<unknown> | undefined>): Promise<void> {
  const timer = new AbortController();
  await Promise.race([Promise.allSettled(promises), sleep(ms, timer.signal)]);
  timer.abort();
}

/** One leased stream being drained. */
interface HeldStream {
  stream: string;
  fencingToken: string;
  /** Redis keys of its partition streams, index = partition. */
  partitionKeys: string[];
  wakeup: Wakeup;
  controller: AbortController;
  recoveryNeeded: boolean;
  /**
   * Keyset cursor of the drain: the last id of the previous full batch, or
   * '0' for a full sweep. A sweep runs on taking the lease, after an error and
   * whenever the drain catches up, so rows that committed late (below the
   * cursor) are found before the drain goes idle.
   */
  scanAfterId: string;
  /** Rows per select, shrunk to the byte budget at the size of recent rows. */
  sizer: DrainBatchSizer;
  /**
   * The last appended batch while its `published_at` UPDATE is in flight: the
   * next batch is selected and appended meanwhile (at most one in flight).
   */
  marking?: InFlightMark;
  done?: Promise<void>;
}

interface InFlightMark {
  /** Lowest outbox id of the batch: dedupe records from here up must stay. */
  firstId: string;
  fencingToken: string;
  /** Rows updated; 0 = the lease was lost. Never rejects unhandled (see startMark). */
  updated: Promise<number>;
}

type DrainOutcome = 'full' | 'partial' | 'idle' | 'stop';

export function createPublisher(options: PublisherOptions): Publisher {
  const config = { ...PUBLISHER_DEFAULTS, ...definedOnly(options) };
  const { sql, redis, logger } = options;
  const ownerId = options.ownerId ?? makeOwnerId();
  const keyPrefix = options.keyPrefix ?? '';
  assertKeyPrefix(keyPrefix);
  const metrics = createPublisherMetrics(options.registry, sql);
  const log = logger.child({ ownerId });
  const node = createNodeHeartbeat({ sql, ownerId, role: 'publisher', version: options.version, logger, intervalMs: options.heartbeatIntervalMs });
  const held = new Map<string, HeldStream>();
  /** Streams we already said we wait for: stream → owner, so each wait is logged once. */
  const waitingFor = new Map<string, string>();
  const leaseTick = new Wakeup();
  const main = new AbortController();
  const loops: Promise<void>[] = [];
  let unlisten: (() => Promise<void>) | undefined;
  /** `databaseIdentity(sql)`, read once before the first lease round; every Redis write carries it. */
  let databaseId: string | undefined;
  /** Streams already warned about being last written from another database (warn once each). */
  const foreignDatabaseWarned = new Set<string>();
  let started = false;
  let stopping: Promise<void> | undefined;
  const leaseEveryMs = Math.max(50, Math.min(config.pollIntervalMs, Math.floor(config.leaseTtlMs / 3)));

  const partitionKeysOf = (stream: string): string[] => {
    const count = partitionCount(stream, options.partitions);
    return redisStreamKeys(stream, count, keyPrefix);
  };

  /** Set before any stream is taken: the lease loop reads the identity before its first round. */
  const writerWith = (fencingToken: string): StreamWriter => {
    if (databaseId === undefined) throw new Error('database identity not read yet');
    return { fencingToken, databaseId };
  };

  /**
   * A stamp or append found the stream last written from another database
   * (re-created, or split database) and reset its dedupe record: count it,
   * warn once per stream.
   */
  function noteForeignDatabase(stream: string, redisKey: string, previousDatabaseId: string | undefined): void {
    if (previousDatabaseId === undefined) return;
    metrics.foreignDatabaseResets.inc({ stream });
    if (foreignDatabaseWarned.has(stream)) return;
    foreignDatabaseWarned.add(stream);
    log.warn(
      { stream, redisKey, databaseId, previousDatabaseId },
      `Redis stream ${redisKey} was last written from another database (${previousDatabaseId}); resetting its dedupe record`,
    );
  }

  // ---- leases -------------------------------------------------------------

  /** Discovers streams with work, acquires or renews their leases, notices lost ones. */
  async function leaseRound(): Promise<void> {
    const candidates = new Set([...(await streamsWithUnpublishedRows(sql)), ...held.keys()]);
    for (const stream of candidates) {
      if (main.signal.aborted) return;
      const grant = await acquireLease(sql, { streamName: stream, role: 'publisher', ownerId, ttlMs: config.leaseTtlMs });
      const current = held.get(stream);
      if (grant) {
        if (waitingFor.delete(stream)) metrics.leaseBlocked.set({ stream }, 0);
        if (!current) await takeStream(grant);
        else if (current.fencingToken !== grant.fencingToken) {
          // Our row was deleted by hand and re-inserted with a new token: fence with it.
          log.info({ stream, fencingToken: grant.fencingToken }, 'publisher lease re-acquired with a new fencing token');
          current.fencingToken = grant.fencingToken;
          current.scanAfterId = '0';
          await stampAllPartitions(current);
          current.wakeup.ring();
        } else {
          await checkRedisStillHasOurData(current);
        }
      } else {
        if (current) dropStream(current, 'lease renewal failed: another owner holds it now');
        await noteLeaseWait(stream);
      }
    }
  }

  async function takeStream(grant: LeaseGrant): Promise<void> {
    const state: HeldStream = {
      stream: grant.streamName,
      fencingToken: grant.fencingToken,
      partitionKeys: partitionKeysOf(grant.streamName),
      wakeup: new Wakeup(),
      controller: new AbortController(),
      recoveryNeeded: false,
      scanAfterId: '0',
      sizer: new DrainBatchSizer({ rows: config.batchSize, bytes: config.batchMaxBytes }),
    };
    const fenced = await stampAllPartitions(state);
    if (fenced) return;
    held.set(state.stream, state);
    metrics.leasesHeld.set({ stream: state.stream }, 1);
    log.info({ stream: state.stream, fencingToken: state.fencingToken, partitions: state.partitionKeys.length }, 'publisher lease acquired; draining');
    state.done = drainLoop(state);
  }

  /**
   * Stamps the lease's token on every partition stream at once, so a zombie
   * is refused even where we have not written yet. A missing meta hash means
   * a new stream, or Redis lost what we wrote: recovery sorts out which. A
   * meta hash of another database is no data loss: its dedupe record is
   * reset and our token replaces its (see stamp-fence.lua).
   * Returns true when Redis already carries a newer token (we must not drain).
   */
  async function stampAllPartitions(state: HeldStream): Promise<boolean> {
    const writer = writerWith(state.fencingToken);
    const results = await Promise.all(state.partitionKeys.map((key) => stampFence(redis, key, writer)));
    results.forEach((r, p) => {
      if (r.status === 'ok') noteForeignDatabase(state.stream, state.partitionKeys[p]!, r.previousDatabaseId);
    });
    const newer = results.find((r) => r.status === 'fenced');
    if (newer && newer.status === 'fenced') {
      metrics.fencedRefusals.inc({ stream: state.stream });
      log.error(
        { stream: state.stream, fencingToken: state.fencingToken, redisFencingToken: newer.currentToken },
        'Redis carries a newer fencing token than our fresh lease; not draining this stream',
      );
      return true;
    }
    if (results.some((r) => r.status === 'ok' && !r.existed)) state.recoveryNeeded = true;
    return false;
  }

  /** An idle stream gets no appends, so look for its meta keys each lease round. */
  async function checkRedisStillHasOurData(state: HeldStream): Promise<void> {
    const present = await Promise.all(state.partitionKeys.map((key) => redis.exists(streamMetaKey(key))));
    if (present.some((n) => n === 0)) {
      state.recoveryNeeded = true;
      state.wakeup.ring();
    }
  }

  async function noteLeaseWait(stream: string): Promise<void> {
    const holder = await leaseHolder(sql, stream, 'publisher');
    if (!holder || waitingFor.get(stream) === holder.ownerId) return;
    waitingFor.set(stream, holder.ownerId);
    metrics.leaseWaits.inc({ stream });
    metrics.leaseBlocked.set({ stream }, 1);
    log.info(
      { stream, leaseOwner: holder.ownerId, secondsLeft: Math.round(holder.secondsLeft * 10) / 10, ownerAlive: ownerAliveHint(holder.ownerId) },
      'stream has unpublished rows but another owner holds its publisher lease; waiting for it to expire',
    );
  }

  function dropStream(state: HeldStream, reason: string): void {
    if (held.get(state.stream) !== state) return;
    held.delete(state.stream);
    state.controller.abort();
    metrics.leasesHeld.set({ stream: state.stream }, 0);
    metrics.leasesLost.inc({ stream: state.stream });
    log.warn({ stream: state.stream, fencingToken: state.fencingToken, reason }, 'stopped draining stream');
  }

  async function leaseLoop(): Promise<void> {
    const health = new FailureLog(log, { loop: 'lease' });
    while (!main.signal.aborted) {
      try {
        await ensureListening();
        if (databaseId === undefined) {
          databaseId = await databaseIdentity(sql);
          log.info({ databaseId }, 'database identity read; stamped on every Redis stream written');
        }
        await leaseRound();
        health.succeeded('lease round');
        await leaseTick.wait(leaseEveryMs, main.signal);
      } catch (error) {
        await sleep(health.failed(error, 'lease round'), main.signal);
      }
    }
  }

  async function ensureListening(): Promise<void> {
    if (unlisten) return;
    const subscription = await sql.listen(OUTBOX_NOTIFY_CHANNEL, (stream) => {
      const state = held.get(stream);
      if (state) state.wakeup.ring();
      else leaseTick.ring(); // a stream we do not hold yet: try to lease it now
    });
    unlisten = subscription.unlisten;
  }

  // ---- drain --------------------------------------------------------------

  async function drainLoop(state: HeldStream): Promise<void> {
    const health = new FailureLog(log, { loop: 'drain', stream: state.stream });
    const signal = state.controller.signal;
    while (!signal.aborted && held.get(state.stream) === state) {
      try {
        if (state.recoveryNeeded) {
          if ((await settleMark(state)) === 'stop') break;
          await recoverLostRedisData(state);
        }
        const outcome = await drainBatch(state);
        health.succeeded('drain');
        if (outcome === 'stop') break;
        if (outcome !== 'full') await state.wakeup.wait(config.pollIntervalMs, signal);
      } catch (error) {
        state.scanAfterId = '0';
        metrics.appendErrors.inc({ stream: state.stream });
        await sleep(health.failed(error, 'drain'), signal);
      }
    }
    // A graceful stop lets the batch in hand be marked before the lease is released.
    await settleMark(state).catch((error: unknown) => log.warn({ stream: state.stream, err: error }, 'marking the last batch published failed; it is re-sent (deduplicated) by the next owner'));
  }

  /**
   * One batch: select in id order, append per partition (pipelined), then
   * start its fenced UPDATE and return without waiting for it. The next batch
   * is selected and appended while that UPDATE runs; it is awaited before the
   * next UPDATE starts and before any sweep (which would see its rows again).
   */
  async function drainBatch(state: HeldStream): Promise<DrainOutcome> {
    const { stream } = state;
    const sweeping = state.scanAfterId === '0';
    if (sweeping) {
      const previous = await settleMark(state);
      if (previous === 'stop') return 'stop';
    }
    const fencingToken = state.fencingToken;
    const batch = await selectUnpublishedBatch(sql, stream, state.scanAfterId, state.sizer.bounds);
    state.sizer.observe(batch);
    const { rows, full } = batch;
    if (rows.length === 0) {
      state.scanAfterId = '0'; // caught up on the cursor: sweep from the start once before going idle
      return sweeping ? 'idle' : 'full';
    }
    // Until this batch is marked published, any early return restarts from a sweep.
    state.scanAfterId = '0';
    for (const row of rows) {
      if (!row.payloadIsObject) {
        log.warn({ stream, outboxId: row.id, eventId: row.eventId, type: row.type }, 'payload is not a JSON object; publishing it as is (consumers will dead-letter it)');
      }
    }
    options.hooks?.beforeAppend?.(stream, rows);
    // Every id below the floor is marked published or was never appended (the cursor
    // only passes rows this owner appended and is marking), so its dedupe record can
    // go. The batch still being marked is not below it: a crash now re-sends it deduplicated.
    const floor = state.marking?.firstId ?? rows[0]!.id;
    const outcome = await appendToPartitions(state, rows, fencingToken, floor);
    if (outcome !== 'ok') return outcome === 'retry' ? 'full' : 'stop';
    options.hooks?.afterAppend?.(stream, rows);
    const previous = await settleMark(state);
    if (previous === 'stop') return 'stop';
    if (previous === 'retry') return 'full'; // sweep: this batch is re-sent (deduplicated) under the new token
    state.marking = startMark(state, rows, fencingToken);
    // The cursor only moves past rows this owner appended and is marking published.
    state.scanAfterId = full ? rows[rows.length - 1]!.id : '0';
    return full || !sweeping ? 'full' : 'partial';
  }

  /** Starts the fenced UPDATE of an appended batch without waiting for it. */
  function startMark(state: HeldStream, rows: readonly DrainRow[], fencingToken: string): InFlightMark {
    const updated = markPublished(sql, state.stream, rows.map((r) => r.id), ownerId, fencingToken);
    updated.catch(() => undefined); // awaited (and rethrown) by settleMark
    return { firstId: rows[0]!.id, fencingToken, updated };
  }

  /**
   * Waits for the batch being marked published, if any. 'stop': the UPDATE
   * found the lease gone (the stream is dropped); 'retry': the lease was
   * re-acquired with a new token meanwhile (the batch is re-sent by a sweep).
   * Throws what the UPDATE threw (the drain loop then sweeps after a pause).
   */
  async function settleMark(state: HeldStream): Promise<'ok' | 'retry' | 'stop'> {
    const mark = state.marking;
    if (!mark) return 'ok';
    state.marking = undefined;
    const updated = await mark.updated;
    if (updated === 0) {
      state.scanAfterId = '0';
      if (state.fencingToken !== mark.fencingToken) return 'retry';
      dropStream(state, 'marking published updated no row: the lease expired, was deleted or was taken over (the appended rows are deduplicated when re-sent)');
      return 'stop';
    }
    metrics.eventsPublished.inc({ stream: state.stream }, updated);
    metrics.batches.inc({ stream: state.stream });
    return 'ok';
  }

  /**
   * One Lua call per partition, all sent at once (ioredis pipelines them on
   * the connection). Per-key order holds because a key maps to one partition
   * and rows keep their id order within it.
   */
  async function appendToPartitions(state: HeldStream, rows: readonly DrainRow[], fencingToken: string, pruneBelowId: string): Promise<'ok' | 'retry' | 'stop'> {
    const count = state.partitionKeys.length;
    const byPartition = new Map<number, DrainRow[]>();
    for (const row of rows) {
      const p = partitionFor(row.partitionKey, count);
      const list = byPartition.get(p);
      if (list) list.push(row);
      else byPartition.set(p, [row]);
    }
    const writer = writerWith(fencingToken);
    const results: Array<[number, AppendResult]> = await Promise.all(
      [...byPartition].map(async ([p, list]) => [p, await appendBatch(redis, state.partitionKeys[p]!, writer, pruneBelowId, list)] as [number, AppendResult]),
    );
    for (const [p, result] of results) {
      if (result.status === 'ok') noteForeignDatabase(state.stream, state.partitionKeys[p]!, result.previousDatabaseId);
      if (result.status === 'fenced') {
        if (state.fencingToken !== fencingToken) return 'retry';
        metrics.fencedRefusals.inc({ stream: state.stream });
        log.warn(
          { stream: state.stream, redisKey: state.partitionKeys[p], fencingToken, redisFencingToken: result.currentToken },
          'append refused: a newer publisher fenced this stream; stopping to drain it',
        );
        dropStream(state, 'fenced by a newer owner');
        return 'stop';
      }
    }
    if (results.some(([, r]) => r.status === 'lost')) {
      metrics.redisDataLoss.inc({ stream: state.stream });
      state.recoveryNeeded = true;
      return 'retry';
    }
    return 'ok';
  }

  /**
   * Redis lost data we wrote (meta hash gone): confirm we still hold the
   * lease, fence every partition again, then re-append the rows published
   * within the recovery window in id order. Consumers dedupe by event_id.
   */
  async function recoverLostRedisData(state: HeldStream): Promise<void> {
    const grant = await acquireLease(sql, { streamName: state.stream, role: 'publisher', ownerId, ttlMs: config.leaseTtlMs });
    if (!grant || grant.fencingToken !== state.fencingToken) {
      dropStream(state, 'lease lost before recovering from Redis data loss');
      return;
    }
    if (await stampAllPartitions(state)) {
      dropStream(state, 'fenced by a newer owner');
      return;
    }
    let afterId = '0';
    let republished = 0;
    for (;;) {
      const { rows } = await selectRecentlyPublishedBatch(sql, state.stream, config.recoveryWindowMs, afterId, state.sizer.bounds);
      if (rows.length === 0) break;
      const outcome = await appendToPartitions(state, rows, state.fencingToken, '0');
      if (outcome === 'stop') return;
      if (outcome === 'retry') continue; // lost again mid-recovery: re-stamp on the next loop turn
      republished += rows.length;
      afterId = rows[rows.length - 1]!.id;
    }
    state.recoveryNeeded = false;
    if (republished > 0) {
      metrics.republished.inc({ stream: state.stream }, republished);
      log.warn(
        { stream: state.stream, republished, recoveryWindowMs: config.recoveryWindowMs },
        'Redis had lost entries this publisher wrote; re-published the rows published within the recovery window',
      );
    }
  }

  // ---- maintenance --------------------------------------------------------

  async function trimLoop(): Promise<void> {
    const health = new FailureLog(log, { loop: 'trim' });
    while (await sleep(config.trimIntervalMs, main.signal)) {
      try {
        await trimHeldStreams();
        health.succeeded('trim');
      } catch (error) {
        health.failed(error, 'trim');
      }
    }
  }

  async function trimHeldStreams(): Promise<void> {
    for (const state of [...held.values()]) {
      for (const key of state.partitionKeys) {
        const removed = await trimStream(redis, key, config.keepAcknowledgedMs, config.orphanMaxAgeMs);
        if (removed > 0) {
          metrics.trimmedEntries.inc({ stream: state.stream }, removed);
          log.debug({ stream: state.stream, redisKey: key, removed }, 'trimmed acknowledged entries');
        }
      }
    }
  }

  async function pruneLoop(): Promise<void> {
    const health = new FailureLog(log, { loop: 'prune' });
    let holding = false;
    while (await sleep(config.pruneIntervalMs, main.signal)) {
      try {
        const grant = await acquireLease(sql, { streamName: MAINTENANCE_LEASE_STREAM, role: 'maintenance', ownerId, ttlMs: Math.max(config.leaseTtlMs, config.pruneIntervalMs * 2) });
        holding = grant !== null;
        if (holding) await prunePublishedRows();
        health.succeeded('prune');
      } catch (error) {
        health.failed(error, 'prune');
      }
    }
    if (holding) await boundedWait(RELEASE_TIMEOUT_MS, [releaseLease(sql, { streamName: MAINTENANCE_LEASE_STREAM, role: 'maintenance', ownerId }).catch(() => undefined)]);
  }

  async function prunePublishedRows(): Promise<void> {
    let total = 0;
    for (;;) {
      const deleted = await prunePublishedBatch(sql, config.retentionMs, config.pruneBatchSize);
      total += deleted;
      if (deleted < config.pruneBatchSize || main.signal.aborted) break;
    }
    if (total > 0) {
      metrics.prunedRows.inc(total);
      log.info({ pruned: total, retentionMs: config.retentionMs }, 'pruned published outbox rows past the retention window');
    }
  }

  // ---- lifecycle ----------------------------------------------------------

  return {
    ownerId,
    metrics,
    async start() {
      if (started || stopping) return;
      started = true;
      log.info({ batchSize: config.batchSize, pollIntervalMs: config.pollIntervalMs, leaseTtlMs: config.leaseTtlMs, keyPrefix }, 'publisher starting');
      await node.start();
      if (main.signal.aborted) return; // stopped while registering
      loops.push(leaseLoop(), trimLoop(), pruneLoop());
    },
    stop() {
      stopping ??= (async () => {
        main.abort();
        const deadlineTimer = new AbortController();
        const deadline = sleep(config.stopTimeoutMs, deadlineTimer.signal).then((elapsed) => elapsed);
        // The lease loop ends after its current round; then no stream is taken any more.
        let timedOut = await Promise.race([Promise.all(loops).then(() => false), deadline]);
        const states = [...held.values()];
        for (const state of states) state.controller.abort();
        // Each drain finishes the batch in hand (its SQL and Redis calls are not interrupted).
        if (!timedOut) timedOut = await Promise.race([Promise.all(states.map((s) => s.done)).then(() => false), deadline]);
        deadlineTimer.abort();
        if (timedOut) log.warn({ stopTimeoutMs: config.stopTimeoutMs }, 'batches in hand did not finish in time; releasing leases anyway');
        for (const state of states) {
          held.delete(state.stream);
          metrics.leasesHeld.set({ stream: state.stream }, 0);
        }
        // With Postgres down each call would wait for a connect timeout; leases expire on their own anyway.
        await boundedWait(RELEASE_TIMEOUT_MS, [
          unlisten?.(),
          ...states.map((state) =>
            releaseLease(sql, { streamName: state.stream, role: 'publisher', ownerId }).catch((error: unknown) =>
              log.warn({ stream: state.stream, err: error }, 'could not release lease; it expires on its own'),
            ),
          ),
        ]);
        // After the leases: a node that is gone must hold none.
        await node.stop();
        log.info({ released: states.map((s) => s.stream) }, 'publisher loops ended; leases released');
      })();
      return stopping;
    },
    heldStreams: () => [...held.keys()],
  };
}

/** Best effort: on this host we can tell whether the owner's pid still runs. */
function ownerAliveHint(ownerId: string): 'unknown' | 'not-running' | 'running' {
  const [host, pidText] = ownerId.split(':');
  const pid = Number(pidText);
  if (host !== hostname() || !Number.isInteger(pid) || pid <= 0) return 'unknown';
  try {
    process.kill(pid, 0);
    return 'running';
  } catch {
    return 'not-running';
  }
}

function definedOnly<T extends object>(value: T): Partial<T> {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as Partial<T>;
}
