/**
 * One definition per event type, shared by producer and consumer: its stream,
 * its payload schema and how to derive its partition key.
 */
import type { z } from 'zod';
import { OutboxValidationError } from './errors';
import type { OutboxEventInput } from './enqueue';
import { assertStreamName } from './streams';

export interface EventDefinition<S extends z.ZodType<Record<string, unknown>>> {
  readonly type: string;
  readonly stream: string;
  readonly schema: S;
  /**
   * Validates `payload` against the schema and returns the input for
   * `enqueue`. Throws OutboxValidationError naming the first bad field.
   */
  build(payload: z.input<S>, options?: { headers?: Record<string, string>; eventId?: string }): OutboxEventInput;
}

export function defineEvent<S extends z.ZodType<Record<string, unknown>>>(definition: {
  type: string;
  stream: string;
  schema: S;
  partitionKey: (payload: z.output<S>) => string;
}): EventDefinition<S> {
  assertStreamName(definition.stream);
  return {
    type: definition.type,
    stream: definition.stream,
    schema: definition.schema,
    build(payload, options = {}) {
      const parsed = definition.schema.safeParse(payload);
      if (!parsed.success) {
        const issue = parsed.error.issues[0];
        const path = ['payload', ...(issue?.path ?? []).map(String)].join('.');
        throw new OutboxValidationError(path, `fails the ${definition.type} schema: ${issue?.message ?? 'invalid'}`);
      }
      return {
        stream: definition.stream,
        type: definition.type,
        partitionKey: definition.partitionKey(parsed.data),
        payload: parsed.data,
        headers: options.headers,
        eventId: options.eventId,
      };
    },
  };
}
