/**
 * Stream names in all their forms, and the Redis entry format. The publisher
 * writes entries with `encodeEntry`; the consumer reads them with `decodeEntry`.
 *
 * One stream has four kinds of name; every conversion between them is here:
 * - logical stream  `stream:<context>:<name>`: what `enqueue` takes, the
 *   `stream_name` of outbox rows and of the publisher's lease;
 * - partition stream `stream:<context>:<name>:p<N>` (or the logical name when
 *   the stream has one partition): the `stream_name` of consumer leases and
 *   dead letters;
 * - Redis stream key `<REDIS_KEY_PREFIX><partition stream>`;
 * - the publisher's side keys `{<Redis stream key>}:meta|dedupe`, hash-tagged
 *   with the whole stream key so they share its Redis Cluster slot.
 * A logical name has exactly three `:`-separated parts (its name part cannot
 * contain `:`), so `stream:orders:p1` is a logical stream called `p1`, never a
 * partition of `stream:orders` (which is not a stream name at all).
 */
import { z } from 'zod';
import { InvalidKeyPrefixError, OutboxValidationError } from './errors';

/** `stream:<context>:<name>`, e.g. `stream:contracting:contract_changes`. */
export const STREAM_NAME_PATTERN = /^stream:[A-Za-z0-9_-]+:[A-Za-z0-9_.-]+$/;

/** A partition stream: the logical name, optionally followed by `:p<N>`. */
export const PARTITION_STREAM_NAME_PATTERN = /^(stream:[A-Za-z0-9_-]+:[A-Za-z0-9_.-]+)(?::p(0|[1-9][0-9]*))?$/;

export function assertStreamName(name: unknown, field = 'stream'): asserts name is string {
  if (typeof name !== 'string' || !STREAM_NAME_PATTERN.test(name)) {
    throw new OutboxValidationError(field, `must match stream:<context>:<name> (got ${JSON.stringify(name)})`);
  }
}

/** How many partitions each stream has; streams not listed have one. */
export type StreamPartitions = Readonly<Record<string, number>>;

/** Most partitions a stream may have: each is its own Redis stream and consumer lease. */
export const MAX_PARTITIONS = 1024;

/**
 * Parses `stream:a:b=4,stream:c:d=2` (env STREAM_PARTITIONS, flag --partitions)
 * into per-stream partition counts. Throws an Error naming the bad item.
 */
export function parseStreamPartitions(text: string | undefined): StreamPartitions {
  const result: Record<string, number> = {};
  for (const item of (text ?? '').split(',').map((s) => s.trim()).filter(Boolean)) {
    const at = item.lastIndexOf('=');
    const stream = at > 0 ? item.slice(0, at) : '';
    const countText = at > 0 ? item.slice(at + 1) : '';
    if (!STREAM_NAME_PATTERN.test(stream)) throw new Error(`"${item}": expected stream:<context>:<name>=<count>`);
    const count = Number(countText);
    if (!/^\d+$/.test(countText) || count < 1 || count > MAX_PARTITIONS) {
      throw new Error(`"${item}": partition count must be an integer from 1 to ${MAX_PARTITIONS}`);
    }
    result[stream] = count;
  }
  return result;
}

/** The inverse of parseStreamPartitions: `{ 'stream:a:b': 4 }` → `stream:a:b=4`. */
export function formatStreamPartitions(partitions: StreamPartitions): string {
  return Object.entries(partitions)
    .map(([stream, count]) => `${stream}=${count}`)
    .join(',');
}

/** zod schema of STREAM_PARTITIONS for the apps' env.ts. */
export const streamPartitionsSchema = z.string().transform((text, ctx) => {
  try {
    return parseStreamPartitions(text);
  } catch (error) {
    ctx.addIssue({ code: 'custom', message: (error as Error).message });
    return z.NEVER;
  }
});

export function partitionCount(stream: string, partitions: StreamPartitions | undefined): number {
  return partitions?.[stream] ?? 1;
}

/**
 * 32-bit FNV-1a of the UTF-8 key. Stable across processes and languages, which
 * is all partitioning needs: one key always lands in one partition.
 */
export function hashPartitionKey(key: string): number {
  let hash = 0x811c9dc5;
  for (const byte of Buffer.from(key, 'utf8')) {
    hash ^= byte;
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return hash;
}

export function partitionFor(partitionKey: string, count: number): number {
  return count <= 1 ? 0 : hashPartitionKey(partitionKey) % count;
}

/**
 * Name of one partition of a stream. With a single partition it is the stream
 * name itself, so `XINFO STREAM stream:contracting:contract_changes` works.
 * This name is also the `stream_name` of consumer leases.
 */
export function partitionStreamName(stream: string, partition: number, count: number): string {
  return count <= 1 ? stream : `${stream}:p${partition}`;
}

export function partitionStreamNames(stream: string, count: number): string[] {
  return Array.from({ length: Math.max(1, count) }, (_, p) => partitionStreamName(stream, p, count));
}

/**
 * Refuses a Redis key prefix (REDIS_KEY_PREFIX) holding `{` or `}`: every key
 * of a stream shares the hash tag `{<prefix><partition stream>}` (see
 * streamMetaKey), and a brace in the prefix would end that tag early and
 * spread one stream's keys over several cluster slots (CROSSSLOT errors).
 */
export function assertKeyPrefix(prefix: string): void {
  if (/[{}]/.test(prefix)) {
    throw new InvalidKeyPrefixError(`Redis key prefix ${JSON.stringify(prefix)} must not contain { or }: it would break the hash tag that keeps a stream's keys in one cluster slot`);
  }
}

/** zod schema of REDIS_KEY_PREFIX for env.ts files: default '', braces refused. */
export const keyPrefixSchema = z
  .string()
  .default('')
  .superRefine((prefix, ctx) => {
    try {
      assertKeyPrefix(prefix);
    } catch (error) {
      ctx.addIssue({ code: 'custom', message: (error as Error).message });
    }
  });


export interface ParsedPartitionStream {
  /** The logical stream. */
  stream: string;
  /** The partition index; null for the stream's own name (a stream with one partition). */
  partition: number | null;
}

/**
 * `stream:a:b` → {stream: `stream:a:b`, partition: null};
 * `stream:a:b:p3` → {stream: `stream:a:b`, partition: 3};
 * anything else (no prefix allowed) → null.
 */
export function parsePartitionStreamName(name: string): ParsedPartitionStream | null {
  const match = PARTITION_STREAM_NAME_PATTERN.exec(name);
  if (!match) return null;
  return { stream: match[1] as string, partition: match[2] === undefined ? null : Number(match[2]) };
}

/**
 * The logical stream of a partition stream (`stream:a:b:p2` → `stream:a:b`);
 * a logical name is returned as is. Throws OutboxValidationError on anything
 * that is neither, e.g. a lease row edited by hand.
 */
export function logicalStreamOf(partitionStream: string): string {
  const parsed = parsePartitionStreamName(partitionStream);
  if (!parsed) {
    throw new OutboxValidationError('stream', `must match stream:<context>:<name>[:p<N>] (got ${JSON.stringify(partitionStream)})`);
  }
  return parsed.stream;
}

/** The Redis key of a partition stream; `keyPrefix` (REDIS_KEY_PREFIX) isolates tests and benchmarks. */
export function redisStreamKey(partitionStream: string, keyPrefix = ''): string {
  return `${keyPrefix}${partitionStream}`;
}

/** Redis keys of every partition of a logical stream, in partition order. */
export function redisStreamKeys(stream: string, count: number, keyPrefix = ''): string[] {
  return partitionStreamNames(stream, count).map((name) => redisStreamKey(name, keyPrefix));
}

/**
 * The partition stream a Redis key holds: the key without `keyPrefix`, when
 * that is a partition stream name; null for any other key (another prefix,
 * the publisher's side keys, unrelated data).
 */
export function partitionStreamOfKey(key: string, keyPrefix = ''): string | null {
  if (!key.startsWith(keyPrefix)) return null;
  const name = key.slice(keyPrefix.length);
  return parsePartitionStreamName(name) ? name : null;
}

/** Meta hash of a partition stream (fencing token, database identity); same slot as the stream key. */
export function streamMetaKey(streamKey: string): string {
  return `{${streamKey}}:meta`;
}

/** Dedupe sorted set of a partition stream (outbox ids appended); same slot as the stream key. */
export function streamDedupeKey(streamKey: string): string {
  return `{${streamKey}}:dedupe`;
}

/** `text` with Redis glob characters escaped, for SCAN MATCH on a literal prefix. */
export function escapeRedisGlob(text: string): string {
  return text.replace(/[*?[\]\\]/g, (c) => `\\${c}`);
}

/**
 * SCAN MATCH patterns of every key under `keyPrefix`: the streams
 * (`<prefix>…`) and the publisher's side keys (`{<prefix>…}:meta|dedupe`,
 * which begin with the hash tag's `{`).
 */
export function redisKeyPatterns(keyPrefix: string): [streams: string, sideKeys: string] {
  const escaped = escapeRedisGlob(keyPrefix);
  return [`${escaped}*`, `{${escaped}*`];
}

/** SCAN MATCH pattern of the stream keys under `keyPrefix` (partition suffix or not). */
export function redisStreamKeyPattern(keyPrefix: string): string {
  return `${escapeRedisGlob(keyPrefix)}stream:*`;
}

/** Fields of one Redis stream entry, all strings, as the publisher writes them. */
export const ENTRY_FIELDS = [
  'outbox_id',
  'event_id',
  'type',
  'partition_key',
  'payload',
  'headers',
  'created_at',
] as const;
export type EntryField = (typeof ENTRY_FIELDS)[number];

export interface StreamEvent {
  outboxId: string;
  eventId: string;
  type: string;
  partitionKey: string;
  payload: unknown;
  headers: Record<string, string>;
  createdAt: string;
}

/** Flattens an event into the field/value list XADD takes. */
export function encodeEntry(event: StreamEvent): string[] {
  return [
    'outbox_id', event.outboxId,
    'event_id', event.eventId,
    'type', event.type,
    'partition_key', event.partitionKey,
    'payload', JSON.stringify(event.payload),
    'headers', JSON.stringify(event.headers),
    'created_at', event.createdAt,
  ];
}

export class MalformedEntryError extends Error {
  constructor(
    message: string,
    readonly fields: Record<string, string>,
  ) {
    super(message);
    this.name = 'MalformedEntryError';
  }
}

/** Parses a flat field/value list read from Redis; throws MalformedEntryError naming what is missing or unparsable. */
export function decodeEntry(flat: readonly string[]): StreamEvent {
  const fields: Record<string, string> = {};
  for (let i = 0; i + 1 < flat.length; i += 2) fields[flat[i] as string] = flat[i + 1] as string;
  const missing = ENTRY_FIELDS.filter((f) => fields[f] === undefined || fields[f] === '');
  if (missing.length > 0) throw new MalformedEntryError(`stream entry is missing field(s): ${missing.join(', ')}`, fields);
  const parse = (field: EntryField): unknown => {
    try {
      return JSON.parse(fields[field] as string);
    } catch {
      throw new MalformedEntryError(`stream entry field ${field} is not valid JSON`, fields);
    }
  };
  const headers = parse('headers');
  if (headers === null || typeof headers !== 'object' || Array.isArray(headers)) {
    throw new MalformedEntryError('stream entry field headers is not a JSON object', fields);
  }
  return {
    outboxId: fields.outbox_id as string,
    eventId: fields.event_id as string,
    type: fields.type as string,
    partitionKey: fields.partition_key as string,
    payload: parse('payload'),
    headers: headers as Record<string, string>,
    createdAt: fields.created_at as string,
  };
}
