/**
 * The publisher's Redis side: key names and typed wrappers around the Lua
 * scripts in `scripts/` (each script's header states its keys, params and
 * result). Every script touches only keys of one Redis Cluster slot: the meta
 * and dedupe keys carry the full stream key as their hash tag.
 */
import fs from 'node:fs';
import path from 'node:path';
import type Redis from 'ioredis';

/** Meta hash of a partition stream (fencing token); same slot as the stream key. */
export function streamMetaKey(streamKey: string): string {
  return `{${streamKey}}:meta`;
}

/** Dedupe sorted set of a partition stream (outbox ids appended); same slot as the stream key. */
export function streamDedupeKey(streamKey: string): string {
  return `{${streamKey}}:dedupe`;
}

function loadScript(name: string): string {
  return fs.readFileSync(path.join(__dirname, 'scripts', name), 'utf8');
}

interface PublisherScripts {
  petcoverAppend(stream: string, meta: string, dedupe: string, ...args: string[]): Promise<[string, string | number, number?]>;
  petcoverStampFence(meta: string, token: string): Promise<[string, string | number]>;
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
    redis.defineCommand('petcoverStampFence', { numberOfKeys: 1, lua: loadScript('stamp-fence.lua') });
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

export type AppendResult =
  | { status: 'ok'; appended: number; skipped: number }
  | { status: 'fenced'; currentToken: string }
  /** The meta hash is gone: Redis lost data this publisher wrote. */
  | { status: 'lost' };

/**
 * Appends `rows` (in the order given) to one partition stream unless the
 * stream carries a newer fencing token. Idempotent: rows already appended
 * (same outbox id) are skipped. `pruneBelowId` must be at most the lowest
 * outbox id of the stream that is not yet marked published.
 */
export async function appendBatch(
  redis: Redis,
  streamKey: string,
  fencingToken: string,
  pruneBelowId: string,
  rows: readonly OutboxRowForAppend[],
): Promise<AppendResult> {
  const args: string[] = [fencingToken, pruneBelowId];
  for (const r of rows) args.push(r.id, r.eventId, r.type, r.partitionKey, r.payloadJson, r.headersJson, r.createdAt);
  const [status, a, b] = await installPublisherScripts(redis).petcoverAppend(streamKey, streamMetaKey(streamKey), streamDedupeKey(streamKey), ...args);
  if (status === 'OK') return { status: 'ok', appended: Number(a), skipped: Number(b) };
  if (status === 'FENCED') return { status: 'fenced', currentToken: String(a) };
  return { status: 'lost' };
}

export type StampResult = { status: 'ok'; existed: boolean } | { status: 'fenced'; currentToken: string };

/** Makes `fencingToken` the fence of one partition stream unless a newer one is there. */
export async function stampFence(redis: Redis, streamKey: string, fencingToken: string): Promise<StampResult> {
  const [status, value] = await installPublisherScripts(redis).petcoverStampFence(streamMetaKey(streamKey), fencingToken);
  if (status === 'OK') return { status: 'ok', existed: Number(value) === 1 };
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
