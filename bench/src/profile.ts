/**
 * How big each scenario is. `full` is what the README quotes (400 s on
 * a 2-core machine before the live runs of five systems at two rates were
 * added, which add about five minutes); `quick` checks the whole
 * harness end to end in about three minutes, with figures too small to quote.
 */
import { PUBLISHER_DEFAULTS } from '@petcover/outbox';
import type { BenchHandlerMode } from './handler-module';

export interface BenchProfile {
  name: 'full' | 'quick';
  /** Seconds per pgbench / redis-benchmark measurement. */
  limitSeconds: number;
  redisBenchmarkRequests: number;
  relayEvents: number;
  relayStreamCounts: number[];
  drainEvents: number;
  drainTimeoutMs: number;
  latencyRatePerSec: number;
  /**
   * A second latency run at a rate this machine sustains without saturating
   * (measured after the main one): the pipeline's own latency, without queueing.
   */
  unsaturatedLatencyRatePerSec: number;
  latencyDurationMs: number;
  /** Events committed in this first part of the run are left out of the histogram. */
  latencyWarmupMs: number;
  producerConnections: number;
  /** Live traffic (pgbench open loop): the offered rates, each run on a fresh system. */
  liveRates: number[];
  /** Seconds of each live run left out of the figures (whole seconds: pgbench -T). */
  liveWarmupSeconds: number;
  /** Seconds of each live run that are measured. */
  liveSeconds: number;
  /** `enqueue` calls timed for its client CPU per call. */
  enqueueCpuCalls: number;
  keepingUpRates: number[];
  keepingUpStepMs: number;
  failoverRatePerSec: number;
  /** Lease TTL of the publishers in the failover scenario: a SIGKILL is recovered after about this long. */
  failoverLeaseTtlSeconds: number;
  /**
   * Settings of our apps in every scenario. `batchSize` is the consumer's
   * (entries per read and per transaction); `publisherBatchSize` the
   * publisher's rows per select, its shipped default (1,000, as the batched
   * INSERT limit's 1,000-row statements it is compared with); `handler` is
   * the bench handler's form (one INSERT per run of events, or one per
   * event; see handler-module.ts).
   */
  petcover: { partitions: number; concurrency: number; batchSize: number; publisherBatchSize: number; pollIntervalSeconds: number; leaseTtlSeconds: number; handler: BenchHandlerMode };
  peers: { concurrency: number; pgBossBatchSize: number };
}

const shared = {
  producerConnections: 4,
  liveRates: [500, 1000],
  latencyRatePerSec: 1000,
  unsaturatedLatencyRatePerSec: 200,
  failoverRatePerSec: 200,
  petcover: { partitions: 4, concurrency: 4, batchSize: 500, publisherBatchSize: PUBLISHER_DEFAULTS.batchSize, pollIntervalSeconds: 1, leaseTtlSeconds: 30, handler: 'batch' as BenchHandlerMode },
  peers: { concurrency: 4, pgBossBatchSize: 250 },
};

export const FULL_PROFILE: BenchProfile = {
  ...shared,
  name: 'full',
  limitSeconds: 5,
  redisBenchmarkRequests: 100_000,
  relayEvents: 200_000,
  relayStreamCounts: [1, 8],
  drainEvents: 100_000,
  drainTimeoutMs: 90_000,
  latencyDurationMs: 30_000,
  latencyWarmupMs: 2_000,
  liveWarmupSeconds: 3,
  liveSeconds: 15,
  enqueueCpuCalls: 5000,
  keepingUpRates: [500, 1000, 1500, 2000, 2500, 3000, 3500, 4000, 5000, 6000],
  keepingUpStepMs: 20_000,
  failoverLeaseTtlSeconds: 5,
};

export const QUICK_PROFILE: BenchProfile = {
  ...shared,
  name: 'quick',
  limitSeconds: 1,
  redisBenchmarkRequests: 20_000,
  relayEvents: 10_000,
  relayStreamCounts: [1, 8],
  drainEvents: 3_000,
  drainTimeoutMs: 15_000,
  latencyDurationMs: 3_000,
  latencyWarmupMs: 500,
  liveWarmupSeconds: 1,
  liveSeconds: 2,
  enqueueCpuCalls: 300,
  keepingUpRates: [250, 500],
  // Whole seconds: pgbench -T.
  keepingUpStepMs: 3_000,
  failoverLeaseTtlSeconds: 2,
};

export const SCENARIOS = ['limits', 'relay', 'drain', 'latency', 'keeping-up', 'failover', 'peers'] as const;
export type ScenarioName = (typeof SCENARIOS)[number];
