/**
 * Prometheus metrics of the publisher, registered on the registry the app
 * passes in (never the global one, so tests and several publishers coexist).
 */
import { Counter, Gauge, type Registry } from 'prom-client';
import type { Sql } from '../db';
import { queueStats, type QueueStat } from './statements';

export interface PublisherMetrics {
  eventsPublished: Counter<'stream'>;
  batches: Counter<'stream'>;
  leasesHeld: Gauge<'stream'>;
  appendErrors: Counter<'stream'>;
  fencedRefusals: Counter<'stream'>;
  leaseWaits: Counter<'stream'>;
  leaseBlocked: Gauge<'stream'>;
  leasesLost: Counter<'stream'>;
  redisDataLoss: Counter<'stream'>;
  foreignDatabaseResets: Counter<'stream'>;
  republished: Counter<'stream'>;
  markedFromRedis: Counter<'stream'>;
  streamFaults: Counter<'stream' | 'cause'>;
  postgresNoAnswer: Counter<'stream' | 'step'>;
  trimmedEntries: Counter<'stream'>;
  prunedRows: Counter;
}

/** How long the queue query may take during a scrape before it is skipped. */
const QUEUE_STATS_TIMEOUT_MS = 1_000;

export function createPublisherMetrics(registry: Registry, sql: Sql): PublisherMetrics {
  const registers = [registry];
  let lastStats: Promise<Awaited<ReturnType<typeof queueStats>> | null> | undefined;
  // One query feeds both queue gauges of a scrape.
  const statsForScrape = () => {
    lastStats ??= Promise.race([
      queueStats(sql).catch(() => null),
      new Promise<null>((resolve) => setTimeout(() => resolve(null), QUEUE_STATS_TIMEOUT_MS).unref()),
    ]).finally(() => setImmediate(() => (lastStats = undefined)));
    return lastStats;
  };
  /** A per-stream gauge filled from the scrape's queue stats. */
  const queueGauge = (name: string, help: string, value: (s: QueueStat) => number) =>
    new Gauge({
      name,
      help,
      labelNames: ['stream'],
      registers,
      async collect() {
        const stats = await statsForScrape();
        if (!stats) return;
        this.reset();
        for (const s of stats) this.set({ stream: s.stream }, value(s));
      },
    });
  queueGauge('petcover_outbox_queued_events', 'Unpublished outbox rows per stream', (s) => s.queued);
  queueGauge('petcover_outbox_oldest_unpublished_age_seconds', 'Age of the oldest unpublished outbox row per stream', (s) => s.oldestAgeSeconds);
  return {
    eventsPublished: new Counter({ name: 'petcover_publisher_events_published_total', help: 'Events appended to Redis and marked published', labelNames: ['stream'], registers }),
    batches: new Counter({ name: 'petcover_publisher_batches_total', help: 'Batches drained', labelNames: ['stream'], registers }),
    leasesHeld: new Gauge({ name: 'petcover_publisher_leases_held', help: '1 while this process holds the publisher lease of a stream', labelNames: ['stream'], registers }),
    appendErrors: new Counter({ name: 'petcover_publisher_append_errors_total', help: 'Failed drain attempts (Redis or Postgres errors)', labelNames: ['stream'], registers }),
    fencedRefusals: new Counter({ name: 'petcover_publisher_fenced_refusals_total', help: 'Appends refused because a newer owner fenced the stream', labelNames: ['stream'], registers }),
    leaseWaits: new Counter({ name: 'petcover_publisher_lease_waits_total', help: 'Times this process found a stream leased by another owner and waited for expiry', labelNames: ['stream'], registers }),
    leaseBlocked: new Gauge({ name: 'petcover_publisher_lease_blocked', help: '1 while a stream with unpublished rows is leased by another owner (normal with replicas; a stuck stream also shows a growing oldest age)', labelNames: ['stream'], registers }),
    leasesLost: new Counter({ name: 'petcover_publisher_leases_lost_total', help: 'Leases found lost while draining (expired, deleted or taken over)', labelNames: ['stream'], registers }),
    redisDataLoss: new Counter({ name: 'petcover_publisher_redis_data_loss_total', help: 'Times a partition stream was found behind what Postgres recorded (Redis lost entries)', labelNames: ['stream'], registers }),
    foreignDatabaseResets: new Counter({ name: 'petcover_publisher_foreign_database_resets_total', help: 'Partition streams found last written from another database (re-created or split database); their fence was taken over', labelNames: ['stream'], registers }),
    republished: new Counter({ name: 'petcover_publisher_republished_events_total', help: 'Published events re-appended because Redis was found behind what Postgres recorded', labelNames: ['stream'], registers }),
    markedFromRedis: new Counter({ name: 'petcover_publisher_marked_from_redis_total', help: 'Rows marked published from Redis entries appended but not yet marked (a crash or failed UPDATE between append and mark)', labelNames: ['stream'], registers }),
    streamFaults: new Counter({ name: 'petcover_publisher_stream_faults_total', help: 'Redis errors of one stream (WRONGTYPE, script error, entry too large), by Redis error code; that stream backs off alone', labelNames: ['stream', 'cause'], registers }),
    postgresNoAnswer: new Counter({
      name: 'petcover_publisher_postgres_no_answer_total',
      help: 'Postgres steps of a drain or lease round given up after postgresAnswerMs without an answer (a frozen backend, a stranded call), by step',
      labelNames: ['stream', 'step'],
      registers,
    }),
    trimmedEntries: new Counter({ name: 'petcover_publisher_trimmed_entries_total', help: 'Redis stream entries trimmed', labelNames: ['stream'], registers }),
    prunedRows: new Counter({ name: 'petcover_publisher_pruned_rows_total', help: 'Published outbox rows pruned after the retention window', registers }),
  };
}
