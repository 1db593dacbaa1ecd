/**
 * The publisher's Redis side: key names and typed wrappers around the Lua
 * scripts in `scripts/` (each script's header states its keys, params and
 * result). Every script touches only keys of one Redis Cluster slot: the meta
 * and dedupe keys carry the full stream key as their hash tag.
 */
import fs from 'node:fs';
import path from 'node:path';
import { scanKeys, type RedisClient } from '@petcover/service-kit';
import { redisKeyPatterns, streamDedupeKey, streamMetaKey } from '../streams';

/**
 * Deletes every key under a key prefix (`REDIS_KEY_PREFIX`): the streams, and
 * the publisher's `{<stream key>}:meta|dedupe` keys, which start with `{`
 * before the prefix. Scans every master of a cluster. Returns the number of
 * keys deleted.
 */
export async function deleteKeysWithPrefix(redis: RedisClient, prefix: string): Promise<number> {
  if (!prefix) throw new Error('deleteKeysWithPrefix needs a non-empty prefix');
  let deleted = 0;
  for (const pattern of redisKeyPatterns(prefix)) {
    for await (const { node, keys } of scanKeys(redis, pattern, { count: 500 })) {
      // One key per UNLINK: a batch from a cluster node spans slots. UNLINK
      // frees in the background, so a long stream does not block Redis.
      const pipeline = node.pipeline();
      for (const key of keys) pipeline.unlink(key);
      for (const [error, count] of (await pipeline.exec()) ?? []) {
        if (error) throw error;
        deleted += Number(count);
      }
    }
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

const installed = new WeakSet<RedisClient>();

/**
 * Registers the scripts on a client (idempotent). ioredis sends EVALSHA and
 * falls back to EVAL on NOSCRIPT, so a restarted Redis needs nothing special.
 */
export function installPublisherScripts(redis: RedisClient): RedisClient & PublisherScripts {
  if (!installed.has(redis)) {
    redis.defineCommand('petcoverAppend', { numberOfKeys: 3, lua: loadScript('append.lua') });
    redis.defineCommand('petcoverStampFence', { numberOfKeys: 2, lua: loadScript('stamp-fence.lua') });
    redis.defineCommand('petcoverTrim', { numberOfKeys: 1, lua: loadScript('trim.lua') });
    installed.add(redis);
  }
  return redis as RedisClient & PublisherScripts;
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
  redis: RedisClient,
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
export async function stampFence(redis: RedisClient, streamKey: string, writer: StreamWriter): Promise<StampResult> {
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
export async function trimStream(redis: RedisClient, streamKey: string, keepAcknowledgedMs: number, orphanMaxAgeMs: number): Promise<number> {
  const [removed] = await installPublisherScripts(redis).petcoverTrim(streamKey, String(keepAcknowledgedMs), String(orphanMaxAgeMs));
  return Number(removed);
}
