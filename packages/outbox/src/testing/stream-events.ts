/**
 * Puts events on a Redis stream directly, as the publisher would, so consumer
 * tests do not depend on the publisher.
 */
import type { RedisClient } from '@petcover/service-kit';
import { newEventId } from '../event-id';
import { encodeEntry, type StreamEvent } from '../streams';

let nextOutboxId = 1;

/** A complete StreamEvent; fields not given get test values (a fresh UUID v7 event id). */
export function testStreamEvent(event: Partial<StreamEvent> & { type: string; payload: unknown }): StreamEvent {
  return {
    outboxId: String(nextOutboxId++),
    eventId: newEventId(),
    partitionKey: 'key-1',
    headers: {},
    createdAt: new Date().toISOString(),
    ...event,
  };
}

/**
 * XADDs each event (encoded with encodeEntry) to `key`, in order, in one
 * MULTI. Returns the entry ids.
 */
export async function appendTestEvents(redis: RedisClient, key: string, events: readonly StreamEvent[]): Promise<string[]> {
  // MULTI, so a reader blocked on the stream sees all of them in one read.
  const transaction = redis.multi();
  for (const event of events) transaction.xadd(key, '*', ...encodeEntry(event));
  const results = (await transaction.exec()) ?? [];
  return results.map(([error, id]) => {
    if (error) throw error;
    return id as string;
  });
}

/** XADDs raw field/value pairs (e.g. an entry missing fields) and returns the entry id. */
export async function appendRawEntry(redis: RedisClient, key: string, fields: Record<string, string>): Promise<string> {
  return (await redis.xadd(key, '*', ...Object.entries(fields).flat())) as string;
}
