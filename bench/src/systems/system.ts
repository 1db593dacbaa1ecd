/**
 * What the end-to-end drain and latency scenarios need from a system under
 * test (ours, graphile-worker, pg-boss): start its processes, pre-fill a
 * backlog, emit one event/job inside the producer's transaction, stop.
 * Every system's handler writes one `bench.handled` row per event/job.
 */
import type { EmitInTransaction } from '../producer';
import type { ManagedProcess } from '../processes';

export interface RunningSystem {
  /** Processes whose peak RSS is reported. */
  processes: ManagedProcess[];
  /**
   * Commits `count` events/jobs (seq = firstSeq...) in one transaction;
   * returns the database clock right after COMMIT.
   */
  prefill(count: number, firstSeq: number): Promise<string>;
  emit: EmitInTransaction;
  /** Graceful stop of every process, then any client of its own. Idempotent. */
  stop(): Promise<void>;
}

export interface SystemUnderTest {
  /** `petcover`, `graphile-worker`, `pg-boss`. */
  name: string;
  /** The settings it runs with, printed in the report. */
  settings: Record<string, string | number | boolean>;
  start(): Promise<RunningSystem>;
}
