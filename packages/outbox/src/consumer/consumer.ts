/**
 * The consumer: one per process and group. It leases stream partitions for
 * its group (role `consumer:<group>`), shares them fairly with the other
 * live replicas, runs one PartitionWorker per leased partition and samples
 * lag and pending for the metrics.
 */
import type { RedisClient } from '@petcover/service-kit';
import type { Logger } from 'pino';
import { Registry } from 'prom-client';
import type { Database, Sql } from '../db';
import { acquireLease, consumerRole, ImpossibleLeaseError, makeOwnerId, releaseLease, type LeaseGrant, type LeaseRole } from '../lease/lease';
import { createNodeHeartbeat } from '../liveness/node-heartbeat';
import { assertKeyPrefix, assertStreamName, partitionStreamNames, redisStreamKey, type StreamPartitions } from '../streams';
import { answeredWithin, backoffDelay, sleep } from '../backoff';
import { heartbeatMembership, leaveMembership, membersKey } from './membership';
import { createConsumerMetrics, type ConsumerMetrics } from './metrics';
import type { ConsumerStreamDeclaration } from './module';
import { INBOX_RETENTION_DEFAULTS, startInboxPruner } from './inbox-retention';
import { ConcurrencyLimit, PartitionWorker, partitionErrorCause } from './partition-worker';
import { ensureGroup, groupBacklog } from './redis-group';
import { EXHAUSTED_POLICIES, type ExhaustedPolicy, type HandlerRegistry } from './registry';
import { clearPartitionFault, partitionFaultsKey, reportPartitionFault, stuckPartitionsKey } from './stuck-partitions';

/** Defaults of every consumer option; the app's flags fall back to these. */
export const CONSUMER_DEFAULTS = {
  group: 'events-consumer',
  /** Partitions settling a batch at once; more only helps with more partitions. */
  concurrency: 4,
  /** Entries per XREADGROUP and per transaction: amortises commit and round trips. */
  batchSize: 100,
  /** Bounded so a stop request is noticed within a second. */
  blockMs: 1_000,
  /** A killed replica's partitions are taken over within this (plus one tick). */
  leaseTtlMs: 10_000,
  /**
   * Retries of a failing event (issue 19). A failing key is parked and blocks
   * only itself, so the schedule can be as long as real outages are: 1 s
   * doubling, capped at 60 s, 10 attempts. The nine waits are 1+2+4+...+32+60+60+60
   * = 243 s nominal; with equal jitter each wait is 50-100 % of that, so the
   * last attempt comes 2-4 minutes after the first failure: longer than a
   * Postgres or Redis failover, a rolling deploy of a downstream service or a
   * provider's one-minute rate-limit window. The 60 s cap keeps the delay
   * between a downstream recovering and the key moving again under a minute.
   * (Before parking, the defaults were 5 attempts over ~3 s: a longer
   * schedule would have stalled every other key of the partition.)
   */
  maxAttempts: 10,
  retryBaseDelayMs: 1_000,
  retryMaxDelayMs: 60_000,
  /** Policy when an event runs out of attempts, unless its handler's registration says otherwise. */
  onExhausted: 'dead-letter-and-continue' as ExhaustedPolicy,
  /** A partition with parked keys looks this often for an operator's release or discard (`events key ...`). */
  parkingRecheckMs: 1_000,
  /**
   * Deadline of one handler call (and statement_timeout of its transaction).
   * Long enough for any sane handler, short enough that a hung one frees its
   * partition within a minute (deadline + lease TTL, the watchdog's bound).
   */
  handlerTimeoutMs: 30_000,
  /**
   * Bytes of one read (fields and values; the first entry always comes). At
   * most `concurrency` reads are in hand at once, each held about four times
   * over (Redis reply, strings, parsed payload, handler's copy): the default
   * 4 × 4 MiB × 4 ≈ 64 MB next to Node's own ~80 MB stays well under the
   * 384Mi pod limit (README, "Memory"). Raise both together.
   */
  readMaxBytes: 4 * 1024 * 1024,
  inboxRetentionMs: INBOX_RETENTION_DEFAULTS.retentionMs,
  inboxPruneIntervalMs: INBOX_RETENTION_DEFAULTS.intervalMs,
  /**
   * A Redis call of a partition (or of a coordination round) unanswered this
   * long beyond its BLOCK time is given up, and a partition's connection
   * replaced. Longer than a cluster client's own failover retries (16 × 300 ms).
   */
  redisAnswerMs: 10_000,
} as const;

export class InvalidConsumerOptionsError extends Error {
  constructor(
    readonly option: string,
    reason: string,
  ) {
    super(`invalid consumer option ${option}: ${reason}`);
    this.name = 'InvalidConsumerOptionsError';
  }
}

export interface ConsumerOptions {
  /** Pool of at least `concurrency` + 2 connections (one transaction per partition in flight, renewals). */
  db: Database;
  sql: Sql;
  /** Shared connection for coordination; each partition gets a duplicate of it. */
  redis: RedisClient;
  registry: HandlerRegistry;
  streams: readonly ConsumerStreamDeclaration[];
  /** Overrides the partition counts declared in `streams` (e.g. from STREAM_PARTITIONS). */
  partitions?: StreamPartitions;
  group?: string;
  /** Prefix of every Redis key (test and benchmark isolation). */
  keyPrefix?: string;
  /** Lease owner and Redis consumer name; default `makeOwnerId()`. */
  ownerId?: string;
  concurrency?: number;
  batchSize?: number;
  blockMs?: number;
  leaseTtlMs?: number;
  maxAttempts?: number;
  retryBaseDelayMs?: number;
  retryMaxDelayMs?: number;
  /** Policy when an event runs out of attempts (default dead-letter-and-continue); a handler's registration may override it. */
  onExhausted?: ExhaustedPolicy;
  parkingRecheckMs?: number;
  handlerTimeoutMs?: number;
  readMaxBytes?: number;
  /** processed_event rows are kept this long (and while the outbox holds the event); see inbox-retention.ts. */
  inboxRetentionMs?: number;
  inboxPruneIntervalMs?: number;
  redisAnswerMs?: number;
  logger: Logger;
  /** Registration in events.relay_node: heartbeat interval (default NODE_HEARTBEAT_DEFAULTS) and the app version shown. */
  heartbeatIntervalMs?: number;
  version?: string;
  /** Metrics land here; default a private registry (see `metricsRegistry`). */
  metricsRegistry?: Registry;
}

export interface ConsumerStatus {
  ownerId: string;
  group: string;
  /** Partition streams this process holds a lease on. */
  leased: string[];
  /** Every partition stream of the declared streams. */
  partitions: string[];
  redisReachable: boolean;
  /** Partitions this process cannot use now (e.g. WRONGTYPE on the key), with the cause. */
  faulty: { partition: string; cause: string; message: string }[];
}

export interface Consumer {
  readonly ownerId: string;
  readonly group: string;
  readonly metrics: ConsumerMetrics;
  readonly metricsRegistry: Registry;
  /** Starts the coordination loop; resolves at once. Calling it twice is a no-op. */
  start(): void;
  /**
   * Graceful stop: every partition finishes the batch in hand and
   * acknowledges it, leases are released, membership is left. Memoised;
   * safe before start().
   */
  stop(): Promise<void>;
  status(): ConsumerStatus;
}

interface Partition {
  stream: string;
  partitionStream: string;
  key: string;
}

/** A worker leaving its partition (see retire). */
interface Retiring {
  worker: PartitionWorker;
  /** The lease is still ours: renewed until the worker has ended (at most until `renewUntil`), then released. */
  handover: boolean;
  /**
   * Date.now() after which the worker is given up: a handed-over lease is no
   * longer renewed, and the partition may be leased again (a worker that does
   * not end must not keep its partition from everyone).
   */
  renewUntil: number;
  /** Resolves once the worker has ended (and the lease is released if handed over). */
  ended: Promise<void>;
}

const GROUP_NAME_PATTERN = /^[A-Za-z0-9_.-]+$/;

function positiveInteger(name: string, value: number): number {
  if (!Number.isInteger(value) || value < 1) throw new InvalidConsumerOptionsError(name, `must be a positive integer (got ${value})`);
  return value;
}

/** Builds a consumer; throws InvalidConsumerOptionsError on bad options. Nothing runs until start(). */
export function createConsumer(options: ConsumerOptions): Consumer {
  const group = options.group ?? CONSUMER_DEFAULTS.group;
  if (!GROUP_NAME_PATTERN.test(group)) throw new InvalidConsumerOptionsError('group', `must match ${GROUP_NAME_PATTERN} (got ${JSON.stringify(group)})`);
  if (options.streams.length === 0) throw new InvalidConsumerOptionsError('streams', 'declare at least one stream');
  const keyPrefix = options.keyPrefix ?? '';
  assertKeyPrefix(keyPrefix);
  const settings = {
    concurrency: positiveInteger('concurrency', options.concurrency ?? CONSUMER_DEFAULTS.concurrency),
    batchSize: positiveInteger('batchSize', options.batchSize ?? CONSUMER_DEFAULTS.batchSize),
    blockMs: positiveInteger('blockMs', options.blockMs ?? CONSUMER_DEFAULTS.blockMs),
    leaseTtlMs: positiveInteger('leaseTtlMs', options.leaseTtlMs ?? CONSUMER_DEFAULTS.leaseTtlMs),
    maxAttempts: positiveInteger('maxAttempts', options.maxAttempts ?? CONSUMER_DEFAULTS.maxAttempts),
    retryBaseDelayMs: positiveInteger('retryBaseDelayMs', options.retryBaseDelayMs ?? CONSUMER_DEFAULTS.retryBaseDelayMs),
    retryMaxDelayMs: positiveInteger('retryMaxDelayMs', options.retryMaxDelayMs ?? CONSUMER_DEFAULTS.retryMaxDelayMs),
    handlerTimeoutMs: positiveInteger('handlerTimeoutMs', options.handlerTimeoutMs ?? CONSUMER_DEFAULTS.handlerTimeoutMs),
    parkingRecheckMs: positiveInteger('parkingRecheckMs', options.parkingRecheckMs ?? CONSUMER_DEFAULTS.parkingRecheckMs),
    readMaxBytes: positiveInteger('readMaxBytes', options.readMaxBytes ?? CONSUMER_DEFAULTS.readMaxBytes),
    inboxRetentionMs: positiveInteger('inboxRetentionMs', options.inboxRetentionMs ?? CONSUMER_DEFAULTS.inboxRetentionMs),
    inboxPruneIntervalMs: positiveInteger('inboxPruneIntervalMs', options.inboxPruneIntervalMs ?? CONSUMER_DEFAULTS.inboxPruneIntervalMs),
    redisAnswerMs: positiveInteger('redisAnswerMs', options.redisAnswerMs ?? CONSUMER_DEFAULTS.redisAnswerMs),
  };
  const onExhausted = options.onExhausted ?? CONSUMER_DEFAULTS.onExhausted;
  if (!EXHAUSTED_POLICIES.includes(onExhausted)) {
    throw new InvalidConsumerOptionsError('onExhausted', `must be one of ${EXHAUSTED_POLICIES.join(', ')} (got ${JSON.stringify(onExhausted)})`);
  }
  const partitions: Partition[] = [];
  for (const declared of options.streams) {
    assertStreamName(declared.name, 'streams[].name');
    const count = positiveInteger(`partitions of ${declared.name}`, options.partitions?.[declared.name] ?? declared.partitions ?? 1);
    for (const partitionStream of partitionStreamNames(declared.name, count)) {
      partitions.push({ stream: declared.name, partitionStream, key: redisStreamKey(partitionStream, keyPrefix) });
    }
  }
  const ownerId = options.ownerId ?? makeOwnerId();
  const role: LeaseRole = consumerRole(group);
  const metricsRegistry = options.metricsRegistry ?? new Registry();
  const metrics = createConsumerMetrics(metricsRegistry);
  const logger = options.logger.child({ component: 'consumer', group, ownerId });
  const node = createNodeHeartbeat({
    sql: options.sql,
    ownerId,
    role: `consumer:${group}`,
    version: options.version,
    logger: options.logger,
    intervalMs: options.heartbeatIntervalMs,
  });
  const limit = new ConcurrencyLimit(settings.concurrency);
  const workers = new Map<string, PartitionWorker>();
  const abort = new AbortController();
  const members = membersKey(keyPrefix, group);
  // Renew well before expiry: a tick every fifth of the TTL leaves four chances.
  const tickMs = Math.max(50, Math.floor(settings.leaseTtlMs / 5));
  // Start the scan for free partitions at a per-owner offset so replicas starting together collide less.
  const scanOffset = [...ownerId].reduce((sum, c) => sum + c.charCodeAt(0), 0) % Math.max(1, partitions.length);
  const stuckKey = stuckPartitionsKey(keyPrefix, group);
  const faultsKey = partitionFaultsKey(keyPrefix, group);
  // The watchdog's bound: a partition busy for this long with no handler call ending is given up.
  const watchdogMs = options.registry.longestTimeoutMs(settings.handlerTimeoutMs) + settings.leaseTtlMs;
  // Workers leaving their partition (handed over, lease lost or taken back, given up by the watchdog), until their
  // loop ends: the partition is not leased again by this process meanwhile, so two of its workers never share one.
  const retiring = new Map<string, Retiring>();
  // And not for one watchdog period after it either, so another replica takes it first.
  const cooldownUntil = new Map<string, number>();
  let loop: Promise<void> | undefined;
  let pruner: { stop(): Promise<void> } | undefined;
  let stopping: Promise<void> | undefined;
  // Per partition, so one bad key (WRONGTYPE) neither stops the others nor reads as "redis unreachable".
  const groupReady = new Set<string>();
  const partitionFaults = new Map<string, { cause: string; message: string; failures: number; retryAt: number; since: string }>();
  let redisReachable = true;
  let databaseReachable = true;
  // Partitions whose lease row was edited into an impossible state, with the reason last logged.
  const impossibleLeases = new Map<string, string>();

  const lease = (p: Partition) => ({ streamName: p.partitionStream, role, ownerId });

  function startWorker(p: Partition, grant: LeaseGrant): void {
    const worker = new PartitionWorker({
      context: {
        fencingToken: grant.fencingToken,
        db: options.db,
        registry: options.registry,
        metrics,
        logger,
        group,
        role,
        ownerId,
        stream: p.stream,
        partitionStream: p.partitionStream,
        maxAttempts: settings.maxAttempts,
        backoff: { baseDelayMs: settings.retryBaseDelayMs, maxDelayMs: settings.retryMaxDelayMs },
        onExhausted,
        parkingRecheckMs: settings.parkingRecheckMs,
        handlerTimeoutMs: settings.handlerTimeoutMs,
      },
      connect: () => options.redis.duplicate(),
      redisAnswerMs: settings.redisAnswerMs,
      key: p.key,
      batchSize: settings.batchSize,
      readMaxBytes: settings.readMaxBytes,
      stuckKey,
      blockMs: settings.blockMs,
      reclaimEveryMs: settings.leaseTtlMs,
      limit,
      onLeaseLost: () => {
        if (workers.get(p.partitionStream) === worker) workers.delete(p.partitionStream);
        metrics.leasesHeld.set({ group }, workers.size);
      },
    });
    workers.set(p.partitionStream, worker);
    worker.start();
    metrics.leasesHeld.set({ group }, workers.size);
  }

  /**
   * Takes `p`'s worker out of service without holding up the round: a worker
   * may take up to a handler deadline to finish its batch in hand, and
   * meanwhile the round must go on renewing every other lease (awaiting it
   * there once let a rebalance cost a replica all its other partitions).
   * `handover`: the lease is still ours; the round renews it until the
   * worker has ended, then it is released for another replica.
   */
  // Lease releases that failed (counted for stop()'s last line).
  let releaseFailures = 0;
  function retire(p: Partition, worker: PartitionWorker, how: { stop: boolean; handover: boolean }): void {
    if (workers.get(p.partitionStream) === worker) workers.delete(p.partitionStream);
    metrics.leasesHeld.set({ group }, workers.size);
    const entry: Retiring = { worker, handover: how.handover, renewUntil: Date.now() + watchdogMs, ended: Promise.resolve() };
    retiring.set(p.partitionStream, entry);
    entry.ended = (async () => {
      await (how.stop ? worker.stop() : worker.ended);
      if (entry.handover) {
        await releaseLease(options.sql, lease(p)).catch((error: unknown) => {
          releaseFailures++;
          logger.warn({ stream: p.partitionStream, err: error }, 'releasing a partition lease failed; it expires by itself');
        });
      }
      if (retiring.get(p.partitionStream) === entry) retiring.delete(p.partitionStream);
    })();
  }

  /** A Redis error reply about one key (WRONGTYPE...), as opposed to a lost connection. */
  function isReplyError(error: unknown): boolean {
    return (error as Error)?.name === 'ReplyError';
  }

  /**
   * Creates the group on every partition not done yet. An error reply on one
   * partition is that partition's fault: logged once per cause with the
   * stream, counted, retried with its own backoff, the partition left
   * unleased meanwhile; the others go on. A lost connection is thrown.
   */
  async function ensureGroups(): Promise<void> {
    const now = Date.now();
    for (const p of partitions) {
      if (groupReady.has(p.partitionStream)) continue;
      const fault = partitionFaults.get(p.partitionStream);
      if (fault && fault.retryAt > now) continue;
      try {
        await ensureGroup(options.redis, p.key, group);
        groupReady.add(p.partitionStream);
        if (fault) {
          partitionFaults.delete(p.partitionStream);
          logger.info({ stream: p.partitionStream, key: p.key }, 'consumer group created on the partition; it is consumed again');
        }
        // Also after a restart: a record left by an earlier process is stale now.
        await clearPartitionFault(options.redis, faultsKey, p.partitionStream);
      } catch (error) {
        if (!isReplyError(error)) throw error;
        const cause = partitionErrorCause(error, true);
        const failures = (fault?.failures ?? 0) + 1;
        metrics.partitionErrors.inc({ group, stream: p.partitionStream, cause });
        if (fault?.cause !== cause) {
          logger.error({ stream: p.partitionStream, key: p.key, cause, err: error }, 'cannot create the consumer group on this partition; it is skipped and retried with backoff, the others go on');
        }
        const message = (error as Error).message;
        const since = fault?.since ?? new Date(now).toISOString();
        partitionFaults.set(p.partitionStream, { cause, message, failures, since, retryAt: now + backoffDelay(failures, { baseDelayMs: 1_000, maxDelayMs: 30_000 }) });
        // For events status; the partition's own key is the broken one, this record lives elsewhere.
        await reportPartitionFault(options.redis, faultsKey, { partitionStream: p.partitionStream, redisKey: p.key, cause, message, ownerId, since }).catch(() => undefined);
      }
    }
  }

  /** The watchdog: gives up partitions whose worker is stuck on a call that neither ends nor times out. */
  async function releaseStalledPartitions(): Promise<void> {
    const now = Date.now();
    for (const p of partitions) {
      const worker = workers.get(p.partitionStream);
      if (!worker) continue;
      const stalledMs = worker.stalledMs(now);
      if (stalledMs <= watchdogMs) continue;
      logger.error(
        { stream: p.partitionStream, stalledMs, watchdogMs, inHand: worker.entryInHand },
        'partition made no progress for longer than the handler deadline plus the lease TTL; giving its lease up so another replica takes over',
      );
      metrics.watchdogReleases.inc({ group, stream: p.partitionStream });
      cooldownUntil.set(p.partitionStream, now + watchdogMs);
      const pid = worker.transactionBackendPid;
      worker.abandon();
      retire(p, worker, { stop: false, handover: false });
      try {
        await releaseLease(options.sql, lease(p));
      } catch {
        // Not renewed any more: it expires within the TTL anyway.
      }
      if (pid !== null) {
        // Its transaction may hold inbox row locks the next owner needs: end it (rolled back).
        try {
          await options.sql`SELECT pg_terminate_backend(${pid}) WHERE ${pid}::int <> pg_backend_pid()`;
          logger.warn({ stream: p.partitionStream, backendPid: pid }, 'terminated the stalled partition\'s Postgres backend; its transaction rolls back');
        } catch (error) {
          logger.warn({ stream: p.partitionStream, backendPid: pid, err: error }, 'could not terminate the stalled partition\'s Postgres backend');
        }
      }
    }
  }

  function noteRedis(reachable: boolean, error?: unknown): void {
    if (reachable === redisReachable) return;
    redisReachable = reachable;
    if (reachable) logger.info('redis reachable again');
    else logger.error({ err: error }, 'redis unreachable; partitions pause and reconnect with backoff');
  }

  function noteDatabase(reachable: boolean, error?: unknown): void {
    if (reachable === databaseReachable) return;
    databaseReachable = reachable;
    if (reachable) logger.info('postgres reachable again');
    else logger.error({ err: error }, 'postgres unreachable; cannot renew partition leases');
  }

  /**
   * Acquire or renew one partition's lease. A lease row edited by hand into an
   * impossible state is that partition's problem, not Postgres being down:
   * logged once per reason with the fix, and the partition left alone (null)
   * until an operator drops the row.
   */
  async function leasePartition(p: Partition): Promise<LeaseGrant | null> {
    try {
      const grant = await acquireLease(options.sql, { ...lease(p), ttlMs: settings.leaseTtlMs });
      if (impossibleLeases.delete(p.partitionStream)) logger.info({ stream: p.partitionStream }, 'partition lease row is sane again; leasing it normally');
      return grant;
    } catch (error) {
      if (!(error instanceof ImpossibleLeaseError)) throw error;
      if (impossibleLeases.get(p.partitionStream) !== error.reason) {
        impossibleLeases.set(p.partitionStream, error.reason);
        logger.error({ stream: p.partitionStream, role, reason: error.reason, fix: error.fix }, error.message);
      }
      return null;
    }
  }

  /** One coordination round: renew, shed extras, take free partitions up to the fair share. */
  async function tick(): Promise<void> {
    await releaseStalledPartitions();
    // Renew first and on Postgres only, so a slow or absent Redis never lets our leases lapse. Partitions being handed
    // over are renewed too, until their worker has finished its batch in hand.
    for (const [partitionStream, entry] of retiring) {
      if (Date.now() < entry.renewUntil) continue;
      if (entry.handover) {
        entry.handover = false;
        logger.error(
          { stream: partitionStream, watchdogMs },
          'handed-over partition: its worker has not ended within the handler deadline plus the lease TTL; no longer renewing its lease, so another replica takes it over',
        );
      }
      // Still moving (a long batch whose handler calls keep ending), or past its batch and ending (its remaining
      // Redis calls are bounded): let it finish; once the lease lapses its commits are refused.
      const stalledMs = entry.worker.stalledMs();
      if (stalledMs <= watchdogMs) continue;
      // Stuck in a call nothing ends (a frozen Postgres backend holds its ROLLBACK): waiting for it would keep the
      // partition from this process for good, and from the others too while they hold their fair share.
      retiring.delete(partitionStream);
      entry.worker.abandon();
      logger.error(
        { stream: partitionStream, watchdogMs, stalledMs },
        'retired partition worker is stuck and has not ended; abandoning it, so the partition may be leased again (its commits are refused by the lease fence)',
      );
    }
    const held = partitions.filter((p) => workers.has(p.partitionStream) || retiring.get(p.partitionStream)?.handover);
    try {
      await Promise.all(
        held.map(async (p) => {
          const grant = await leasePartition(p);
          const worker = workers.get(p.partitionStream);
          if (!worker) {
            // Handed over and still finishing: nothing to release once it has if the lease is gone already.
            const leaving = retiring.get(p.partitionStream);
            if (!grant && leaving) leaving.handover = false;
            return;
          }
          if (!grant) {
            if (!impossibleLeases.has(p.partitionStream)) logger.warn({ stream: p.partitionStream }, 'partition lease taken by another replica; stopping that partition');
            retire(p, worker, { stop: true, handover: false });
            return;
          }
          if (worker.fencingToken !== grant.fencingToken) {
            // Lost and taken back since the last round (this process stalled past the TTL): another replica may have
            // parked keys, claimed entries or moved on meanwhile, none of which this worker knows. Its commits are
            // refused from now on (the fence checks the token); a fresh worker starts once it has ended.
            logger.warn(
              { stream: p.partitionStream, fencingToken: grant.fencingToken, previousFencingToken: worker.fencingToken },
              'partition lease was lost and taken back since the last round; replacing its worker, which missed what happened meanwhile',
            );
            metrics.leaseRegains.inc({ group, stream: p.partitionStream });
            retire(p, worker, { stop: true, handover: false });
          }
        }),
      );
      noteDatabase(true);
    } catch (error) {
      noteDatabase(false, error);
      return;
    }

    let liveMembers: number | null = null;
    try {
      // Bounded: a call to a frozen server never fails by itself, and this round must come back to renew leases.
      const redisRound = (async () => {
        await ensureGroups();
        return heartbeatMembership(options.redis, members, ownerId, settings.leaseTtlMs);
      })();
      liveMembers = await answeredWithin(redisRound, settings.redisAnswerMs, 'Redis coordination round (groups, membership)');
      noteRedis(true);
    } catch (error) {
      noteRedis(false, error);
    }
    // Without a membership count (Redis down) keep what we hold: no rebalancing blind.
    if (liveMembers === null || abort.signal.aborted) return;

    // Partitions nobody can use now (faulty keys) are not shared out.
    const usable = partitions.filter((p) => groupReady.has(p.partitionStream)).length;
    const target = Math.ceil(usable / Math.max(1, liveMembers));
    const holding = partitions.filter((p) => workers.has(p.partitionStream));
    for (const extra of holding.slice(target)) {
      logger.info({ stream: extra.partitionStream, target, liveMembers }, 'handing a partition over to rebalance');
      retire(extra, workers.get(extra.partitionStream)!, { stop: true, handover: true });
    }
    let count = Math.min(holding.length, target);
    for (let i = 0; i < partitions.length && count < target && !abort.signal.aborted; i++) {
      const p = partitions[(i + scanOffset) % partitions.length] as Partition;
      if (workers.has(p.partitionStream) || retiring.has(p.partitionStream) || !groupReady.has(p.partitionStream)) continue;
      if ((cooldownUntil.get(p.partitionStream) ?? 0) > Date.now()) continue;
      const grant = await leasePartition(p);
      if (!grant) continue;
      logger.info({ stream: p.partitionStream, fencingToken: grant.fencingToken }, 'partition leased');
      startWorker(p, grant);
      count++;
    }
  }

  async function run(): Promise<void> {
    // Registered before the first lease, so no lease ever has an unregistered owner.
    await node.start();
    let roundFailing = false;
    while (!abort.signal.aborted) {
      try {
        await tick();
        if (roundFailing) logger.info('consumer coordination rounds succeed again');
        roundFailing = false;
      } catch (error) {
        // Logged once per change of state, not on every round.
        if (!roundFailing) logger.error({ err: error }, 'consumer coordination round failed; retrying every round');
        roundFailing = true;
      }
      void sampleBacklog();
      await sleep(tickMs, abort.signal);
    }
  }

  let sampling = false;
  /** Lag and pending of the group on every partition, for the gauges. Skipped while Redis is down. */
  async function sampleBacklog(): Promise<void> {
    if (sampling || !redisReachable) return;
    sampling = true;
    try {
      for (const p of partitions) {
        const backlog = await answeredWithin(groupBacklog(options.redis, p.key, group), settings.redisAnswerMs, 'Redis XINFO GROUPS');
        if (!backlog) continue;
        if (backlog.lag !== null) metrics.lag.set({ group, stream: p.partitionStream }, backlog.lag);
        metrics.pending.set({ group, stream: p.partitionStream }, backlog.pending);
      }
    } catch {
      // Redis trouble is reported by the coordination round.
    } finally {
      sampling = false;
    }
  }

  return {
    ownerId,
    group,
    metrics,
    metricsRegistry,
    start() {
      if (stopping || loop) return;
      loop = run();
      pruner = startInboxPruner({
        sql: options.sql,
        ownerId,
        logger,
        metrics,
        retentionMs: settings.inboxRetentionMs,
        intervalMs: settings.inboxPruneIntervalMs,
        batchSize: INBOX_RETENTION_DEFAULTS.batchSize,
      });
    },
    stop() {
      stopping ??= (async () => {
        abort.abort();
        await loop;
        await pruner?.stop();
        const failuresBefore = releaseFailures;
        // Each worker finishes its batch in hand, then its lease is released (a failure is logged: it expires by itself).
        for (const [partitionStream, worker] of [...workers]) retire(partitions.find((p) => p.partitionStream === partitionStream)!, worker, { stop: true, handover: true });
        await Promise.all([...retiring.values()].map((r) => r.ended));
        // With Redis down the command would wait out its retries; the membership expires by itself.
        if (options.redis.status === 'ready') {
          try {
            await answeredWithin(leaveMembership(options.redis, members, ownerId), settings.redisAnswerMs, 'Redis membership removal');
          } catch {
            // Lost the connection meanwhile: same as above.
          }
        }
        // After the leases: a node that is gone must hold none.
        await node.stop();
        const unreleased = releaseFailures - failuresBefore;
        if (unreleased === 0) logger.info('consumer loops ended; partition leases released');
        else logger.warn({ unreleased }, 'consumer loops ended; some partition leases could not be released (each failure logged above); they expire within the lease TTL');
      })();
      return stopping;
    },
    status() {
      return {
        ownerId,
        group,
        leased: partitions.filter((p) => workers.has(p.partitionStream)).map((p) => p.partitionStream),
        partitions: partitions.map((p) => p.partitionStream),
        redisReachable,
        faulty: [...partitionFaults].map(([partition, fault]) => ({ partition, cause: fault.cause, message: fault.message })),
      };
    },
  };
}
