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
  /**
   * Aborted at the handler's deadline: pass it to anything that takes one
   * (fetch, timers). The consumer stops waiting at the deadline anyway and
   * rolls the transaction back; a handler that ignores the signal only keeps
   * running detached.
   */
  signal: AbortSignal;
}

/**
 * What happens when a key's head runs out of attempts (or fails with a
 * PermanentError): `dead-letter-and-continue` dead-letters it and the key's
 * later events proceed; `halt` keeps it parked, halted, with the key's later
 * events parked behind it, until an operator releases (retries) or discards
 * it (`events key release|discard`).
 */
export const EXHAUSTED_POLICIES = ['dead-letter-and-continue', 'halt'] as const;
export type ExhaustedPolicy = (typeof EXHAUSTED_POLICIES)[number];

/** Options of one registration. */
export interface HandlerOptions {
  /** Deadline of one call of this handler in ms; default the consumer's (`--handler-timeout`, 30 s). */
  timeoutMs?: number;
  /** Policy when this handler's event exhausts its attempts; default the group's (`--on-exhausted`). */
  onExhausted?: ExhaustedPolicy;
}

export interface EventHandler<P> {
  schema: z.ZodType<P>;
  /** Resolve = handled (acknowledged); throw = retry, or dead-letter for PermanentError. */
  handle(event: HandledEvent<P>, ctx: HandlerContext): Promise<void>;
  /**
   * Optional set-based form of `handle`, for hot event types: called with a
   * run of consecutive entries of this type from one read batch (duplicates
   * left out), in entry order, inside the same transaction as their
   * processed_event rows. It must have the effect of calling `handle` on each
   * in that order, e.g. one multi-row INSERT instead of one per event: a
   * statement per event costs a round trip, a statement per batch does not.
   *
   * If it throws, nothing of the batch commits and the consumer handles those
   * entries again one by one through `handle`, so retries, backoff and dead
   * letters still concern the one event that fails.
   */
  handleBatch?(events: HandledEvent<P>[], ctx: HandlerContext): Promise<void>;
  /** Deadline of one call in ms; default the consumer's. */
  timeoutMs?: number;
  /** Policy when an event exhausts its attempts; default the group's. */
  onExhausted?: ExhaustedPolicy;
}

export interface RegisteredHandler {
  eventType: string;
  schema: z.ZodType<unknown>;
  handle(event: HandledEvent<unknown>, ctx: HandlerContext): Promise<void>;
  handleBatch?(events: HandledEvent<unknown>[], ctx: HandlerContext): Promise<void>;
  timeoutMs?: number;
  onExhausted?: ExhaustedPolicy;
}

export class InvalidHandlerOptionsError extends Error {
  constructor(eventType: string, reason: string) {
    super(`handler of ${eventType}: ${reason}`);
    this.name = 'InvalidHandlerOptionsError';
  }
}

export class HandlerRegistry {
  private readonly handlers = new Map<string, RegisteredHandler>();

  /** Registers by type name or by an event definition (whose schema is then used). */
  register<P>(eventType: string, handler: EventHandler<P>): this;
  register<S extends z.ZodType<Record<string, unknown>>>(
    definition: EventDefinition<S>,
    handle: EventHandler<z.output<S>>['handle'],
    options?: HandlerOptions,
  ): this;
  register(
    typeOrDefinition: string | EventDefinition<z.ZodType<Record<string, unknown>>>,
    handler: EventHandler<unknown> | EventHandler<unknown>['handle'],
    options: HandlerOptions = {},
  ): this {
    const eventType = typeof typeOrDefinition === 'string' ? typeOrDefinition : typeOrDefinition.type;
    if (this.handlers.has(eventType)) throw new DuplicateHandlerError(eventType);
    const entry: RegisteredHandler =
      typeof handler === 'function'
        ? { eventType, schema: (typeOrDefinition as EventDefinition<z.ZodType<Record<string, unknown>>>).schema, handle: handler }
        : { eventType, schema: handler.schema, handle: handler.handle, ...(handler.handleBatch ? { handleBatch: handler.handleBatch } : {}) };
    const timeoutMs = options.timeoutMs ?? (typeof handler === 'function' ? undefined : handler.timeoutMs);
    if (timeoutMs !== undefined) {
      if (!Number.isInteger(timeoutMs) || timeoutMs < 1) throw new InvalidHandlerOptionsError(eventType, `timeoutMs must be a positive integer (got ${timeoutMs})`);
      entry.timeoutMs = timeoutMs;
    }
    const onExhausted = options.onExhausted ?? (typeof handler === 'function' ? undefined : handler.onExhausted);
    if (onExhausted !== undefined) {
      if (!EXHAUSTED_POLICIES.includes(onExhausted)) {
        throw new InvalidHandlerOptionsError(eventType, `onExhausted must be one of ${EXHAUSTED_POLICIES.join(', ')} (got ${JSON.stringify(onExhausted)})`);
      }
      entry.onExhausted = onExhausted;
    }
    this.handlers.set(eventType, entry);
    return this;
  }

  /** The longest deadline any handler registered, or `fallback` when none overrides a longer one. */
  longestTimeoutMs(fallback: number): number {
    let longest = fallback;
    for (const handler of this.handlers.values()) if (handler.timeoutMs !== undefined) longest = Math.max(longest, handler.timeoutMs);
    return longest;
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
