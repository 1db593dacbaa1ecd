/**
 * The publisher's Redis side: key names and typed wrappers around the Lua
 * scripts in `scripts/` (each script's header states its keys, params and
 * result). Every script touches only keys of one Redis Cluster slot: the meta
 * and dedupe keys carry the full stream key as their hash tag.
 */
import fs from 'node:fs';
import path from 'node:path';
import type Redis from 'ioredis';

/** Meta hash of a partition stream (fencing token, database identity); same slot as the stream key. */
export function streamMetaKey(streamKey: string): string {
  return `{${streamKey}}:meta`;
}

/** Dedupe sorted set of a partition stream (outbox ids appended); same slot as the stream key. */
export function streamDedupeKey(streamKey: string): string {
  return `{${streamKey}}:dedupe`;
}

/**
 * Deletes every key under a key prefix (`REDIS_KEY_PREFIX`): the streams, and
 * the publisher's `{<stream key>}:meta|dedupe` keys, which start with `{`
 * before the prefix. Returns the number of keys deleted.
 */
export async function deleteKeysWithPrefix(redis: Redis, prefix: string): Promise<number> {
  if (!prefix) throw new Error('deleteKeysWithPrefix needs a non-empty prefix');
  const escaped = prefix.replace(/[*?[\]\\]/g, '\\$&');
  let deleted = 0;
  for (const pattern of [`${escaped}*`, `{${escaped}*`]) {
    let cursor = '0';
    do {
      const [next, keys] = await redis.scan(cursor, 'MATCH', pattern, 'COUNT', 500);
      cursor = next;
      if (keys.length > 0) deleted += await redis.unlink(...keys); // freed in the background: a long stream does not block Redis
    } while (cursor !== '0');
  }
  return deleted;
}

function loadScript(name: string): string {
  return fs.readFileSync(path.join(__dirname, 'scripts', name), 'utf8');
}

interface PublisherScripts {
  petcoverAppend(stream: string, meta: string, dedupe: string, ...args: string[]): Promise<[string, string | number, number?, string?]>;
  petcoverStampFence(meta: string, dedupe: string, token: string, databaseId: string): Promise<[string, string | number, string?]>;
  petcoverTrim(stream: string, keepAcknowledgedMs: string, orphanMaxAgeMs: string): Promise<[number, string]>;
}

const installed = new WeakSet<Redis>();

/**
 * Registers the scripts on a client (idempotent). ioredis sends EVALSHA and
 * falls back to EVAL on NOSCRIPT, so a restarted Redis needs nothing special.
 */
export function installPublisherScripts(redis: Redis): Redis & PublisherScripts {
  if (!installed.has(redis)) {
    redis.defineCommand('petcoverAppend', { numberOfKeys: 3, lua: loadScript('append.lua') });
    redis.defineCommand('petcoverStampFence', { numberOfKeys: 2, lua: loadScript('stamp-fence.lua') });
    redis.defineCommand('petcoverTrim', { numberOfKeys: 1, lua: loadScript('trim.lua') });
    installed.add(redis);
  }
  return redis as Redis & PublisherScripts;
}

/** One outbox row as appended: fields in ENTRY_FIELDS order, payload/headers as JSON text. */
export interface OutboxRowForAppend {
  id: string;
  eventId: string;
  type: string;
  partitionKey: string;
  payloadJson: string;
  headersJson: string;
  createdAt: string;
}

/** Who writes: the publisher lease's fencing token and the identity of its database. */
export interface StreamWriter {
  fencingToken: string;
  /** `databaseIdentity(sql)`: outbox ids and fencing tokens only compare within one database. */
  databaseId: string;
}

export type AppendResult =
  /**
   * `previousDatabaseId` is set when the stream was last written from another
   * database: its dedupe record was dropped and its token replaced first.
   */
  | { status: 'ok'; appended: number; skipped: number; previousDatabaseId?: string }
  | { status: 'fenced'; currentToken: string }
  /** The meta hash is gone: Redis lost data this publisher wrote. */
  | { status: 'lost' };

/**
 * Appends `rows` (in the order given) to one partition stream unless the
 * stream carries a newer fencing token from the same database. Idempotent:
 * rows already appended (same outbox id, same database) are skipped.
 * `pruneBelowId` must be at most the lowest outbox id of the stream that is
 * not yet marked published.
 */
export async function appendBatch(
  redis: Redis,
  streamKey: string,
  writer: StreamWriter,
  pruneBelowId: string,
  rows: readonly OutboxRowForAppend[],
): Promise<AppendResult> {
  const args: string[] = [writer.fencingToken, writer.databaseId, pruneBelowId];
  for (const r of rows) args.push(r.id, r.eventId, r.type, r.partitionKey, r.payloadJson, r.headersJson, r.createdAt);
  const [status, a, b, previous] = await installPublisherScripts(redis).petcoverAppend(streamKey, streamMetaKey(streamKey), streamDedupeKey(streamKey), ...args);
  if (status === 'OK') return { status: 'ok', appended: Number(a), skipped: Number(b), ...(previous ? { previousDatabaseId: previous } : {}) };
  if (status === 'FENCED') return { status: 'fenced', currentToken: String(a) };
  return { status: 'lost' };
}

export type StampResult =
  /**
   * `existed` false: no meta hash (a new stream, or Redis lost it).
   * `previousDatabaseId`: as in AppendResult.
   */
  | { status: 'ok'; existed: boolean; previousDatabaseId?: string }
  | { status: 'fenced'; currentToken: string };

/**
 * Makes the writer's token and database the fence of one partition stream,
 * unless a newer token of the same database is there. Another database's
 * fence is replaced and its dedupe record dropped (see stamp-fence.lua).
 */
export async function stampFence(redis: Redis, streamKey: string, writer: StreamWriter): Promise<StampResult> {
  const [status, value, previous] = await installPublisherScripts(redis).petcoverStampFence(
    streamMetaKey(streamKey),
    streamDedupeKey(streamKey),
    writer.fencingToken,
    writer.databaseId,
  );
  if (status === 'OK') return { status: 'ok', existed: Number(value) === 1, ...(previous ? { previousDatabaseId: previous } : {}) };
  return { status: 'fenced', currentToken: String(value) };
}

/**
 * Trims one partition stream below the oldest entry any consumer group has
 * not acknowledged or not been delivered, keeping acknowledged entries
 * younger than `keepAcknowledgedMs`. A stream without groups is trimmed only
 * by `orphanMaxAgeMs` (0 = never). Returns the number of entries removed.
 */
export async function trimStream(redis: Redis, streamKey: string, keepAcknowledgedMs: number, orphanMaxAgeMs: number): Promise<number> {
  const [removed] = await installPublisherScripts(redis).petcoverTrim(streamKey, String(keepAcknowledgedMs), String(orphanMaxAgeMs));
  return Number(removed);
}
