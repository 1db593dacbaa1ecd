/**
 * Our producer transaction for pgbench: the INSERT `enqueue` sends (with its
 * `pg_notify` riding on RETURNING, sent only while no publisher is awake on
 * the stream: see publisher/wake-lock.ts), captured from `enqueue` itself on a
 * rolled-back transaction, so the script follows enqueue when it changes.
 *
 * Per transaction: the event id is a UUID v7 made in SQL (enqueue makes one
 * in the client; v7 keeps the unique index's inserts at its right edge, as in
 * production), the partition key `entity-<seq % 1024>` and the payload
 * `{"seq": <seq>}` as the Node producer sends them.
 */
import { randomUUID } from 'node:crypto';
import { drizzle } from 'drizzle-orm/postgres-js';
import postgres from 'postgres';
import { enqueue } from '@petcover/outbox';
import { BENCH_EVENT_TYPE } from '../bench-event';
import { inlineParameters, type CapturedStatement } from './captured-statement';
import type { ProducerScript } from './producer-script';
import { CURRENT_SEQ, NEXT_SEQ, producerTransactionScript } from './producer-sequence';

/**
 * A UUID v7 from the database clock: 48 bits of Unix milliseconds over a
 * random v4, with the version bits turned from 0100 into 0111.
 */
export const UUID_V7_SQL =
  "encode(set_bit(set_bit(overlay(uuid_send(gen_random_uuid()) placing substring(int8send(floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint) FROM 3) FROM 1 FOR 6), 52, 1), 53, 1), 'hex')::uuid";

/** Distinct partition keys of produced events, as the Node producer spreads them. */
const PARTITION_KEYS = 1024;

class RolledBack extends Error {}

/** Runs `enqueue` once on a transaction that is rolled back and returns the statement it sent. */
export async function captureEnqueueStatement(databaseUrl: string, stream: string, marks: { eventId: string; partitionKey: string; payload: { seq: number } }): Promise<CapturedStatement> {
  const sent: CapturedStatement[] = [];
  const client = postgres(databaseUrl, {
    max: 1,
    onnotice: () => undefined,
    debug: (_connection, text, values) => void sent.push({ text, values: values as unknown[] }),
  });
  try {
    await drizzle(client).transaction(async (tx) => {
      await enqueue(tx, { stream, type: BENCH_EVENT_TYPE, partitionKey: marks.partitionKey, payload: marks.payload, eventId: marks.eventId });
      throw new RolledBack();
    });
  } catch (error) {
    if (!(error instanceof RolledBack)) throw error;
  } finally {
    await client.end({ timeout: 5 });
  }
  const inserts = sent.filter((s) => /insert\s+into\s+events\.outbox_event/i.test(s.text));
  if (inserts.length !== 1) throw new Error(`expected enqueue to send one INSERT into events.outbox_event, saw ${inserts.length}`);
  return inserts[0] as CapturedStatement;
}

export async function petcoverEnqueueScript(databaseUrl: string, stream: string): Promise<ProducerScript> {
  // Values no real event has, to find which placeholder carries what.
  const marks = { eventId: randomUUID(), partitionKey: `entity-mark-${randomUUID()}`, payload: { seq: 987_654_321_012 } };
  const captured = await captureEnqueueStatement(databaseUrl, stream, marks);
  const found = new Set<string>();
  const statement = inlineParameters(
    captured,
    (value) => {
      if (value === marks.eventId) return found.add('eventId') && UUID_V7_SQL;
      // The partition key comes before the payload in the VALUES row, so it takes nextval.
      if (value === marks.partitionKey) return found.add('partitionKey') && `'entity-' || (${NEXT_SEQ} % ${PARTITION_KEYS})`;
      if (value === JSON.stringify(marks.payload)) return found.add('payload') && `jsonb_build_object('seq', ${CURRENT_SEQ})::text`;
      return undefined;
    },
    'e',
  );
  if (found.size !== 3) throw new Error(`could not find the event id, partition key and payload among enqueue's parameters (found ${[...found].join(', ') || 'none'})`);
  return {
    script: producerTransactionScript(statement.sql),
    variables: statement.variables,
    describe: "enqueue's INSERT … RETURNING pg_notify unless the publisher is awake on the stream (captured from enqueue), then the domain row",
  };
}
