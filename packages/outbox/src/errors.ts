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

/**
 * The error Postgres itself raised: drizzle wraps driver errors ("Failed
 * query: <sql> params: ...") with the PostgresError as `cause`. Returns the
 * innermost error of the cause chain that carries a `code`, else `error`.
 * Use its `code` to branch and its `message` in logs (the wrapper's message
 * quotes the parameters, payloads included).
 */
export function databaseErrorOf(error: unknown): unknown {
  let current: unknown = error;
  let found: unknown = undefined;
  for (let depth = 0; depth < 5 && current instanceof Error; depth++) {
    if ((current as { code?: unknown }).code !== undefined) found = current;
    current = (current as { cause?: unknown }).cause;
  }
  return found ?? error;
}
