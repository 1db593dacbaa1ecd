/**
 * Waking the publisher without a NOTIFY per commit (issue 20).
 *
 * A NOTIFY takes a database-wide lock from before its transaction's commit
 * until after the commit's WAL flush, so producers that notify commit one at
 * a time: about half the commit rate of the same transactions without it.
 * While a stream has traffic its drainer does not need them: it polls.
 *
 * The protocol, per stream, on the advisory lock
 * `(OUTBOX_WAKE_LOCK_CLASS, hashtext(stream))` (the wake lock):
 * - Awake: the drainer holds the wake lock (session lock, on this process's
 *   wake connection) and polls the stream every gather interval. `enqueue`
 *   sends its NOTIFY only when it can take the wake lock shared
 *   (`pg_try_advisory_xact_lock_shared`): while the drainer is awake it cannot,
 *   and sends none.
 * - Settling: no row for a linger period. The drainer releases the wake lock,
 *   then lists the transactions running (each holds a lock on its own id in
 *   pg_locks), and keeps polling until every one of them has ended. A
 *   producer that found the lock held had its transaction id before the
 *   release (the row is inserted before the lock is tried), so it is in that
 *   list, and by then it has committed or rolled back; every producer after
 *   the release finds the lock free and notifies.
 * - Settled: one more poll after that; if it finds nothing, the drainer
 *   sleeps until a NOTIFY (or its poll interval).
 * No row is ever lost whatever happens here (the poll interval and every
 * sweep still find them); the protocol decides only whether a row committed
 * while the drainer falls asleep waits for the poll interval. It does not.
 *
 * A wake lock held by another session (a frozen publisher process whose
 * connection is still open, or a stream whose hash collides with another
 * stream's) keeps producers from notifying: the drainer then sleeps at most
 * `HELD_ELSEWHERE_SLEEP_MS` at a time.
 */
import postgres from 'postgres';
import { OUTBOX_WAKE_LOCK_CLASS } from '../enqueue';
import type { Sql } from '../db';

/** Longest sleep while another session holds the stream's wake lock (no NOTIFY comes then). */
export const HELD_ELSEWHERE_SLEEP_MS = 250;
/**
 * Settling normally ends within a poll or two (producer transactions are
 * short). A long transaction anywhere on the server (a report, a migration,
 * a session left idle in a transaction) keeps it settling: after this long
 * the drainer polls every SETTLING_SLOW_POLL_MS instead of every gatherMs, so
 * such a transaction costs 20 polls a second, not 200; a producer racing the
 * sleep then waits at most that long.
 */
export const SETTLING_SLOW_AFTER_MS = 100;
export const SETTLING_SLOW_POLL_MS = 50;

/**
 * The wake locks of this publisher process, all on one connection of its own
 * (session locks live on a connection; a pooled or reserved connection may
 * be swapped or left dead under us when Postgres restarts). Its settings are
 * the main client's, as postgres.js builds its LISTEN connection. When that
 * connection closes, every lock is forgotten at once (the server released
 * them with it); an error while releasing ends the connection, so the server
 * has released the lock before anything relies on it. A lock believed free
 * is at worst still held, which only makes producers send NOTIFYs again.
 */
export class WakeLocks {
  private client: Sql | undefined;
  private readonly held = new Set<string>();

  constructor(private readonly sql: Sql) {}

  holds(stream: string): boolean {
    return this.held.has(stream);
  }

  /** Takes the stream's wake lock if nobody holds it (producers in flight may hold it shared). */
  async tryHold(stream: string): Promise<boolean> {
    if (this.held.has(stream)) return true;
    const client = this.connection();
    const [row] = await client<{ held: boolean }[]>`SELECT pg_try_advisory_lock(${OUTBOX_WAKE_LOCK_CLASS}::int, hashtext(${stream})) AS held`;
    // Only if the connection that took it is still ours (a close in between released it).
    if (row?.held && this.client === client) this.held.add(stream);
    return this.held.has(stream);
  }

  /** Releases the stream's wake lock; resolves once the server has released it. */
  async release(stream: string): Promise<void> {
    if (!this.held.delete(stream)) return;
    const client = this.connection();
    try {
      await client`SELECT pg_advisory_unlock(${OUTBOX_WAKE_LOCK_CLASS}::int, hashtext(${stream}))`;
    } catch (error) {
      await this.drop(client);
      throw error;
    }
  }

  /** Releases every lock (by closing the connection). Never rejects. */
  async close(): Promise<void> {
    if (this.client) await this.drop(this.client);
  }

  private connection(): Sql {
    if (!this.client) {
      const client: Sql = postgres({
        ...this.sql.options,
        max: 1,
        idle_timeout: null,
        max_lifetime: null,
        fetch_types: false,
        onclose: () => {
          if (this.client === client) this.held.clear();
        },
      } as unknown as postgres.Options<Record<string, never>>) as unknown as Sql;
      this.client = client;
    }
    return this.client;
  }

  private async drop(client: Sql): Promise<void> {
    if (this.client === client) {
      this.client = undefined;
      this.held.clear();
    }
    await client.end({ timeout: 1 }).catch(() => undefined);
  }
}

export type WakeStep = 'poll' | 'sleep';

/**
 * One drainer's side of the protocol. `sawRows()` after every batch that
 * found rows; `idle()` after a sweep that found none says whether to poll
 * again after the gather interval or to sleep until a NOTIFY.
 */
export class StreamWake {
  private state: 'awake' | 'settling' | 'settled' | 'asleep' = 'awake';
  private settlingSince = 0;
  private lastRowsAt = Date.now();
  /** Transactions running just after the release: every one must end before sleeping. */
  private horizon: string[] | undefined;

  constructor(
    private readonly locks: WakeLocks,
    private readonly sql: Sql,
    readonly stream: string,
    private readonly lingerMs: number,
    /** Test hook: each state the drainer enters, and each settling poll. */
    private readonly onState?: (stream: string, state: string) => void,
  ) {}

  get current(): string {
    return this.state;
  }

  /** Rows were found: stay (or become) awake, holding the wake lock if it can be taken. */
  async sawRows(): Promise<void> {
    this.lastRowsAt = Date.now();
    if (this.state !== 'awake') this.enter('awake');
    this.horizon = undefined;
    if (!this.locks.holds(this.stream)) await this.locks.tryHold(this.stream);
  }

  /** A sweep found nothing: poll again (after the gather interval) or sleep. */
  async idle(): Promise<WakeStep> {
    switch (this.state) {
      case 'awake':
        if (Date.now() - this.lastRowsAt < this.lingerMs) {
          // Not taken yet (a committing producer still held it shared, a moment after its row became visible): try again.
          if (!this.locks.holds(this.stream)) await this.locks.tryHold(this.stream);
          return 'poll';
        }
        await this.locks.release(this.stream);
        this.horizon = await runningTransactions(this.sql);
        this.enter('settling');
        this.settlingSince = Date.now();
        return 'poll';
      case 'settling':
        if (await allEnded(this.sql, this.horizon!)) this.enter('settled');
        else this.onState?.(this.stream, 'settling-poll');
        return 'poll';
      case 'settled':
      case 'asleep':
        this.enter('asleep');
        return 'sleep';
    }
  }

  /** The pause before the next poll: `gatherMs`, longer once settling has lasted (see SETTLING_SLOW_AFTER_MS). */
  pollDelayMs(gatherMs: number): number {
    if (this.state === 'settling' && Date.now() - this.settlingSince > SETTLING_SLOW_AFTER_MS) return Math.max(gatherMs, SETTLING_SLOW_POLL_MS);
    return gatherMs;
  }

  /** How long to sleep: the poll interval, unless another session holds the wake lock (no NOTIFY will come). */
  async sleepMs(pollIntervalMs: number): Promise<number> {
    return (await heldElsewhere(this.sql, this.stream)) ? Math.min(pollIntervalMs, HELD_ELSEWHERE_SLEEP_MS) : pollIntervalMs;
  }

  /** The drainer stops: let go of the lock (the next owner starts awake). Never rejects. */
  async stop(): Promise<void> {
    await this.locks.release(this.stream).catch(() => undefined);
  }

  private enter(state: 'awake' | 'settling' | 'settled' | 'asleep'): void {
    if (this.state === state) return;
    this.state = state;
    this.onState?.(this.stream, state);
  }
}

/**
 * Ids of the transactions running now, from the lock each holds on its own
 * id (pg_locks, readable by any role). Not the snapshot's xmax: that is the
 * last completed id + 1, and a transaction that got its id after it is
 * running without being listed (a producer's, found so in testing).
 */
async function runningTransactions(sql: Sql): Promise<string[]> {
  const [row] = await sql<{ xids: string[] }[]>`
    SELECT coalesce(array_agg(transactionid::text), '{}') AS xids FROM pg_locks
    WHERE locktype = 'transactionid' AND mode = 'ExclusiveLock' AND granted`;
  return row!.xids;
}

/** Whether every one of these transactions has committed or rolled back. */
async function allEnded(sql: Sql, xids: readonly string[]): Promise<boolean> {
  if (xids.length === 0) return true;
  const [row] = await sql<{ ended: boolean }[]>`
    SELECT NOT EXISTS (
      SELECT 1 FROM pg_locks
      WHERE locktype = 'transactionid' AND mode = 'ExclusiveLock' AND granted AND transactionid = ANY(${`{${xids.join(',')}}`}::xid[])
    ) AS ended`;
  return Boolean(row?.ended);
}

/** Whether a session holds the stream's wake lock exclusively (not a producer: they hold it shared). */
async function heldElsewhere(sql: Sql, stream: string): Promise<boolean> {
  const [row] = await sql<{ held: boolean }[]>`
    SELECT EXISTS (
      SELECT 1 FROM pg_locks
      WHERE locktype = 'advisory' AND classid = ${OUTBOX_WAKE_LOCK_CLASS}::int::oid AND objid = hashtext(${stream})::oid
        AND objsubid = 2 AND mode = 'ExclusiveLock' AND granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
    ) AS held`;
  return Boolean(row?.held);
}
