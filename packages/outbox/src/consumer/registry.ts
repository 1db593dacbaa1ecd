/**
 * The handler registry: one handler per event type, each with the zod schema
 * its payload must pass. Registration fails at boot on duplicates.
 */
import type { Logger } from 'pino';
import type { z } from 'zod';
import type { Transaction } from '../db';
import type { EventDefinition } from '../define-event';

/**
 * Thrown by a handler when retrying cannot help (the event refers to something
 * that will never exist, a business rule forbids it...): the event is
 * dead-lettered at once. Any other error is retried with backoff.
 */
export class PermanentError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'PermanentError';
  }
}

export class DuplicateHandlerError extends Error {
  constructor(readonly eventType: string) {
    super(`a handler for event type ${eventType} is already registered`);
    this.name = 'DuplicateHandlerError';
  }
}

/** What a handler receives: the parsed payload and the entry's metadata. */
export interface HandledEvent<P> {
  eventId: string;
  type: string;
  /** Logical stream name (`stream:<context>:<name>`). */
  stream: string;
  partitionKey: string;
  payload: P;
  headers: Record<string, string>;
  createdAt: string;
  /** Outbox id the publisher relayed, as a decimal string. */
  outboxId: string;
  /** Redis entry id. */
  entryId: string;
}

export interface HandlerContext {
  /**
   * The consumer's Postgres transaction: the inbox row and every write of the
   * handler commit together, or not at all.
   */
  tx: Transaction;
  /** 1 on first delivery, then 2, 3... across retries. */
  attempt: number;
  group: string;
  logger: Logger;
}

export interface EventHandler<P> {
  schema: z.ZodType<P>;
  /** Resolve = handled (acknowledged); throw = retry, or dead-letter for PermanentError. */
  handle(event: HandledEvent<P>, ctx: HandlerContext): Promise<void>;
  /**
   * Default false: each event's handler starts after the previous one in the
   * batch resolved. `true` lets the consumer start the next event's handler
   * without waiting, so the statements of a whole batch travel to Postgres
   * pipelined on the transaction's connection (one socket write instead of
   * one round trip per event). They still run in the order they were issued.
   *
   * Only for handlers that issue their statements on `ctx.tx` before awaiting
   * anything else, never read back what an earlier event of the batch may
   * have written, and use no nested transaction (savepoint): an append-only
   * insert or an upsert keyed by the event are the typical case. A failure
   * still rolls back the batch and is retried alone, exactly as without it.
   */
  pipelined?: boolean;
}

export interface RegisteredHandler {
  eventType: string;
  schema: z.ZodType<unknown>;
  handle(event: HandledEvent<unknown>, ctx: HandlerContext): Promise<void>;
  pipelined: boolean;
}

export class HandlerRegistry {
  private readonly handlers = new Map<string, RegisteredHandler>();

  /** Registers by type name or by an event definition (whose schema is then used). */
  register<P>(eventType: string, handler: EventHandler<P>): this;
  register<S extends z.ZodType<Record<string, unknown>>>(
    definition: EventDefinition<S>,
    handle: EventHandler<z.output<S>>['handle'],
  ): this;
  register(
    typeOrDefinition: string | EventDefinition<z.ZodType<Record<string, unknown>>>,
    handler: EventHandler<unknown> | EventHandler<unknown>['handle'],
  ): this {
    const eventType = typeof typeOrDefinition === 'string' ? typeOrDefinition : typeOrDefinition.type;
    if (this.handlers.has(eventType)) throw new DuplicateHandlerError(eventType);
    const entry: RegisteredHandler =
      typeof handler === 'function'
        ? { eventType, schema: (typeOrDefinition as EventDefinition<z.ZodType<Record<string, unknown>>>).schema, handle: handler, pipelined: false }
        : { eventType, schema: handler.schema, handle: handler.handle, pipelined: handler.pipelined ?? false };
    this.handlers.set(eventType, entry);
    return this;
  }

  get(eventType: string): RegisteredHandler | undefined {
    return this.handlers.get(eventType);
  }

  eventTypes(): string[] {
    return [...this.handlers.keys()];
  }
}

export function createHandlerRegistry(): HandlerRegistry {
  return new HandlerRegistry();
}
