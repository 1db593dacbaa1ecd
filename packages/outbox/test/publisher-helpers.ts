/**
 * Shared by the publisher tests: fill the outbox fast, read Redis streams back,
 * and check the relay's guarantees (exactly once, id order, per-key order).
 */
import type { RedisClient } from '@petcover/service-kit';
import pino from 'pino';
import { Writable } from 'node:stream';
import { enqueueMany, type OutboxEventInput } from '../src/index';
import type { TestDatabase } from '../src/testing/index';

/** Enqueues `count` events on `stream` in transactions of up to 1,000, keys `key-0..key-(keys-1)`. */
export async function fillOutbox(db: TestDatabase, stream: string, count: number, keys = 20): Promise<void> {
  for (let start = 0; start < count; start += 1000) {
    const events: OutboxEventInput[] = [];
    for (let i = start; i < Math.min(count, start + 1000); i++) {
      events.push({ stream, type: 'TestHappened', partitionKey: `key-${i % keys}`, payload: { seq: i, key: `key-${i % keys}` } });
    }
    await db.db.transaction((tx) => enqueueMany(tx, events));
  }
}

export interface ReadEntry {
  entryId: string;
  outboxId: bigint;
  eventId: string;
  partitionKey: string;
  payload: string;
}

export async function readStream(redis: RedisClient, key: string): Promise<ReadEntry[]> {
  const entries = await redis.xrange(key, '-', '+');
  return entries.map(([entryId, flat]) => {
    const fields: Record<string, string> = {};
    for (let i = 0; i < flat.length; i += 2) fields[flat[i]!] = flat[i + 1]!;
    return { entryId, outboxId: BigInt(fields.outbox_id!), eventId: fields.event_id!, partitionKey: fields.partition_key!, payload: fields.payload! };
  });
}

/** Asserts outbox ids ascend within the entries (one partition stream) and none repeats. */
export function expectIdOrder(entries: readonly ReadEntry[]): void {
  for (let i = 1; i < entries.length; i++) {
    if (entries[i]!.outboxId <= entries[i - 1]!.outboxId) {
      throw new Error(`out of order or duplicate at ${i}: ${entries[i - 1]!.outboxId} then ${entries[i]!.outboxId}`);
    }
  }
}

export async function unpublishedCount(db: TestDatabase, stream?: string): Promise<number> {
  const [row] = stream
    ? await db.sql<{ n: string }[]>`SELECT count(*)::text AS n FROM events.outbox_event WHERE published_at IS NULL AND stream_name = ${stream}`
    : await db.sql<{ n: string }[]>`SELECT count(*)::text AS n FROM events.outbox_event WHERE published_at IS NULL`;
  return Number(row!.n);
}

/** A pino logger whose lines the test can search. */
export function capturingLogger(): { logger: pino.Logger; lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = [];
  const destination = new Writable({
    write(chunk, _encoding, done) {
      for (const line of String(chunk).split('\n')) if (line) lines.push(JSON.parse(line) as Record<string, unknown>);
      done();
    },
  });
  return { logger: pino({ level: 'debug' }, destination), lines };
}
