/**
 * `events outbox replay`: mark the published rows of one stream in a time
 * range or an outbox-id range as unpublished again, so the running publisher
 * appends them again, in outbox-id order relative to each other. Every replay
 * re-delivers: the publisher keeps no record in Redis that could skip a row
 * (its appends are a compare-and-set on the stream's end, not a dedupe set),
 * and consumers dedupe on (group, event_id), so a group that already handled
 * an event acknowledges it without running its handler again.
 *
 * A replayed row is appended after everything already in the stream: when a
 * newer row of the same partition key was published before, a consumer sees
 * the older event after the newer one. The result says which keys, so the
 * operator knows (a group that never handled the older event applies it late).
 */
import type { Sql } from '../db';
import { OUTBOX_NOTIFY_CHANNEL } from '../enqueue';
import { assertStreamName } from '../streams';

export interface OutboxReplayResult {
  stream: string;
  /** Rows set back to unpublished. */
  rows: number;
  firstOutboxId: string | null;
  lastOutboxId: string | null;
  /** Partition keys with a newer row already published (not replayed): the replay lands after it. */
  keysWithNewerEvents: string[];
}

export type OutboxReplayRange = { since: Date; until?: Date } | { fromId: bigint; toId?: bigint };

/**
 * Sets `published_at` (and the recorded Redis entry id) back to NULL for the
 * published rows of `stream` in the range — published at or after `since`
 * (and before `until`), or with `fromId <= id <= toId` — and wakes publishers
 * with NOTIFY, in one transaction. Idempotent: a second run finds the rows
 * unpublished (or published again, and re-sends them again).
 * Throws OutboxValidationError for a malformed stream name.
 */
export async function replayOutbox(sql: Sql, options: { stream: string } & OutboxReplayRange): Promise<OutboxReplayResult> {
  assertStreamName(options.stream);
  const byTime = 'since' in options;
  const since = byTime ? options.since.toISOString() : null;
  const until = byTime ? (options.until?.toISOString() ?? null) : null;
  const fromId = byTime ? null : String(options.fromId);
  const toId = byTime || options.toId === undefined ? null : String(options.toId);
  return sql.begin(async (tx) => {
    const [row] = await tx<{ rows: string; first_id: string | null; last_id: string | null; keys: string[] | null }[]>`
      WITH replayed AS (
        UPDATE events.outbox_event SET published_at = NULL, redis_entry_id = NULL
        WHERE stream_name = ${options.stream}
          AND published_at IS NOT NULL
          AND (${since}::timestamptz IS NULL OR published_at >= ${since}::timestamptz)
          AND (${until}::timestamptz IS NULL OR published_at < ${until}::timestamptz)
          AND (${fromId}::bigint IS NULL OR id >= ${fromId}::bigint)
          AND (${toId}::bigint IS NULL OR id <= ${toId}::bigint)
        RETURNING id, partition_key),
      overtaken AS (
        SELECT DISTINCT r.partition_key FROM replayed r
        WHERE EXISTS (
          SELECT 1 FROM events.outbox_event n
          WHERE n.stream_name = ${options.stream} AND n.partition_key = r.partition_key
            AND n.id > r.id AND n.published_at IS NOT NULL
            AND n.id NOT IN (SELECT id FROM replayed)))
      SELECT (SELECT count(*) FROM replayed)::text AS rows, (SELECT min(id) FROM replayed)::text AS first_id,
             (SELECT max(id) FROM replayed)::text AS last_id, (SELECT array_agg(partition_key ORDER BY partition_key) FROM overtaken) AS keys`;
    await tx`SELECT pg_notify(${OUTBOX_NOTIFY_CHANNEL}, ${options.stream})`;
    return {
      stream: options.stream,
      rows: Number(row?.rows ?? 0),
      firstOutboxId: row?.first_id ?? null,
      lastOutboxId: row?.last_id ?? null,
      keysWithNewerEvents: row?.keys ?? [],
    };
  }) as Promise<OutboxReplayResult>;
}
