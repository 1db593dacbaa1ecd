/**
 * The open-loop producer shared by every system under test: at a fixed rate,
 * each transaction writes one domain row and emits one event/job through the
 * system's own API, inside that transaction. The schedule never waits for the
 * system: a slow commit delays nothing but itself (no coordinated omission),
 * and how far sends fell behind their slot is reported.
 */
import { sql } from 'drizzle-orm';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Database, Transaction } from '@petcover/outbox';

/** Emits the event (or job) for domain row `seq` inside the producer's transaction. */
export type EmitInTransaction = (tx: Transaction, seq: number) => Promise<void>;

export interface ProducerRun {
  /** Database with a pool of at least `connections` connections. */
  db: Database;
  /** Transactions in flight at once (the producer's connections). */
  connections: number;
  emit: EmitInTransaction;
  /** Runs after each COMMIT (a dual write: the job is added once the domain row is committed). */
  emitAfterCommit?: (seq: number) => Promise<void>;
  ratePerSec: number;
  durationMs: number;
  /** First sequence number; slot i uses seq firstSeq + i. */
  firstSeq: number;
  /**
   * After the schedule ends, how long slots still waiting for a connection
   * may start; the rest are dropped (counted), so a system that cannot keep
   * up does not stretch the run without bound. Default 2 s.
   */
  drainGraceMs?: number;
  /** Called (synchronously) after each commit, e.g. to count produced events. */
  onCommitted?: () => void;
  signal?: AbortSignal;
}

export interface ProducerResult {
  scheduled: number;
  committed: number;
  failed: number;
  /** Slots never started: the producer's connections were still busy when time was up. */
  dropped: number;
  firstError?: string;
  elapsedMs: number;
  /** Committed transactions per second, from the first slot to the last commit. */
  achievedRatePerSec: number;
  /** Largest delay between a transaction's slot and the start of its transaction. */
  maxStartLagMs: number;
}

/**
 * One producer transaction: the event and the domain row, sent together
 * (pipelined on the transaction's connection, as an application that issues
 * both writes before awaiting would), then COMMIT. The domain row's
 * `written_at = clock_timestamp()` is where latency is taken from, so it
 * includes the commit itself (and, should the row be written first, the
 * event's insert too: never less than the true commit-to-handler time).
 * `scheduled_at` is the slot the schedule gave it (the same machine's wall
 * clock), for the latency that also counts time spent waiting for a producer
 * connection. `afterCommit`, when given, runs once the transaction committed
 * (a dual write, as an application using a Redis queue does).
 */
export async function produceOne(db: Database, emit: EmitInTransaction, seq: number, scheduledAt: Date, afterCommit?: (seq: number) => Promise<void>): Promise<void> {
  await db.transaction(async (tx) => {
    await Promise.all([
      emit(tx, seq),
      tx.execute(sql`INSERT INTO bench.domain_row (seq, scheduled_at, written_at) VALUES (${seq}, ${scheduledAt.toISOString()}, clock_timestamp())`),
    ]);
  });
  if (afterCommit) await afterCommit(seq);
}

/**
 * Runs the schedule: slot i is due at start + i / rate, whatever is in
 * flight. A due slot starts on the first free connection; slots waiting for
 * one keep their original due time (their wait shows in `scheduled_at`
 * latency), so the offered load never adapts to the system's speed.
 */
export async function runOpenLoopProducer(run: ProducerRun): Promise<ProducerResult> {
  const total = Math.round((run.ratePerSec * run.durationMs) / 1000);
  const intervalMs = 1000 / run.ratePerSec;
  const graceMs = run.drainGraceMs ?? 2000;
  const start = performance.now();
  let due = 0;
  let started = 0;
  let committed = 0;
  let failed = 0;
  let firstError: string | undefined;
  let maxStartLagMs = 0;
  let busy = 0;
  let wake: (() => void) | undefined;
  const inFlight = new Set<Promise<void>>();

  const startSlot = (slot: number) => {
    const slotAt = start + slot * intervalMs;
    maxStartLagMs = Math.max(maxStartLagMs, performance.now() - slotAt);
    busy += 1;
    const tx: Promise<void> = produceOne(run.db, run.emit, run.firstSeq + slot, new Date(performance.timeOrigin + slotAt), run.emitAfterCommit).then(
      () => {
        committed += 1;
        run.onCommitted?.();
      },
      (error: unknown) => {
        failed += 1;
        firstError ??= error instanceof Error ? error.message : String(error);
      },
    );
    inFlight.add(tx);
    void tx.finally(() => {
      inFlight.delete(tx);
      busy -= 1;
      wake?.();
    });
  };

  const scheduleEnd = start + run.durationMs;
  while (!run.signal?.aborted) {
    const now = performance.now();
    due = Math.min(total, Math.floor((now - start) / intervalMs) + 1);
    while (started < due && busy < run.connections) startSlot(started++);
    if (started >= total) break;
    if (now > scheduleEnd + graceMs) break;
    // Sleep until the next slot is due or a connection frees up, at most 5 ms.
    const nextSlotIn = started < due ? 5 : start + due * intervalMs - now;
    await Promise.race([sleep(Math.max(0, Math.min(5, nextSlotIn))), new Promise<void>((resolve) => (wake = resolve))]);
    wake = undefined;
  }
  await Promise.all(inFlight);
  const elapsedMs = performance.now() - start;
  return {
    scheduled: due,
    committed,
    failed,
    dropped: due - started,
    firstError,
    elapsedMs,
    achievedRatePerSec: (committed * 1000) / Math.max(elapsedMs, 1),
    maxStartLagMs,
  };
}
