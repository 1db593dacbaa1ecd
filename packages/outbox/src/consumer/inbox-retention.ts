/**
 * Inbox retention (issue 14): `events.processed_event` gets one row per group
 * and event forever unless pruned. One consumer replica at a time (whoever
 * holds the `maintenance` lease on INBOX_MAINTENANCE_STREAM, any group)
 * deletes rows older than the retention, in small batches.
 *
 * Why the retention must exceed the outbox's: an inbox row is what makes a
 * re-delivered event a duplicate. Re-deliveries come from the outbox (an
 * `events outbox replay` of a time range, the publisher's recovery after
 * Redis data loss), which holds published rows for its own retention
 * (7 days by default). The inbox therefore keeps rows for longer (default 8
 * days: the outbox's 7 plus a day of margin for clock skew and a replay that
 * runs late), and on top never deletes the row of an event the outbox still
 * holds, whatever its age.
 */
import type { Logger } from 'pino';
import type { Sql } from '../db';
import { acquireLease, releaseLease } from '../lease/lease';
import { sleep } from '../backoff';
import type { ConsumerMetrics } from './metrics';

/** Lease row (stream_name, role `maintenance`) under which one consumer replica prunes the inbox. */
export const INBOX_MAINTENANCE_STREAM = 'stream:events:inbox';

export const INBOX_RETENTION_DEFAULTS = {
  /** The outbox's default retention (7 days) plus one day of margin; see the header. */
  retentionMs: 8 * 24 * 3_600_000,
  intervalMs: 60_000,
  /** Rows per DELETE: a few thousand keeps each transaction short. */
  batchSize: 2_000,
} as const;

/**
 * Deletes up to `limit` processed_event rows older than `retentionMs` whose
 * event the outbox no longer holds, oldest first. Call again while it
 * returns `limit`. Idempotent; safe to run from several processes (each row
 * is deleted once).
 *
 * SQL: DELETE FROM events.processed_event WHERE (group_name, event_id) IN (
 *        SELECT ... WHERE processed_at < now() - retention
 *          AND NOT EXISTS (outbox row with that event_id)
 *          AND NOT EXISTS (parked_event of that group and event: still to run) ORDER BY processed_at LIMIT n)
 */
export async function pruneInboxBatch(sql: Sql, retentionMs: number, limit: number): Promise<number> {
  const result = await sql`
    DELETE FROM events.processed_event WHERE (group_name, event_id) IN (
      SELECT p.group_name, p.event_id FROM events.processed_event p
      WHERE p.processed_at < now() - make_interval(secs => ${retentionMs}::float8 / 1000)
        AND NOT EXISTS (SELECT 1 FROM events.outbox_event o WHERE o.event_id = p.event_id)
        AND NOT EXISTS (SELECT 1 FROM events.parked_event pe WHERE pe.group_name = p.group_name AND pe.event_id = p.event_id)
      ORDER BY p.processed_at
      LIMIT ${limit})`;
  return result.count;
}

export interface InboxPrunerOptions {
  sql: Sql;
  ownerId: string;
  logger: Logger;
  metrics: ConsumerMetrics;
  retentionMs: number;
  intervalMs: number;
  batchSize: number;
}

/**
 * The pruning loop: every `intervalMs`, take (or renew) the maintenance
 * lease and, if held, prune in batches until a batch comes back short.
 * Failures are logged once per change and retried next round.
 */
export function startInboxPruner(options: InboxPrunerOptions): { stop(): Promise<void> } {
  const abort = new AbortController();
  const lease = { streamName: INBOX_MAINTENANCE_STREAM, role: 'maintenance' as const, ownerId: options.ownerId };
  const log = options.logger.child({ component: 'inbox-retention' });
  let failing = false;
  const loop = (async () => {
    while (!abort.signal.aborted) {
      try {
        const grant = await acquireLease(options.sql, { ...lease, ttlMs: options.intervalMs * 3 });
        if (grant) {
          let total = 0;
          for (;;) {
            const deleted = await pruneInboxBatch(options.sql, options.retentionMs, options.batchSize);
            total += deleted;
            if (deleted < options.batchSize || abort.signal.aborted) break;
          }
          if (total > 0) {
            options.metrics.inboxPruned.inc(total);
            log.info({ deleted: total, retentionHours: options.retentionMs / 3_600_000 }, 'pruned processed_event rows past the inbox retention');
          }
        }
        if (failing) log.info('inbox pruning works again');
        failing = false;
      } catch (error) {
        if (!failing) log.warn({ err: error }, 'inbox pruning failed; retrying next round');
        failing = true;
      }
      await sleep(options.intervalMs, abort.signal);
    }
  })();
  return {
    async stop() {
      abort.abort();
      await loop;
      try {
        await releaseLease(options.sql, lease);
      } catch {
        // Postgres down at stop: the lease expires by itself.
      }
    },
  };
}
