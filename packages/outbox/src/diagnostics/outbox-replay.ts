/**
 * `events outbox replay`: after Redis lost data, mark the rows published in a
 * time range as unpublished again so the running publisher re-sends them in
 * outbox id order. Consumers dedupe on (group, event_id), so an event that
 * had already been handled is acknowledged without running its handler.
 *
 * Caveat: the publisher keeps its own record of what it appended (its
 * idempotent-append dedupe). A row still inside that record is not appended a
 * second time; after a Redis data loss that record was lost with the data, so
 * the rows that matter are re-sent.
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
}

/**
 * Sets `published_at` back to NULL for the rows of `stream` published at or
 * after `since` (and before `until`, when given), and wakes publishers with
 * NOTIFY, in one transaction. Idempotent: a second run finds the rows already
 * unpublished (or published again, and re-sends them again).
 * Throws OutboxValidationError for a malformed stream name.
 */
export async function replayPublishedSince(
  sql: Sql,
  options: { stream: string; since: Date; until?: Date },
): Promise<OutboxReplayResult> {
  assertStreamName(options.stream);
  const since = options.since.toISOString();
  const until = options.until?.toISOString() ?? null;
  return sql.begin(async (tx) => {
    const [row] = await tx<{ rows: string; first_id: string | null; last_id: string | null }[]>`
      WITH replayed AS (
        UPDATE events.outbox_event SET published_at = NULL
        WHERE stream_name = ${options.stream}
          AND published_at IS NOT NULL
          AND published_at >= ${since}::timestamptz
          AND (${until}::timestamptz IS NULL OR published_at < ${until}::timestamptz)
        RETURNING id)
      SELECT count(*)::text AS rows, min(id)::text AS first_id, max(id)::text AS last_id FROM replayed`;
    await tx`SELECT pg_notify(${OUTBOX_NOTIFY_CHANNEL}, ${options.stream})`;
    return {
      stream: options.stream,
      rows: Number(row?.rows ?? 0),
      firstOutboxId: row?.first_id ?? null,
      lastOutboxId: row?.last_id ?? null,
    };
  }) as Promise<OutboxReplayResult>;
}
