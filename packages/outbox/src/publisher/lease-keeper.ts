/**
 * The lease keeper: discovers streams with unpublished rows, acquires or
 * renews their publisher leases (one SQL statement each, database clock),
 * starts a drainer for each stream it takes and stops it when the lease is
 * lost. Wakes on NOTIFY. A failure on one stream is logged once for that
 * stream and skipped for this round; the other streams keep their leases.
 */
import { hostname } from 'node:os';
import { OUTBOX_NOTIFY_CHANNEL } from '../enqueue';
import { acquireLease, ImpossibleLeaseError, releaseLease, type LeaseGrant } from '../lease/lease';
import { FailureLog, sleep, Wakeup } from '../backoff';
import type { PublisherContext } from './context';
import { compareEntryIds } from '../entry-id';
import { partitionCount, partitionStreamNames, redisStreamKey } from '../streams';
import { streamHead } from './redis-scripts';
import { databaseIdentity, leaseHolder, recordedPositions, streamsWithUnpublishedRows } from './statements';
import { postgresStep, StreamDrainer } from './stream-drainer';

/** How long a graceful stop waits for lease releases (Postgres may be down). */
const RELEASE_TIMEOUT_MS = 2_000;

export class LeaseKeeper {
  private readonly held = new Map<string, StreamDrainer>();
  /** Streams we already said we wait for: stream → owner, so each wait is logged once. */
  private readonly waitingFor = new Map<string, string>();
  /** Streams whose lease row was edited into an impossible state: stream → reason logged, so each is logged once. */
  private readonly impossible = new Map<string, string>();
  /** Per-stream failures of the lease round, each logged once per state change. */
  private readonly streamHealth = new Map<string, FailureLog>();
  private readonly tick = new Wakeup();
  private unlisten: (() => Promise<void>) | undefined;
  private databaseId: string | undefined;

  constructor(private readonly ctx: PublisherContext) {}

  /** `databaseIdentity(sql)`, read before the first lease round; every Redis write carries it. */
  get identity(): string | undefined {
    return this.databaseId;
  }

  heldStreams(): string[] {
    return [...this.held.keys()];
  }

  drainers(): StreamDrainer[] {
    return [...this.held.values()];
  }

  /** The lease loop; ends when `signal` aborts (after the round in hand). */
  async run(signal: AbortSignal): Promise<void> {
    const { ctx } = this;
    const health = new FailureLog(ctx.log, { loop: 'lease' });
    const every = Math.max(50, Math.min(ctx.config.pollIntervalMs, Math.floor(ctx.config.leaseTtlMs / 3)));
    while (!signal.aborted) {
      try {
        await this.ensureListening();
        if (this.databaseId === undefined) {
          this.databaseId = await databaseIdentity(ctx.sql);
          ctx.log.info({ databaseId: this.databaseId }, 'database identity read; stamped on every Redis stream written');
        }
        await this.round(signal);
        health.succeeded('lease round');
        await this.tick.wait(every, signal);
      } catch (error) {
        await sleep(health.failed(error, 'lease round'), signal);
      }
    }
  }

  /**
   * Stops every drainer (each finishes the batch in hand) within `timeoutMs`,
   * then releases the leases, bounded as well. Never rejects.
   */
  async stopAll(timeoutMs: number): Promise<string[]> {
    const drainers = [...this.held.values()];
    const finished = await boundedWait(timeoutMs, drainers.map((d) => d.stop()));
    if (!finished) this.ctx.log.warn({ stopTimeoutMs: timeoutMs }, 'batches in hand did not finish in time; releasing leases anyway');
    for (const drainer of drainers) {
      this.held.delete(drainer.stream);
      this.ctx.metrics.leasesHeld.set({ stream: drainer.stream }, 0);
    }
    // With Postgres down each call would wait for a connect timeout; leases expire on their own anyway.
    await boundedWait(RELEASE_TIMEOUT_MS, [
      this.unlisten?.().catch(() => undefined),
      ...drainers.map((d) =>
        releaseLease(this.ctx.sql, { streamName: d.stream, role: 'publisher', ownerId: this.ctx.ownerId }).catch((error: unknown) =>
          this.ctx.log.warn({ stream: d.stream, err: error }, 'could not release lease; it expires on its own'),
        ),
      ),
    ]);
    return drainers.map((d) => d.stream);
  }

  /** Discovers streams with work, acquires or renews their leases, notices lost ones. */
  private async round(signal: AbortSignal): Promise<void> {
    const found = await postgresStep(this.ctx, '*', 'discover', streamsWithUnpublishedRows(this.ctx.sql));
    const candidates = new Set([...found, ...this.held.keys(), ...(await this.idleStreamsBehind())]);
    for (const stream of candidates) {
      if (signal.aborted) return;
      const health = this.healthOf(stream);
      try {
        await this.keepStream(stream);
        health.succeeded('lease');
      } catch (error) {
        health.failed(error, 'lease');
      }
    }
  }

  /**
   * Streams nobody drains (nothing unpublished) whose Redis ends before what
   * Postgres recorded: flushed, restored from an older snapshot, failed over.
   * Leasing them lets their drainer re-append what is missing, although no
   * new row will come. Keys of another REDIS_KEY_PREFIX or partition count
   * are not ours to judge.
   */
  private async idleStreamsBehind(): Promise<string[]> {
    const { ctx } = this;
    const recorded = (await postgresStep(ctx, '*', 'discover', recordedPositions(ctx.sql))).filter((r) => {
      if (this.held.has(r.stream)) return false;
      const count = partitionCount(r.stream, ctx.partitions);
      return partitionStreamNames(r.stream, count).some((name) => redisStreamKey(name, ctx.keyPrefix) === r.redisKey);
    });
    const behind = new Set<string>();
    await Promise.all(
      recorded.map(async (r) => {
        const head = await streamHead(ctx.redis, r.redisKey).catch(() => null); // a WRONGTYPE key is reported once leased
        if (head && (!head.hasMeta || compareEntryIds(head.lastEntryId, r.lastEntryId) < 0)) behind.add(r.stream);
      }),
    );
    return [...behind];
  }

  private async keepStream(stream: string): Promise<void> {
    const { ctx } = this;
    const current = this.held.get(stream);
    let grant: LeaseGrant | null;
    try {
      // Bounded: one renewal that never answers would hold the round, and with it every lease of this process.
      grant = await postgresStep(ctx, stream, 'lease', acquireLease(ctx.sql, { streamName: stream, role: 'publisher', ownerId: ctx.ownerId, ttlMs: ctx.config.leaseTtlMs }));
    } catch (error) {
      if (!(error instanceof ImpossibleLeaseError)) throw error;
      // A hand-edited row, not a database outage: said once, the stream left alone until an operator drops the row.
      if (current) this.dropped(current, 'its lease row is in an impossible state');
      if (this.impossible.get(stream) !== error.reason) {
        this.impossible.set(stream, error.reason);
        ctx.log.error({ stream, role: 'publisher', reason: error.reason, fix: error.fix }, error.message);
      }
      return;
    }
    if (this.impossible.delete(stream)) ctx.log.info({ stream }, 'publisher lease row is sane again; leasing it normally');
    if (!grant) {
      if (current) this.dropped(current, 'lease renewal failed: another owner holds it now');
      await this.noteLeaseWait(stream);
      return;
    }
    if (this.waitingFor.delete(stream)) ctx.metrics.leaseBlocked.set({ stream }, 0);
    if (!current) this.take(grant);
    else if (current.fencingToken !== grant.fencingToken) {
      ctx.log.info({ stream, fencingToken: grant.fencingToken }, 'publisher lease re-acquired with a new fencing token');
      current.adoptToken(grant.fencingToken);
    } else {
      await current.checkIdle();
    }
  }

  private take(grant: LeaseGrant): void {
    const drainer = new StreamDrainer(this.ctx, grant, (d, reason) => this.dropped(d, reason));
    this.held.set(grant.streamName, drainer);
    this.ctx.metrics.leasesHeld.set({ stream: grant.streamName }, 1);
    this.ctx.log.info({ stream: grant.streamName, fencingToken: grant.fencingToken, partitions: drainer.partitions.length }, 'publisher lease acquired; draining');
    drainer.start();
  }

  private dropped(drainer: StreamDrainer, reason: string): void {
    if (this.held.get(drainer.stream) !== drainer) return;
    this.held.delete(drainer.stream);
    void drainer.stop();
    this.ctx.metrics.leasesHeld.set({ stream: drainer.stream }, 0);
    this.ctx.metrics.leasesLost.inc({ stream: drainer.stream });
    this.ctx.log.warn({ stream: drainer.stream, fencingToken: drainer.fencingToken, reason }, 'stopped draining stream');
  }

  private async noteLeaseWait(stream: string): Promise<void> {
    const { ctx } = this;
    const holder = await postgresStep(ctx, stream, 'lease', leaseHolder(ctx.sql, stream, 'publisher'));
    if (!holder || this.waitingFor.get(stream) === holder.ownerId) return;
    this.waitingFor.set(stream, holder.ownerId);
    ctx.metrics.leaseWaits.inc({ stream });
    ctx.metrics.leaseBlocked.set({ stream }, 1);
    ctx.log.info(
      { stream, leaseOwner: holder.ownerId, secondsLeft: Math.round(holder.secondsLeft * 10) / 10, ownerAlive: ownerAliveHint(holder.ownerId) },
      'stream has unpublished rows but another owner holds its publisher lease; waiting for it to expire',
    );
  }

  private healthOf(stream: string): FailureLog {
    let health = this.streamHealth.get(stream);
    if (!health) {
      health = new FailureLog(this.ctx.log, { loop: 'lease', stream });
      this.streamHealth.set(stream, health);
    }
    return health;
  }

  private async ensureListening(): Promise<void> {
    if (this.unlisten) return;
    const subscription = await this.ctx.sql.listen(OUTBOX_NOTIFY_CHANNEL, (stream) => {
      const drainer = this.held.get(stream);
      if (drainer) drainer.ring();
      else this.tick.ring(); // a stream we do not hold yet: try to lease it now
    });
    this.unlisten = subscription.unlisten;
  }
}

/** Waits for all `promises` (errors ignored) or `ms`; true when all settled in time. */
async function boundedWait(ms: number, promises: Array<Promise<unknown> | undefined>): Promise<boolean> {
  const timer = new AbortController();
  const settled = await Promise.race([Promise.allSettled(promises).then(() => true), sleep(ms, timer.signal).then(() => false)]);
  timer.abort();
  return settled;
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
