/**
 * Dead letters: what a consumer group could not handle, and the operator
 * actions on them (replay through the outbox, discard, list).
 *
 * `stream_name` of a dead letter is the PARTITION stream the entry came from
 * (e.g. `stream:a:b:p2`, or the stream itself when it has one partition):
 * Redis entry ids are only unique within one partition, and the unique key is
 * (group_name, stream_name, redis_entry_id). Replay derives the logical stream.
 */
import { sql as drizzleSql } from 'drizzle-orm';
import type { Database, Sql, Transaction } from '../db';
import { enqueue } from '../enqueue';
import { logicalStreamOf } from '../streams';
import { databaseErrorOf } from '../errors';
import type { DeadLetterStatus } from '../schema';

export class DeadLetterNotFoundError extends Error {
  constructor(readonly deadLetterId: string) {
    super(`dead letter ${deadLetterId} does not exist`);
    this.name = 'DeadLetterNotFoundError';
  }
}

/** The dead letter is not in a state that allows the action (e.g. already replayed). */
export class DeadLetterStateError extends Error {
  constructor(
    readonly deadLetterId: string,
    readonly status: DeadLetterStatus,
    action: string,
    reason = `its status is ${status}, only dead letters with status dead can be ${action}`,
  ) {
    super(`dead letter ${deadLetterId} cannot be ${action}: ${reason}`);
    this.name = 'DeadLetterStateError';
  }
}

export interface DeadLetterRow {
  id: string;
  groupName: string;
  /** Partition stream the entry came from. */
  streamName: string;
  redisEntryId: string;
  eventId: string | null;
  eventType: string | null;
  partitionKey: string | null;
  payload: unknown;
  headers: Record<string, string> | null;
  rawEntry: Record<string, string> | null;
  errorMessage: string;
  errorStack: string | null;
  attempts: number;
  firstFailedAt: Date;
  deadLetteredAt: Date;
  status: DeadLetterStatus;
  resolvedAt: Date | null;
  resolvedBy: string | null;
}

/** What the consumer records; the table fills in id, dead_lettered_at, status and resolution. */
export type NewDeadLetter = Omit<DeadLetterRow, 'id' | 'firstFailedAt' | 'deadLetteredAt' | 'status' | 'resolvedAt' | 'resolvedBy'> & {
  /** Null: now (the entry failed for the first time in this transaction). */
  firstFailedAt: Date | null;
};

/**
 * Records a dead letter inside `tx`. Idempotent: a crash between commit and
 * XACK redelivers the entry, and the unique (group, stream, entry id) key makes
 * the second insert a no-op. Returns true when a row was inserted.
 *
 * SQL: INSERT ... ON CONFLICT (group_name, stream_name, redis_entry_id) DO NOTHING.
 */
export async function recordDeadLetter(tx: Transaction, letter: NewDeadLetter): Promise<boolean> {
  const json = (value: unknown) => (value === null || value === undefined ? null : JSON.stringify(value));
  const rows = await tx.execute(drizzleSql`
    INSERT INTO events.dead_letter
      (group_name, stream_name, redis_entry_id, event_id, event_type, partition_key, payload, headers, raw_entry,
       error_message, error_stack, attempts, first_failed_at)
    VALUES (${letter.groupName}, ${letter.streamName}, ${letter.redisEntryId}, ${letter.eventId}::uuid, ${letter.eventType},
       ${letter.partitionKey}, ${json(letter.payload)}::jsonb, ${json(letter.headers)}::jsonb, ${json(letter.rawEntry)}::jsonb,
       ${letter.errorMessage}, ${letter.errorStack}, ${letter.attempts},
       coalesce(${letter.firstFailedAt?.toISOString() ?? null}::timestamptz, now()))
    ON CONFLICT (group_name, stream_name, redis_entry_id) DO NOTHING
    RETURNING id`);
  return rows.length > 0;
}

/** Even the minimal dead letter was refused: the entry stays pending and its partition is stuck on it. */
export class DeadLetterRefusedError extends Error {
  constructor(
    readonly partitionStream: string,
    readonly entryId: string,
    cause: unknown,
  ) {
    super(`dead letter for entry ${entryId} of ${partitionStream} was refused, also in its minimal form: ${(cause as Error)?.message ?? String(cause)}`, { cause });
    this.name = 'DeadLetterRefusedError';
  }
}

/** Postgres text and jsonb refuse NUL (U+0000); written as the six characters `\u0000` instead. */
export function withoutNul(text: string): string {
  return text.includes('\u0000') ? text.split('\u0000').join('\\u0000') : text;
}

/**
 * Where a dead letter went: `full` row, `minimal` row (the full one was
 * refused, e.g. a payload with NUL that jsonb rejects), or `exists` (the same
 * entry was dead-lettered before).
 */
export type DeadLetterLanding = 'full' | 'minimal' | 'exists';

/**
 * A dead letter that always lands (issue 14): the full row first, inside a
 * savepoint; if Postgres refuses it for its content (anything but a lost
 * connection), a minimal row: group, stream, entry id, event id, the entry's
 * fields as escaped JSON text in `raw_entry`, and the error with the reason
 * the full row was refused. Throws DeadLetterRefusedError if even that is
 * refused (the caller keeps the entry pending and reports the partition
 * stuck), and connection errors unchanged.
 */
export async function landDeadLetter(
  tx: Transaction,
  letter: NewDeadLetter,
  rawFields: () => Record<string, string>,
  isConnectionError: (error: unknown) => boolean,
): Promise<DeadLetterLanding> {
  let refusal: unknown;
  try {
    return (await tx.transaction((savepoint) => recordDeadLetter(savepoint, letter))) ? 'full' : 'exists';
  } catch (error) {
    if (isConnectionError(error)) throw error;
    refusal = error;
  }
  const eventId = letter.eventId !== null && /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(letter.eventId) ? letter.eventId : null;
  const refused = databaseErrorOf(refusal) as Error;
  const reason = `the full dead letter was refused (${withoutNul(refused?.message ?? String(refused))}); raw_entry holds the entry as escaped text`;
  const minimal: NewDeadLetter = {
    ...letter,
    eventId,
    eventType: letter.eventType === null ? null : withoutNul(letter.eventType),
    partitionKey: letter.partitionKey === null ? null : withoutNul(letter.partitionKey),
    payload: null,
    headers: null,
    // JSON text of the fields: a NUL in them is already the six characters \u0000 there.
    rawEntry: { escaped: JSON.stringify(rawFields()) },
    errorMessage: `${withoutNul(letter.errorMessage)}; ${reason}`,
    errorStack: letter.errorStack === null ? null : withoutNul(letter.errorStack),
  };
  try {
    return (await tx.transaction((savepoint) => recordDeadLetter(savepoint, minimal))) ? 'minimal' : 'exists';
  } catch (error) {
    if (isConnectionError(error)) throw error;
    throw new DeadLetterRefusedError(letter.streamName, letter.redisEntryId, databaseErrorOf(error));
  }
}

function normaliseId(id: string | bigint): string {
  const text = String(id).trim();
  if (!/^\d+$/.test(text)) throw new DeadLetterNotFoundError(text);
  return text;
}

interface DeadLetterDbRow {
  id: string;
  group_name: string;
  stream_name: string;
  redis_entry_id: string;
  event_id: string | null;
  event_type: string | null;
  partition_key: string | null;
  payload: unknown;
  headers: Record<string, string> | null;
  raw_entry: Record<string, string> | null;
  error_message: string;
  error_stack: string | null;
  attempts: number;
  first_failed_at: string | Date;
  dead_lettered_at: string | Date;
  status: DeadLetterStatus;
  resolved_at: string | Date | null;
  resolved_by: string | null;
}

const SELECT_COLUMNS = `id::text AS id, group_name, stream_name, redis_entry_id, event_id::text AS event_id, event_type,
  partition_key, payload, headers, raw_entry, error_message, error_stack, attempts, first_failed_at, dead_lettered_at,
  status, resolved_at, resolved_by`;

function toRow(row: DeadLetterDbRow): DeadLetterRow {
  return {
    id: row.id,
    groupName: row.group_name,
    streamName: row.stream_name,
    redisEntryId: row.redis_entry_id,
    eventId: row.event_id,
    eventType: row.event_type,
    partitionKey: row.partition_key,
    payload: row.payload,
    headers: row.headers,
    rawEntry: row.raw_entry,
    errorMessage: row.error_message,
    errorStack: row.error_stack,
    attempts: Number(row.attempts),
    firstFailedAt: new Date(row.first_failed_at),
    deadLetteredAt: new Date(row.dead_lettered_at),
    status: row.status,
    resolvedAt: row.resolved_at === null ? null : new Date(row.resolved_at),
    resolvedBy: row.resolved_by,
  };
}

export interface DeadLetterFilter {
  group?: string;
  type?: string;
  status?: DeadLetterStatus;
  /** Default 100, at most 10,000. */
  limit?: number;
  /** Page cursor: only letters with a smaller id (newest first) or a larger one (`oldestFirst`). */
  after?: string;
  /** Ascending id order (replay order) instead of newest first. */
  oldestFirst?: boolean;
}

/**
 * Dead letters matching `filter`, newest first by numeric id (or oldest
 * first), `limit` at a time from the `after` cursor. Read-only.
 */
export async function listDeadLetters(sql: Sql, filter: DeadLetterFilter = {}): Promise<DeadLetterRow[]> {
  const limit = Math.min(Math.max(1, Math.trunc(filter.limit ?? 100)), 10_000);
  const after = filter.after === undefined ? null : normaliseId(filter.after);
  const ascending = filter.oldestFirst === true;
  // `dead_letter.id`, the bigint: a bare `id` would sort the ::text output column (9 before 10).
  const rows = await sql<DeadLetterDbRow[]>`
    SELECT ${sql.unsafe(SELECT_COLUMNS)} FROM events.dead_letter
    WHERE (${filter.group ?? null}::text IS NULL OR group_name = ${filter.group ?? null})
      AND (${filter.type ?? null}::text IS NULL OR event_type = ${filter.type ?? null})
      AND (${filter.status ?? null}::text IS NULL OR status = ${filter.status ?? null})
      AND (${after}::bigint IS NULL OR (CASE WHEN ${ascending} THEN dead_letter.id > ${after}::bigint ELSE dead_letter.id < ${after}::bigint END))
    ORDER BY CASE WHEN ${ascending} THEN dead_letter.id END ASC, dead_letter.id DESC
    LIMIT ${limit}`;
  return rows.map(toRow);
}

/** One dead letter, or null when no row has this id. */
export async function getDeadLetter(sql: Sql, id: string | bigint): Promise<DeadLetterRow | null> {
  let key: string;
  try {
    key = normaliseId(id);
  } catch {
    return null;
  }
  const rows = await sql<DeadLetterDbRow[]>`SELECT ${sql.unsafe(SELECT_COLUMNS)} FROM events.dead_letter WHERE id = ${key}::bigint`;
  return rows[0] ? toRow(rows[0]) : null;
}

async function lockDeadLetter(tx: Transaction, id: string): Promise<DeadLetterDbRow> {
  const rows = (await tx.execute(drizzleSql`
    SELECT ${drizzleSql.raw(SELECT_COLUMNS)} FROM events.dead_letter WHERE id = ${id}::bigint FOR UPDATE`)) as unknown as DeadLetterDbRow[];
  const row = rows[0];
  if (!row) throw new DeadLetterNotFoundError(id);
  return row;
}

/** Header of a replayed dead letter naming the one group it is re-delivered to. */
export const REPLAY_FOR_GROUP_HEADER = 'replayForGroup';

/**
 * Re-enqueues a dead letter through the outbox with its ORIGINAL event_id,
 * stream, type, partition key, payload and headers (plus headers
 * `replayOfDeadLetter` and `replayForGroup`), so it passes the same ordering
 * and fencing path as any event; then marks it `replayed`. One transaction:
 * the dead letter is locked, the old outbox row with that event_id (if not
 * pruned yet) is deleted so event_id stays unique, and nothing changes if
 * any step fails.
 *
 * It re-delivers to the letter's group only: that group's inbox row for the
 * event (written when it was dead-lettered) is deleted in the same
 * transaction, so the group handles it again; every other group still has
 * its own inbox row (it handled or dead-lettered the event) and acknowledges
 * the entry as a duplicate, and a group without one skips it because
 * `replayForGroup` names another group.
 *
 * Refuses (DeadLetterStateError) unless the status is `dead`, and for letters
 * of entries too malformed to rebuild an event from; DeadLetterNotFoundError
 * when no such row exists. Enqueue validation errors propagate unchanged.
 */
export async function replayDeadLetter(
  db: Database,
  id: string | bigint,
  options: { by: string },
): Promise<{ deadLetterId: string; eventId: string; outboxId: string }> {
  const key = normaliseId(id);
  return db.transaction(async (tx) => {
    const letter = await lockDeadLetter(tx, key);
    if (letter.status !== 'dead') throw new DeadLetterStateError(key, letter.status, 'replayed');
    if (!letter.event_id || !letter.event_type || !letter.partition_key || letter.payload === null) {
      throw new DeadLetterStateError(
        key,
        letter.status,
        'replayed',
        'the stream entry lacked event_id, type, partition_key or payload, so there is no event to re-enqueue; discard it instead',
      );
    }
    await tx.execute(drizzleSql`DELETE FROM events.outbox_event WHERE event_id = ${letter.event_id}::uuid`);
    await tx.execute(drizzleSql`
      DELETE FROM events.processed_event WHERE group_name = ${letter.group_name} AND event_id = ${letter.event_id}::uuid`);
    const enqueued = await enqueue(tx, {
      stream: logicalStreamOf(letter.stream_name),
      type: letter.event_type,
      partitionKey: letter.partition_key,
      payload: letter.payload as Record<string, unknown>,
      headers: { ...(letter.headers ?? {}), replayOfDeadLetter: key, [REPLAY_FOR_GROUP_HEADER]: letter.group_name },
      eventId: letter.event_id,
    });
    await tx.execute(drizzleSql`
      UPDATE events.dead_letter SET status = 'replayed', resolved_at = now(), resolved_by = ${options.by}
      WHERE id = ${key}::bigint`);
    return { deadLetterId: key, eventId: enqueued.eventId, outboxId: enqueued.id.toString() };
  });
}

/**
 * Marks a dead letter `discarded` (nothing is re-enqueued). Refuses
 * (DeadLetterStateError) unless its status is `dead`; DeadLetterNotFoundError
 * when no such row exists.
 */
export async function discardDeadLetter(db: Database, id: string | bigint, options: { by: string }): Promise<void> {
  const key = normaliseId(id);
  await db.transaction(async (tx) => {
    const letter = await lockDeadLetter(tx, key);
    if (letter.status !== 'dead') throw new DeadLetterStateError(key, letter.status, 'discarded');
    await tx.execute(drizzleSql`
      UPDATE events.dead_letter SET status = 'discarded', resolved_at = now(), resolved_by = ${options.by}
      WHERE id = ${key}::bigint`);
  });
}
