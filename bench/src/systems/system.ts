/**
 * What the end-to-end scenarios need from a system under test (ours,
 * graphile-worker, pg-boss, BullMQ): start its processes, pre-fill a backlog,
 * emit one event/job per producer transaction, stop. Every system's handler
 * writes one `bench.handled` row per event/job.
 */
import type { ProducerScript } from '../producer-scripts/producer-script';
import type { EmitInTransaction } from '../producer';
import type { ManagedProcess } from '../processes';

export interface RunningSystem {
  /** Processes whose peak RSS and CPU are reported. */
  processes: ManagedProcess[];
  /**
   * Commits `count` events/jobs (seq = firstSeq...) in one transaction (or
   * adds them, for a Redis queue); returns the database clock right after.
   */
  prefill(count: number, firstSeq: number): Promise<string>;
  /** The Node producer: emits inside the producer's transaction. */
  emit: EmitInTransaction;
  /** The Node producer: runs after the producer's COMMIT (a dual write). */
  emitAfterCommit?: (seq: number) => Promise<void>;
  /**
   * The pgbench producer's transaction; absent when the event cannot be sent
   * from SQL (a Redis queue: the Node producer then drives it).
   */
  pgbenchScript?: ProducerScript;
  /**
   * Where the commit → handler time goes, for the events whose domain row was
   * written at or after `since`: per stage, the milliseconds of each event.
   * Only systems whose events leave a timestamp on the way (ours: the Redis
   * entry id is the XADD's millisecond on the same machine clock).
   */
  stages?(since: string): Promise<Record<string, number[]>>;
  /** Graceful stop of every process, then any client of its own. Idempotent. */
  stop(): Promise<void>;
}

export interface SystemUnderTest {
  /** `petcover`, `graphile-worker`, `pg-boss`, `bullmq (redis)`. */
  name: string;
  /** How the event reaches the system relative to the producer's commit, for the report. */
  delivery: string;
  /** Whether Redis works for it (its CPU is then counted). */
  usesRedis: boolean;
  /** The settings it runs with, printed in the report. */
  settings: Record<string, string | number | boolean>;
  start(): Promise<RunningSystem>;
}
