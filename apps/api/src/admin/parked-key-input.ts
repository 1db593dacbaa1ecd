/**
 * What names one parked key in an operator request (admin JSON routes and
 * console forms alike): consumer group, partition stream (as `events key
 * list` and GET /v1/admin/parked-keys print it) and partition key. The
 * actions themselves are `@petcover/outbox`'s releaseParkedKey /
 * discardParkedHead, the functions `events key release|discard` call.
 */
import { z } from 'zod';
import { PARTITION_STREAM_NAME_PATTERN, type ParkedKeyRef } from '@petcover/outbox';

/** Consumer group names, as the consumer accepts them. */
export const GROUP_NAME_PATTERN = /^[A-Za-z0-9_.-]+$/;

/** A partition key is the entity id (a uuid, a contract id): bounded so a request cannot carry megabytes into a query. */
export const MAX_PARTITION_KEY_LENGTH = 500;

export const parkedKeyRefSchema: z.ZodType<ParkedKeyRef> = z
  .object({
    group: z.string().regex(GROUP_NAME_PATTERN, 'must hold only letters, digits and _.-'),
    stream: z.string().regex(PARTITION_STREAM_NAME_PATTERN, 'must be the partition stream the parked-key list shows, like stream:<context>:<name>[:p<N>]'),
    key: z.string().min(1, 'must not be empty').max(MAX_PARTITION_KEY_LENGTH, `must be at most ${MAX_PARTITION_KEY_LENGTH} characters`),
  })
  .strict();

/** The issues of a refused input as one line: `field: problem; field: problem`. */
export function describeIssues(error: z.ZodError, what: string): string {
  return error.issues.map((i) => `${i.path.join('.') || what}: ${i.message}`).join('; ');
}
