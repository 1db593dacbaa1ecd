/**
 * Prometheus metrics of the consumer. Counters are labelled by group, logical
 * stream and event type; lag and pending by group and partition stream.
 */
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';

export interface ConsumerMetrics {
  handled: Counter<'group' | 'stream' | 'event_type'>;
  duplicates: Counter<'group' | 'stream' | 'event_type'>;
  failed: Counter<'group' | 'stream' | 'event_type'>;
  retried: Counter<'group' | 'stream' | 'event_type'>;
  deadLettered: Counter<'group' | 'stream' | 'event_type' | 'reason'>;
  skipped: Counter<'group' | 'stream' | 'event_type'>;
  timedOut: Counter<'group' | 'stream' | 'event_type'>;
  /** Errors of one partition (group creation, reads, claims, settling), by cause. */
  partitionErrors: Counter<'group' | 'stream' | 'cause'>;
  /** Entries whose dead letter Postgres refused even in minimal form (each distinct entry once). */
  stuckEntries: Counter<'group' | 'stream'>;
  /** Partitions the watchdog gave up because they made no progress. */
  watchdogReleases: Counter<'group' | 'stream'>;
  /** Partition leases found lost and taken back between two rounds (the process stalled past the TTL); the worker is replaced. */
  leaseRegains: Counter<'group' | 'stream'>;
  /** Entries parked behind their failing key (issue 19), heads included. */
  parked: Counter<'group' | 'stream' | 'event_type'>;
  /** Parked events, parked keys and halted keys of each partition this process holds. */
  parkedEntries: Gauge<'group' | 'stream'>;
  parkedKeys: Gauge<'group' | 'stream'>;
  haltedKeys: Gauge<'group' | 'stream'>;
  inboxPruned: Counter;
  handlerSeconds: Histogram<'group' | 'event_type'>;
  lag: Gauge<'group' | 'stream'>;
  pending: Gauge<'group' | 'stream'>;
  leasesHeld: Gauge<'group'>;
}

/**
 * Creates the metrics on `registry`. Metric names are fixed, so one registry
 * holds the metrics of one consumer (the app creates one per process).
 */
export function createConsumerMetrics(registry: Registry): ConsumerMetrics {
  const registers = [registry];
  const eventLabels = ['group', 'stream', 'event_type'] as const;
  return {
    handled: new Counter({ name: 'petcover_consumer_handled_total', help: 'Entries whose handler committed', labelNames: eventLabels, registers }),
    duplicates: new Counter({
      name: 'petcover_consumer_duplicates_total',
      help: 'Entries acknowledged without running the handler because the group already processed their event_id',
      labelNames: eventLabels,
      registers,
    }),
    failed: new Counter({ name: 'petcover_consumer_failed_total', help: 'Handler attempts that threw', labelNames: eventLabels, registers }),
    retried: new Counter({ name: 'petcover_consumer_retried_total', help: 'Attempts after a failed one', labelNames: eventLabels, registers }),
    deadLettered: new Counter({
      name: 'petcover_consumer_dead_lettered_total',
      help: 'Entries moved to events.dead_letter',
      labelNames: [...eventLabels, 'reason'],
      registers,
    }),
    skipped: new Counter({
      name: 'petcover_consumer_skipped_total',
      help: 'Entries of an event type this group has no handler for (acknowledged)',
      labelNames: eventLabels,
      registers,
    }),
    timedOut: new Counter({
      name: 'petcover_consumer_handler_timeouts_total',
      help: 'Handler calls abandoned at their deadline (each also counts as failed)',
      labelNames: eventLabels,
      registers,
    }),
    partitionErrors: new Counter({
      name: 'petcover_consumer_partition_errors_total',
      help: 'Errors confined to one partition (group creation, read, claim, settle), by cause',
      labelNames: ['group', 'stream', 'cause'],
      registers,
    }),
    stuckEntries: new Counter({
      name: 'petcover_consumer_stuck_entries_total',
      help: 'Distinct entries that block their partition because even a minimal dead letter was refused',
      labelNames: ['group', 'stream'],
      registers,
    }),
    watchdogReleases: new Counter({
      name: 'petcover_consumer_watchdog_releases_total',
      help: 'Partition leases given up because the partition made no progress for longer than the handler deadline plus the lease TTL',
      labelNames: ['group', 'stream'],
      registers,
    }),
    leaseRegains: new Counter({
      name: 'petcover_consumer_lease_regains_total',
      help: 'Partition leases lost and taken back between two coordination rounds (this process stalled past the lease TTL); the partition worker was replaced',
      labelNames: ['group', 'stream'],
      registers,
    }),
    parked: new Counter({
      name: 'petcover_consumer_parked_total',
      help: 'Entries parked behind their partition key because an earlier event of the key failed (the partition goes on with other keys)',
      labelNames: eventLabels,
      registers,
    }),
    parkedEntries: new Gauge({
      name: 'petcover_consumer_parked_entries',
      help: 'Events parked per partition (waiting behind a failing or halted key), sampled by the partition owner',
      labelNames: ['group', 'stream'],
      registers,
    }),
    parkedKeys: new Gauge({
      name: 'petcover_consumer_parked_keys',
      help: 'Partition keys parked (retrying or halted), sampled by the partition owner',
      labelNames: ['group', 'stream'],
      registers,
    }),
    haltedKeys: new Gauge({
      name: 'petcover_consumer_halted_keys',
      help: 'Partition keys halted (policy halt, out of attempts) until an operator releases or discards their head',
      labelNames: ['group', 'stream'],
      registers,
    }),
    inboxPruned: new Counter({
      name: 'petcover_consumer_inbox_pruned_total',
      help: 'processed_event rows deleted by inbox retention (counted by the replica that pruned)',
      registers,
    }),
    handlerSeconds: new Histogram({
      name: 'petcover_consumer_handler_seconds',
      help: 'Time spent in a handler',
      labelNames: ['group', 'event_type'],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers,
    }),
    lag: new Gauge({ name: 'petcover_consumer_lag', help: 'Entries not yet delivered to the group (XINFO GROUPS lag)', labelNames: ['group', 'stream'], registers }),
    pending: new Gauge({ name: 'petcover_consumer_pending', help: 'Entries delivered but not acknowledged (XPENDING)', labelNames: ['group', 'stream'], registers }),
    leasesHeld: new Gauge({ name: 'petcover_consumer_leases_held', help: 'Partition leases this process holds', labelNames: ['group'], registers }),
  };
}
