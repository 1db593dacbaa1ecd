/**
 * The publisher's Redis side: key names and typed wrappers around the Lua
 * scripts in `scripts/` (each script's header states its keys, params and
 * result). Every script touches only keys of one Redis Cluster slot: the meta
 * key carries the full stream key as its hash tag.
 */
import fs from 'node:fs';
import path from 'node:path';
import { scanKeys, type RedisClient } from '@petcover/service-kit';
import { redisKeyPatterns, streamMetaKey } from '../streams';

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
  petcoverAppend(stream: string, meta: string, ...args: string[]): Promise<[string, ...Array<string | number>]>;
  petcoverStampFence(meta: string, stream: string, token: string, databaseId: string): Promise<[string, string | number, string?, string?]>;
  petcoverStreamHead(meta: string, stream: string): Promise<[number, string]>;
  petcoverTrim(stream: string, keepAcknowledgedMs: string, orphanMaxAgeMs: string): Promise<[number, string]>;
}

const installed = new WeakSet<RedisClient>();

/**
 * Registers the scripts on a client (idempotent). ioredis sends EVALSHA and
 * falls back to EVAL on NOSCRIPT, so a restarted Redis needs nothing special.
 */
export function installPublisherScripts(redis: RedisClient): RedisClient & PublisherScripts {
  if (!installed.has(redis)) {
    redis.defineCommand('petcoverAppend', { numberOfKeys: 2, lua: loadScript('append.lua') });
    redis.defineCommand('petcoverStampFence', { numberOfKeys: 2, lua: loadScript('stamp-fence.lua') });
    redis.defineCommand('petcoverStreamHead', { numberOfKeys: 2, lua: loadScript('stream-head.lua') });
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
   * `entryIds[i]` is the id Redis gave `rows[i]`. `previousDatabaseId` is set
   * when the stream was last written from another database (its fence was
   * replaced first).
   */
  | { status: 'ok'; entryIds: string[]; previousDatabaseId?: string }
  | { status: 'fenced'; currentToken: string }
  /** The meta hash is gone: Redis lost data this publisher wrote, or it is a new stream. */
  | { status: 'lost' }
  /** The stream's last entry id is `lastEntryId`, not the one expected: reconcile first. */
  | { status: 'moved'; lastEntryId: string };

/**
 * Appends `rows` (in the order given) to one partition stream if, and only
 * if, the stream's last entry id is `expectedLastEntryId` and it carries no
 * newer fencing token from the same database. Otherwise nothing is written, so
 * a re-sent batch can never add a second copy.
 */
export async function appendBatch(
  redis: RedisClient,
  streamKey: string,
  writer: StreamWriter,
  expectedLastEntryId: string,
  rows: readonly OutboxRowForAppend[],
): Promise<AppendResult> {
  const args: string[] = [writer.fencingToken, writer.databaseId, expectedLastEntryId];
  for (const r of rows) args.push(r.id, r.eventId, r.type, r.partitionKey, r.payloadJson, r.headersJson, r.createdAt);
  const [status, first, ...rest] = await installPublisherScripts(redis).petcoverAppend(streamKey, streamMetaKey(streamKey), ...args);
  if (status === 'OK') return { status: 'ok', entryIds: rest.map(String), ...(first ? { previousDatabaseId: String(first) } : {}) };
  if (status === 'FENCED') return { status: 'fenced', currentToken: String(first) };
  if (status === 'MOVED') return { status: 'moved', lastEntryId: String(first) };
  return { status: 'lost' };
}

export type StampResult =
  /**
   * `existed` false: no meta hash (a new stream, or Redis lost it).
   * `lastEntryId`: the stream's last-generated-id ('0-0' when there is no stream).
   * `previousDatabaseId`: as in AppendResult.
   */
  | { status: 'ok'; existed: boolean; lastEntryId: string; previousDatabaseId?: string }
  | { status: 'fenced'; currentToken: string };

/**
 * Makes the writer's token and database the fence of one partition stream,
 * unless a newer token of the same database is there, and reports where the
 * stream ends. Another database's fence is replaced (see stamp-fence.lua).
 */
export async function stampFence(redis: RedisClient, streamKey: string, writer: StreamWriter): Promise<StampResult> {
  const [status, value, previous, last] = await installPublisherScripts(redis).petcoverStampFence(
    streamMetaKey(streamKey),
    streamKey,
    writer.fencingToken,
    writer.databaseId,
  );
  if (status === 'OK') return { status: 'ok', existed: Number(value) === 1, lastEntryId: String(last), ...(previous ? { previousDatabaseId: previous } : {}) };
  return { status: 'fenced', currentToken: String(value) };
}

/** Read-only: whether the meta hash exists, and the stream's last-generated-id ('0-0': no stream). */
export async function streamHead(redis: RedisClient, streamKey: string): Promise<{ hasMeta: boolean; lastEntryId: string }> {
  const [hasMeta, last] = await installPublisherScripts(redis).petcoverStreamHead(streamMetaKey(streamKey), streamKey);
  return { hasMeta: Number(hasMeta) === 1, lastEntryId: String(last) };
}

/** An entry as the publisher reads it back to reconcile: where it is and which row it carries. */
export interface AppendedEntry {
  entryId: string;
  outboxId: string;
  eventId: string;
}

/**
 * Up to `count` entries of one partition stream after `afterEntryId`
 * (exclusive), oldest first; or, with `afterEntryId` null, the newest `count`
 * entries. Entries without an outbox_id (not written by a publisher) are skipped.
 */
export async function entriesAfter(redis: RedisClient, streamKey: string, afterEntryId: string | null, count: number): Promise<{ entries: AppendedEntry[]; lastSeen: string | null; more: boolean }> {
  const raw = afterEntryId === null ? (await redis.xrevrange(streamKey, '+', '-', 'COUNT', count)).reverse() : await redis.xrange(streamKey, `(${afterEntryId}`, '+', 'COUNT', count);
  const entries: AppendedEntry[] = [];
  for (const [entryId, flat] of raw) {
    let outboxId: string | undefined;
    let eventId: string | undefined;
    for (let i = 0; i + 1 < flat.length; i += 2) {
      if (flat[i] === 'outbox_id') outboxId = flat[i + 1];
      else if (flat[i] === 'event_id') eventId = flat[i + 1];
    }
    if (outboxId !== undefined && eventId !== undefined && /^\d+$/.test(outboxId)) entries.push({ entryId, outboxId, eventId });
  }
  return { entries, lastSeen: raw.length > 0 ? raw[raw.length - 1]![0] : null, more: afterEntryId !== null && raw.length === count };
}

/**
 * Trims one partition stream below the oldest entry any consumer group has
 * not acknowledged or not been delivered, keeping acknowledged entries
 * younger than `keepAcknowledgedMs`. A stream without groups is trimmed only
 * by `orphanMaxAgeMs` (0 = never). Returns the number of entries removed and
 * the MINID used (null when nothing was trimmed).
 */
export async function trimStream(redis: RedisClient, streamKey: string, keepAcknowledgedMs: number, orphanMaxAgeMs: number): Promise<{ removed: number; minId: string | null }> {
  const [removed, minId] = await installPublisherScripts(redis).petcoverTrim(streamKey, String(keepAcknowledgedMs), String(orphanMaxAgeMs));
  return { removed: Number(removed), minId: minId ? String(minId) : null };
}
