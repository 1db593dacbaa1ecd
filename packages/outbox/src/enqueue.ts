/**
 * Writing events: `enqueue(tx, event)` inserts into the caller's transaction,
 * so the domain change and its event commit or roll back together.
 */
import { sql } from 'drizzle-orm';
import { PgTransaction } from 'drizzle-orm/pg-core';
import { executePrepared, type Transaction } from './db';
import { DuplicateEventIdError, OutboxValidationError } from './errors';
import { newEventId, UUID_PATTERN } from './event-id';
import { assertStreamName } from './streams';
import { startCreateSpans } from './tracing';

/**
 * Largest payload accepted, as UTF-8 JSON. Redis and Postgres take far more,
 * but an event is a notification, not a document store: 256 KiB keeps one
 * publisher batch (hundreds of events) well inside a few tens of MB.
 */
export const MAX_PAYLOAD_BYTES = 256 * 1024;
/** Longest type, partition key or header value we accept. */
export const MAX_TEXT_LENGTH = 512;
/**
 * Channel of the NOTIFY sent at commit; its payload is the stream name. The
 * publisher LISTENs on it to wake without waiting for its poll interval.
 */
export const OUTBOX_NOTIFY_CHANNEL = 'petcover_outbox';
/**
 * First key of the stream's wake lock, a Postgres advisory lock
 * `(OUTBOX_WAKE_LOCK_CLASS, hashtext(stream))`. The publisher draining a
 * stream holds it while it is awake (polling the stream itself); an INSERT
 * sends the NOTIFY only when it can take the lock shared, i.e. when nobody
 * is awake on the stream. Why: a NOTIFY takes a database-wide lock from
 * before the commit until after its WAL flush, so notifying transactions
 * commit one at a time (no group commit): about half the commit rate of the
 * same transaction without it (issue 20). See publisher/wake-lock.ts.
 */
export const OUTBOX_WAKE_LOCK_CLASS = 1885567793; // 'pcw1'

export interface OutboxEventInput {
  /** `stream:<context>:<name>`. */
  stream: string;
  /** Event type, e.g. `ContractCreated`. */
  type: string;
  /** The entity the event is about; order is kept per key. */
  partitionKey: string;
  /** A plain JSON object. */
  payload: Record<string, unknown>;
  /** Correlation id, causation id, tenant, trace context. */
  headers?: Record<string, string>;
  /** Idempotency key; a UUID v7 is assigned when absent. */
  eventId?: string;
}

export interface EnqueueOptions {
  maxPayloadBytes?: number;
}

export interface EnqueuedEvent {
  id: bigint;
  eventId: string;
  stream: string;
}

/** What an event type may look like (enqueue refuses anything else). */
export const EVENT_TYPE_PATTERN = /^[A-Za-z][A-Za-z0-9_.:-]*$/;

/**
 * Adds one event to the outbox inside `tx`. Transactional: nothing is visible
 * until the caller commits, and a rollback removes it with the domain change.
 * Throws OutboxValidationError / DuplicateEventIdError before writing anything.
 *
 * Ordering: the event gets its outbox id at this INSERT, and consumers see a
 * partition key's events in outbox-id order only if those ids are also the
 * order in which their transactions commit. Two concurrent transactions on one
 * entity can commit in the other order (id 5 commits after id 6 was already
 * published); the publisher then appends 5 after 6, and `events verify`
 * reports it as out of order. A producer that needs id order must serialise
 * the writes of one entity: lock its row (`SELECT … FOR UPDATE`) before
 * enqueueing, as the domain services do.
 */
export async function enqueue(tx: Transaction, event: OutboxEventInput, options?: EnqueueOptions): Promise<EnqueuedEvent> {
  const [enqueued] = await enqueueMany(tx, [event], options);
  return enqueued as EnqueuedEvent;
}

/**
 * Adds several events in one INSERT, in array order (ids ascend in that order).
 * All or nothing: any invalid or duplicate event writes none of them.
 */
export async function enqueueMany(
  tx: Transaction,
  events: readonly OutboxEventInput[],
  options: EnqueueOptions = {},
): Promise<EnqueuedEvent[]> {
  if (!(tx instanceof PgTransaction)) {
    throw new OutboxValidationError('tx', 'must be the caller’s drizzle transaction (db.transaction(async (tx) => ...))');
  }
  if (events.length === 0) return [];
  const maxBytes = options.maxPayloadBytes ?? MAX_PAYLOAD_BYTES;
  const rows = events.map((event, index) => validateEvent(event, events.length > 1 ? `events[${index}].` : '', maxBytes));

  const ids = rows.map((r) => r.eventId);
  const repeated = ids.filter((id, i) => ids.indexOf(id) !== i);
  if (repeated.length > 0) throw new DuplicateEventIdError([...new Set(repeated)]);

  // The trace context goes into the headers of this very INSERT (a
  // traceparent written afterwards would orphan the consumer's spans).
  const creation = startCreateSpans(rows);
  try {
    const inserted = await insertRows(tx, rows);
    creation.end();
    return inserted;
  } catch (error) {
    creation.end(error);
    throw error;
  }
}

type ValidatedEvent = ReturnType<typeof validateEvent>;

async function insertRows(tx: Transaction, rows: ValidatedEvent[]): Promise<EnqueuedEvent[]> {
  const ids = rows.map((r) => r.eventId);
  // One plain SQL statement: drizzle's insert builder costs about twice the
  // CPU of the whole statement's round trip, and every producer pays it.
  // The NOTIFY rides on the RETURNING: one round trip per enqueue instead of
  // two. A single event (the common case) goes as a prepared statement
  // (executePrepared: one round trip, not a describe first and then the
  // statement); several keep drizzle's unprepared path, since each row count
  // is another statement text and would stay prepared on every connection. Postgres delivers identical (channel, payload) pairs of one
  // transaction once, at commit, so a NOTIFY per row is one per stream. It
  // is sent only when no publisher is awake on the stream (its wake lock is
  // free; the shared lock taken then is held until our commit): an awake
  // publisher polls and does not need it, and skipping it keeps group commit.
  const values = sql.join(
    rows.map((r) => sql`(${r.eventId}::uuid, ${r.streamName}, ${r.partitionKey}, ${r.eventType}, ${r.payloadJson}::jsonb, ${JSON.stringify(r.headers)}::jsonb)`),
    sql`, `,
  );
  const insert = sql`
    INSERT INTO events.outbox_event (event_id, stream_name, partition_key, event_type, payload, headers)
    VALUES ${values}
    ON CONFLICT (event_id) DO NOTHING
    RETURNING id::text AS id, event_id::text AS event_id,
      CASE WHEN pg_try_advisory_xact_lock_shared(${sql.raw(String(OUTBOX_WAKE_LOCK_CLASS))}, hashtext(stream_name)) THEN pg_notify(${OUTBOX_NOTIFY_CHANNEL}, stream_name) END AS notified`;
  const inserted = rows.length === 1 ? await executePrepared<{ id: string; event_id: string }>(tx, insert) : ((await tx.execute(insert)) as unknown as { id: string; event_id: string }[]);
  if (inserted.length !== rows.length) {
    // Undo our own partial insert without aborting the caller's transaction.
    const insertedIds = new Set(inserted.map((r) => r.event_id));
    if (inserted.length > 0) {
      await tx.execute(sql`DELETE FROM events.outbox_event WHERE id = ANY(${`{${inserted.map((r) => r.id).join(',')}}`}::bigint[])`);
    }
    throw new DuplicateEventIdError(ids.filter((id) => !insertedIds.has(id)));
  }

  const byEventId = new Map(inserted.map((r) => [r.event_id, r.id]));
  return rows.map((r) => ({ id: BigInt(byEventId.get(r.eventId) as string), eventId: r.eventId, stream: r.streamName }));
}

function validateEvent(event: OutboxEventInput, prefix: string, maxBytes: number) {
  if (event === null || typeof event !== 'object') throw new OutboxValidationError(`${prefix}event`, 'must be an object');
  assertStreamName(event.stream, `${prefix}stream`);
  assertText(event.type, `${prefix}type`);
  if (!EVENT_TYPE_PATTERN.test(event.type)) {
    throw new OutboxValidationError(`${prefix}type`, `must start with a letter and hold only letters, digits and _.:- (got ${JSON.stringify(event.type)})`);
  }
  assertText(event.partitionKey, `${prefix}partitionKey`);

  const payloadJson = serialisePayload(event.payload, `${prefix}payload`);
  const bytes = Buffer.byteLength(payloadJson, 'utf8');
  if (bytes > maxBytes) throw new OutboxValidationError(`${prefix}payload`, `is ${bytes} bytes of JSON, over the limit of ${maxBytes}`);

  const headers = event.headers ?? {};
  if (headers === null || typeof headers !== 'object' || Array.isArray(headers) || !isPlainObject(headers)) {
    throw new OutboxValidationError(`${prefix}headers`, 'must be an object of string values');
  }
  for (const [key, value] of Object.entries(headers)) {
    if (typeof value !== 'string') throw new OutboxValidationError(`${prefix}headers.${key}`, `must be a string (got ${typeof value})`);
    if (value.length > MAX_TEXT_LENGTH) throw new OutboxValidationError(`${prefix}headers.${key}`, `is longer than ${MAX_TEXT_LENGTH} characters`);
  }

  let eventId = event.eventId;
  if (eventId === undefined) eventId = newEventId();
  else if (typeof eventId !== 'string' || !UUID_PATTERN.test(eventId)) {
    throw new OutboxValidationError(`${prefix}eventId`, `must be a UUID (got ${JSON.stringify(eventId)})`);
  }
  return {
    eventId: eventId.toLowerCase(),
    streamName: event.stream,
    partitionKey: event.partitionKey,
    eventType: event.type,
    // The validated JSON text itself is stored: what we measured is what we write.
    payloadJson,
    headers,
  };
}

function assertText(value: unknown, field: string): asserts value is string {
  if (typeof value !== 'string' || value.trim().length === 0) throw new OutboxValidationError(field, 'must be a non-empty string');
  if (value.length > MAX_TEXT_LENGTH) throw new OutboxValidationError(field, `is longer than ${MAX_TEXT_LENGTH} characters`);
}

function isPlainObject(value: object): boolean {
  const proto = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

/**
 * JSON.stringify silently drops undefined, turns NaN into null and throws an
 * unhelpful message on cycles; we refuse each of these naming the path.
 */
function serialisePayload(payload: unknown, field: string): string {
  if (payload === undefined || payload === null) throw new OutboxValidationError(field, `is ${payload === null ? 'null' : 'undefined'}`);
  if (typeof payload !== 'object' || Array.isArray(payload) || !isPlainObject(payload)) {
    throw new OutboxValidationError(field, 'must be a plain JSON object');
  }
  const ancestors: object[] = [];
  const visit = (value: unknown, path: string): void => {
    switch (typeof value) {
      case 'string':
      case 'boolean':
        return;
      case 'number':
        if (!Number.isFinite(value)) throw new OutboxValidationError(path, `is ${value}, which JSON cannot represent`);
        return;
      case 'undefined':
        throw new OutboxValidationError(path, 'is undefined');
      case 'object': {
        if (value === null) return;
        if (ancestors.includes(value)) throw new OutboxValidationError(path, 'is circular (refers to one of its ancestors)');
        if (!Array.isArray(value) && !isPlainObject(value) && !(value instanceof Date)) {
          throw new OutboxValidationError(path, `is a ${value.constructor?.name ?? 'non-plain object'}, not plain JSON`);
        }
        ancestors.push(value);
        if (Array.isArray(value)) value.forEach((item, i) => visit(item, `${path}[${i}]`));
        else if (!(value instanceof Date)) for (const [k, v] of Object.entries(value)) visit(v, `${path}.${k}`);
        ancestors.pop();
        return;
      }
      default:
        throw new OutboxValidationError(path, `is a ${typeof value}, which JSON cannot represent`);
    }
  };
  visit(payload, field);
  return JSON.stringify(payload);
}
