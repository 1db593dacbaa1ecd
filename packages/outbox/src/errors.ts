/**
 * Typed errors of the outbox. Callers branch on the class, never on messages:
 * a validation error means "fix the input", nothing was written.
 */
export class OutboxError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** An event handed to `enqueue` is malformed. `field` names the offending field. */
export class OutboxValidationError extends OutboxError {
  constructor(
    readonly field: string,
    readonly reason: string,
  ) {
    super(`invalid outbox event: ${field} ${reason}`);
  }
}

/** An event id is already in the outbox (or appears twice in one call). Nothing was written. */
export class DuplicateEventIdError extends OutboxError {
  constructor(readonly eventIds: string[]) {
    super(`duplicate event_id: ${eventIds.join(', ')} already in events.outbox_event`);
  }
}

/** A Redis key prefix (REDIS_KEY_PREFIX, `keyPrefix`) that would break the streams' hash tags. */
export class InvalidKeyPrefixError extends OutboxError {}
