/**
 * The handled-order log: an optional audit table a handler writes in the
 * consumer's transaction, one row per effect applied, so that `verifyPipeline`
 * can check what `processed_event` cannot show — that an effect was applied
 * only once, and in which order the events of one partition key were handled.
 *
 * It lives outside the `events` migrations on purpose: production handlers do
 * not write it; the chaos run and tests create it with `ensureHandledLogTable`.
 *
 * Shape (`chaos.handled`):
 *   id           bigserial — handling order (rows of one partition key are
 *                written by one lease holder at a time, so id order is the
 *                order in which they committed within that key)
 *   group_name   consumer group that applied the effect
 *   event_id     the event's idempotency key
 *   stream_name  logical stream (`stream:<context>:<name>`)
 *   partition_key
 *   outbox_id    outbox id the publisher relayed (decimal)
 *   seq          optional producer sequence within the partition key
 *   attempt      delivery attempt that succeeded (1 = first; more = retried)
 *   handled_at   clock_timestamp() of the insert
 */
import { sql as drizzleSql } from 'drizzle-orm';
import type { HandledEvent, HandlerContext } from '../consumer/registry';
import type { Sql, Transaction } from '../db';

export const HANDLED_LOG_SCHEMA = 'chaos';
export const HANDLED_LOG_TABLE = 'chaos.handled';

/** Creates schema and table when missing. Idempotent; safe to race (advisory-locked DDL). */
export async function ensureHandledLogTable(sql: Sql): Promise<void> {
  await sql.begin(async (tx) => {
    await tx`SELECT pg_advisory_xact_lock(7311874031)`;
    await tx.unsafe(`CREATE SCHEMA IF NOT EXISTS ${HANDLED_LOG_SCHEMA}`);
    await tx.unsafe(`
      CREATE TABLE IF NOT EXISTS ${HANDLED_LOG_TABLE} (
        id            bigserial PRIMARY KEY,
        group_name    text NOT NULL,
        event_id      uuid NOT NULL,
        stream_name   text NOT NULL,
        partition_key text NOT NULL,
        outbox_id     bigint NOT NULL,
        seq           bigint,
        attempt       integer NOT NULL DEFAULT 1,
        handled_at    timestamptz NOT NULL DEFAULT clock_timestamp()
      )`);
    await tx.unsafe(`CREATE INDEX IF NOT EXISTS handled_group_event_idx ON ${HANDLED_LOG_TABLE} (group_name, event_id)`);
  });
}

/** Whether the handled-order log exists in this database. */
export async function handledLogExists(sql: Sql): Promise<boolean> {
  const [row] = await sql`SELECT to_regclass(${HANDLED_LOG_TABLE}) IS NOT NULL AS present`;
  return Boolean(row?.present);
}

export interface HandledRecord {
  group: string;
  eventId: string;
  stream: string;
  partitionKey: string;
  outboxId: string;
  seq?: number | null;
  /** The attempt that succeeded (HandlerContext.attempt); default 1. */
  attempt?: number;
}

/** The record of `event` handled in `ctx` (group, ids, stream, key, attempt), with the producer's `seq` if it has one. */
export function handledRecordOf(event: HandledEvent<unknown>, ctx: HandlerContext, seq?: number | null): HandledRecord {
  return {
    group: ctx.group,
    eventId: event.eventId,
    stream: event.stream,
    partitionKey: event.partitionKey,
    outboxId: event.outboxId,
    seq: seq ?? null,
    attempt: ctx.attempt,
  };
}

/**
 * Appends handled records (one, or a batch handler's run, in order) inside
 * the handler's transaction `tx`, with one INSERT, so they commit exactly
 * when the consumer's inbox rows do.
 */
export async function recordHandled(tx: Transaction, records: HandledRecord | readonly HandledRecord[]): Promise<void> {
  const list: readonly HandledRecord[] = Array.isArray(records) ? records : [records as HandledRecord];
  if (list.length === 0) return;
  const values = drizzleSql.join(
    list.map(
      (r) => drizzleSql`(${r.group}, ${r.eventId}, ${r.stream}, ${r.partitionKey}, ${r.outboxId}::bigint, ${r.seq ?? null}, ${r.attempt ?? 1})`,
    ),
    drizzleSql`, `,
  );
  await tx.execute(drizzleSql`
    INSERT INTO chaos.handled (group_name, event_id, stream_name, partition_key, outbox_id, seq, attempt)
    VALUES ${values}`);
}
