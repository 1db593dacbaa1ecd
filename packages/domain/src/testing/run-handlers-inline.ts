/**
 * Test helper: hands the outbox rows of given event types to a handler
 * registry in id order, each in its own transaction, the way a consumer
 * would (minus Redis). Lets domain tests prove handler behaviour against a
 * real database without the publisher and consumer processes.
 */
import { asc, gt } from 'drizzle-orm';
import pino from 'pino';
import { outboxEvent, type Database, type HandlerRegistry } from '@petcover/outbox';

export interface InlineRun {
  /** Outbox ids handled, in order. */
  handled: bigint[];
}

/**
 * Handles every outbox row after `afterId` whose type the registry knows,
 * repeating until no new rows appear (a handler may enqueue more). Throws the
 * first handler error.
 */
export async function runHandlersInline(db: Database, registry: HandlerRegistry, options: { afterId?: bigint; group?: string } = {}): Promise<InlineRun> {
  const handled: bigint[] = [];
  let cursor = options.afterId ?? 0n;
  const logger = pino({ level: 'silent' });
  for (;;) {
    const rows = await db
      .select()
      .from(outboxEvent)
      .where(gt(outboxEvent.id, cursor))
      .orderBy(asc(outboxEvent.id));
    if (rows.length === 0) return { handled };
    for (const row of rows) {
      const handler = registry.get(row.eventType);
      if (!handler) continue;
      const payload = handler.schema.parse(row.payload);
      await db.transaction(async (tx) => {
        await handler.handle(
          {
            eventId: row.eventId,
            type: row.eventType,
            stream: row.streamName,
            partitionKey: row.partitionKey,
            payload,
            headers: (row.headers ?? {}) as Record<string, string>,
            createdAt: new Date(row.createdAt).toISOString(),
            outboxId: String(row.id),
            entryId: '0-0',
          },
          { tx, attempt: 1, group: options.group ?? 'inline-test', logger, signal: new AbortController().signal },
        );
      });
      handled.push(row.id);
    }
    cursor = rows[rows.length - 1]?.id ?? cursor;
  }
}
