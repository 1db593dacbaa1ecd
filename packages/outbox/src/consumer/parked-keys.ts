/**
 * Operator actions on parked keys (issue 19): list them with their head
 * event and error, release one (retry its head now, with fresh attempts,
 * halted or not), or discard its head (recorded as a dead letter with status
 * `discarded`, its inbox row kept so a re-delivery stays a duplicate) so the
 * key's next event runs. The partition's lease holder does the running; these
 * only change the rows, each in one transaction that locks the key row, so
 * they serialise with a consumer's transaction on the same key (it reads the
 * key FOR SHARE).
 */
import { sql as drizzleSql } from 'drizzle-orm';
import type { Database, Sql } from '../db';
import { landDeadLetter, type NewDeadLetter } from './dead-letters';
import { settleParkedKey } from './parking';
import { isDatabaseUnavailableError } from './settle-entries';

/** Names one parked key: group, partition stream and partition key. */
export interface ParkedKeyRef {
  group: string;
  /** Partition stream, as `events key list` prints it (the stream itself when it has one partition). */
  stream: string;
  key: string;
}

export class ParkedKeyNotFoundError extends Error {
  constructor(readonly ref: ParkedKeyRef) {
    super(`no parked key ${JSON.stringify(ref.key)} in group ${ref.group} on ${ref.stream} (events key list shows the parked keys)`);
    this.name = 'ParkedKeyNotFoundError';
  }
}

export interface ParkedKeyRow {
  group: string;
  stream: string;
  key: string;
  state: 'retrying' | 'halted';
  /** Failed attempts of the head so far. */
  attempts: number;
  lastError: string | null;
  firstFailedAt: string | null;
  /** Null when halted. */
  nextAttemptAt: string | null;
  /**
   * Seconds since the next attempt fell due (database clock), while the key
   * is retrying and due; null when halted or not due yet. The partition's
   * lease holder retries a due key within about a second, so a large value
   * means nobody is retrying this partition (see `parked_key_overdue`).
   */
  overdueSeconds: number | null;
  haltedAt: string | null;
  parkedAt: string;
  /** Events parked under the key, the head included. */
  parkedEvents: number;
  head: { eventId: string; eventType: string; entryId: string; outboxId: string } | null;
}

export interface ParkedKeyFilter {
  group?: string;
  /** A logical stream (all its partitions) or one partition stream. */
  stream?: string;
  haltedOnly?: boolean;
  /** One partition key (e.g. the key an operator is about to release). */
  key?: string;
  limit?: number;
}

interface ParkedKeyDbRow {
  group_name: string;
  stream_name: string;
  partition_key: string;
  attempts: number;
  last_error: string | null;
  first_failed_at: Date | null;
  next_attempt_at: Date;
  overdue_s: number | null;
  halted_at: Date | null;
  parked_at: Date;
  parked_events: number;
  head_event_id: string | null;
  head_event_type: string | null;
  head_entry_id: string | null;
  head_outbox_id: string | null;
}

/**
 * Parked keys, halted first (longest parked first), then retrying keys by
 * next attempt (the most overdue first, so a `limit` never hides an overdue
 * key behind keys that are merely waiting), each with its head event (the
 * oldest parked one) and how many events wait under it. Read-only.
 *
 * SQL: SELECT k.*, overdue (on now()), count and head (LATERAL, first by id) FROM events.parked_key k
 *      WHERE filters ORDER BY halted_at IS NULL, next_attempt_at of retrying keys, parked_at LIMIT $limit
 */
export async function listParkedKeys(sql: Sql, filter: ParkedKeyFilter = {}): Promise<ParkedKeyRow[]> {
  const limit = filter.limit ?? 100;
  const stream = filter.stream ?? null;
  const rows = await sql<ParkedKeyDbRow[]>`
    SELECT k.group_name, k.stream_name, k.partition_key, k.attempts, k.last_error, k.first_failed_at, k.next_attempt_at,
           CASE WHEN k.halted_at IS NULL AND k.next_attempt_at <= now() THEN extract(epoch FROM now() - k.next_attempt_at)::float8 END AS overdue_s,
           k.halted_at, k.parked_at, c.parked_events, h.event_id::text AS head_event_id, h.event_type AS head_event_type,
           h.redis_entry_id AS head_entry_id, h.outbox_id AS head_outbox_id
    FROM events.parked_key k
    CROSS JOIN LATERAL (SELECT count(*)::int AS parked_events FROM events.parked_event e
      WHERE e.group_name = k.group_name AND e.stream_name = k.stream_name AND e.partition_key = k.partition_key) c
    LEFT JOIN LATERAL (SELECT e.event_id, e.event_type, e.redis_entry_id, e.outbox_id FROM events.parked_event e
      WHERE e.group_name = k.group_name AND e.stream_name = k.stream_name AND e.partition_key = k.partition_key
      ORDER BY e.id LIMIT 1) h ON true
    WHERE (${filter.group ?? null}::text IS NULL OR k.group_name = ${filter.group ?? null})
      AND (${stream}::text IS NULL OR k.stream_name = ${stream} OR k.stream_name LIKE ${`${stream ?? ''}:p%`})
      AND (NOT ${filter.haltedOnly ?? false}::boolean OR k.halted_at IS NOT NULL)
      AND (${filter.key ?? null}::text IS NULL OR k.partition_key = ${filter.key ?? null})
    ORDER BY k.halted_at IS NULL, CASE WHEN k.halted_at IS NULL THEN k.next_attempt_at END, k.parked_at, k.group_name, k.stream_name, k.partition_key
    LIMIT ${limit}`;
  const iso = (d: Date | null) => (d === null ? null : new Date(d).toISOString());
  return rows.map((r) => ({
    group: r.group_name,
    stream: r.stream_name,
    key: r.partition_key,
    state: r.halted_at === null ? 'retrying' : 'halted',
    attempts: r.attempts,
    lastError: r.last_error,
    firstFailedAt: iso(r.first_failed_at),
    nextAttemptAt: r.halted_at === null ? iso(r.next_attempt_at) : null,
    overdueSeconds: r.overdue_s === null ? null : Math.round(r.overdue_s * 10) / 10,
    haltedAt: iso(r.halted_at),
    parkedAt: iso(r.parked_at)!,
    parkedEvents: r.parked_events,
    head: r.head_event_id === null ? null : { eventId: r.head_event_id, eventType: r.head_event_type!, entryId: r.head_entry_id!, outboxId: r.head_outbox_id! },
  }));
}

/**
 * Retries the key's head now, with fresh attempts (a halted key is un-halted).
 * The partition's owner picks it up within its recheck interval (1 s).
 * Throws ParkedKeyNotFoundError.
 *
 * SQL: UPDATE events.parked_key SET halted_at = NULL, attempts = 0, next_attempt_at = now() WHERE <key> RETURNING 1
 */
export async function releaseParkedKey(db: Database, ref: ParkedKeyRef): Promise<void> {
  const rows = await db.execute(drizzleSql`
    UPDATE events.parked_key SET halted_at = NULL, attempts = 0, next_attempt_at = now()
    WHERE group_name = ${ref.group} AND stream_name = ${ref.stream} AND partition_key = ${ref.key}
    RETURNING 1`);
  if (rows.length === 0) throw new ParkedKeyNotFoundError(ref);
}

/**
 * Discards the key's head: a dead letter with status `discarded` (who and
 * when in resolved_by / resolved_at), the parked row deleted, and the key
 * released, or its next event due now with fresh attempts. Returns the
 * discarded event id (null: nothing was parked under the key any more) and
 * whether the key was released. Throws ParkedKeyNotFoundError.
 */
export async function discardParkedHead(db: Database, ref: ParkedKeyRef, options: { by: string }): Promise<{ eventId: string | null; released: boolean }> {
  return db.transaction(async (tx) => {
    const [key] = (await tx.execute(drizzleSql`
      SELECT attempts, last_error, first_failed_at FROM events.parked_key
      WHERE group_name = ${ref.group} AND stream_name = ${ref.stream} AND partition_key = ${ref.key}
      FOR UPDATE`)) as unknown as { attempts: number; last_error: string | null; first_failed_at: string | null }[];
    if (!key) throw new ParkedKeyNotFoundError(ref);
    const [head] = (await tx.execute(drizzleSql`
      DELETE FROM events.parked_event WHERE id = (
        SELECT id FROM events.parked_event
        WHERE group_name = ${ref.group} AND stream_name = ${ref.stream} AND partition_key = ${ref.key}
        ORDER BY id LIMIT 1)
      RETURNING redis_entry_id, event_id::text AS event_id, event_type, payload, headers`)) as unknown as {
      redis_entry_id: string;
      event_id: string;
      event_type: string;
      payload: string;
      headers: string;
    }[];
    // Nothing parked under it any more: just release the key.
    if (!head) return { eventId: null, released: await settleParkedKey(tx, { group: ref.group, partitionStream: ref.stream }, ref.key) };
    const letter: NewDeadLetter = {
      groupName: ref.group,
      streamName: ref.stream,
      redisEntryId: head.redis_entry_id,
      eventId: head.event_id,
      eventType: head.event_type,
      partitionKey: ref.key,
      payload: JSON.parse(head.payload) as unknown,
      headers: JSON.parse(head.headers) as Record<string, string>,
      rawEntry: null,
      errorMessage: key.last_error ?? 'discarded by an operator',
      errorStack: null,
      attempts: Math.max(1, key.attempts),
      firstFailedAt: key.first_failed_at === null ? null : new Date(key.first_failed_at),
    };
    await landDeadLetter(tx, letter, () => ({ event_id: head.event_id, type: head.event_type, partition_key: ref.key, payload: head.payload, headers: head.headers }), isDatabaseUnavailableError);
    await tx.execute(drizzleSql`
      UPDATE events.dead_letter SET status = 'discarded', resolved_at = now(), resolved_by = ${options.by}
      WHERE group_name = ${ref.group} AND stream_name = ${ref.stream} AND redis_entry_id = ${head.redis_entry_id}`);
    const released = await settleParkedKey(tx, { group: ref.group, partitionStream: ref.stream }, ref.key);
    return { eventId: head.event_id, released };
  });
}
