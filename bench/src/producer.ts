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
  /** Database with a pool of `connections` (the producer's connections). */
  db: Database;
  emit: EmitInTransaction;
  ratePerSec: number;
  durationMs: number;
  /** First sequence number; the run uses firstSeq .. firstSeq + sent - 1. */
  firstSeq: number;
  /** Called (synchronously) after each commit, e.g. to count produced events. */
  onCommitted?: () => void;
  signal?: AbortSignal;
}

export interface ProducerResult {
  scheduled: number;
  committed: number;
  failed: number;
  firstError?: string;
  elapsedMs: number;
  /** Committed transactions per second over the run. */
  achievedRatePerSec: number;
  /** Largest delay between a transaction's slot and the start of its transaction. */
  maxStartLagMs: number;
}

/**
 * One producer transaction: the event first, then the domain row, whose
 * `written_at = clock_timestamp()` is the last thing before COMMIT. Latency is
 * taken from there, so it includes the commit itself. `scheduled_at` is the
 * slot the schedule gave it (the same machine's wall clock), for the latency
 * that also counts time spent waiting for a producer connection.
 */
export async function produceOne(db: Database, emit: EmitInTransaction, seq: number, scheduledAt: Date): Promise<void> {
  await db.transaction(async (tx) => {
    await emit(tx, seq);
    await tx.execute(
      sql`INSERT INTO bench.domain_row (seq, scheduled_at, written_at) VALUES (${seq}, ${scheduledAt.toISOString()}, clock_timestamp())`,
    );
  });
}

/**
 * Runs the schedule: slot i is due at start + i / rate. Transactions are
 * issued when due, whatever is in flight; the pool queues them when every
 * connection is busy, and that queueing shows in the latency.
 */
export async function runOpenLoopProducer(run: ProducerRun): Promise<ProducerResult> {
  const total = Math.round((run.ratePerSec * run.durationMs) / 1000);
  const intervalMs = 1000 / run.ratePerSec;
  const start = performance.now();
  let issued = 0;
  let committed = 0;
  let failed = 0;
  let firstError: string | undefined;
  let maxStartLagMs = 0;
  const inFlight = new Set<Promise<void>>();

  while (issued < total && !run.signal?.aborted) {
    const now = performance.now();
    const due = Math.min(total, Math.floor((now - start) / intervalMs) + 1);
    for (; issued < due; issued += 1) {
      const slotAt = start + issued * intervalMs;
      maxStartLagMs = Math.max(maxStartLagMs, now - slotAt);
      const seq = run.firstSeq + issued;
      const tx: Promise<void> = produceOne(run.db, run.emit, seq, new Date(performance.timeOrigin + slotAt)).then(
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
      void tx.finally(() => inFlight.delete(tx));
    }
    const nextSlot = start + issued * intervalMs;
    await sleep(Math.max(0, Math.min(5, nextSlot - performance.now())));
  }
  await Promise.all(inFlight);
  const elapsedMs = performance.now() - start;
  return {
    scheduled: issued,
    committed,
    failed,
    firstError,
    elapsedMs,
    achievedRatePerSec: (committed * 1000) / Math.max(elapsedMs, 1),
    maxStartLagMs,
  };
}
