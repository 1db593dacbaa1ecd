/**
 * What the publisher's parts (lease keeper, stream drainers, maintenance)
 * share: clients, resolved config, metrics, and who this process is.
 */
import type { RedisClient } from '@petcover/service-kit';
import type { Logger } from 'pino';
import type { Sql } from '../db';
import type { StreamPartitions } from '../streams';
import type { PublisherMetrics } from './metrics';
import type { StreamWriter } from './redis-scripts';
import type { DrainRow } from './statements';
import type { WakeLocks } from './wake-lock';

export interface PublisherHooks {
  /** Called with a selected batch right before it is appended. Test-only fault injection. */
  beforeAppend?: (stream: string, rows: readonly DrainRow[]) => void;
  /**
   * Called after a batch was appended to Redis and before it is marked
   * published. Test-only fault injection (the app wires `PETCOVER_FAULT`).
   */
  afterAppend?: (stream: string, rows: readonly DrainRow[]) => void;
  /** Each wake state a drainer enters (awake, settling, settled, asleep) and each settling poll. Test-only. */
  onWakeState?: (stream: string, state: string) => void;
}

export interface PublisherConfig {
  batchSize: number;
  batchMaxBytes: number;
  pollIntervalMs: number;
  /** While a stream has traffic: the pause between a batch that was not full and the next select. */
  gatherMs: number;
  /** How long an awake drainer keeps polling without finding rows before it goes to sleep on NOTIFY. */
  wakeLingerMs: number;
  leaseTtlMs: number;
  trimIntervalMs: number;
  keepAcknowledgedMs: number;
  orphanMaxAgeMs: number;
  pruneIntervalMs: number;
  retentionMs: number;
  pruneBatchSize: number;
  /** How often a prune pass starts from the bottom of the table instead of where the last one stopped. */
  pruneFullSweepIntervalMs: number;
  stopTimeoutMs: number;
  /**
   * How long one Postgres step of a drain or of the lease round (a select, a
   * mark-published UPDATE, a lease renewal) may go unanswered before it is
   * given up as failed (see PUBLISHER_DEFAULTS.postgresAnswerMs).
   */
  postgresAnswerMs: number;
}

export interface PublisherContext {
  sql: Sql;
  redis: RedisClient;
  /** Carries the owner id on every line. */
  log: Logger;
  metrics: PublisherMetrics;
  config: PublisherConfig;
  ownerId: string;
  keyPrefix: string;
  partitions: StreamPartitions | undefined;
  hooks: PublisherHooks | undefined;
  /** This process's wake locks (see wake-lock.ts). */
  wakeLocks: WakeLocks;
  /** The writer of a lease: its token and this database's identity (read before the first lease). */
  writerWith(fencingToken: string): StreamWriter;
  /** A stamp or append found the stream last written from another database: count it, warn once per stream. */
  noteForeignDatabase(stream: string, redisKey: string, previousDatabaseId: string | undefined): void;
}
