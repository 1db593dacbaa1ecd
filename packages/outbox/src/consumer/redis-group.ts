/**
 * Consumer-group commands on one partition stream: create the group, take
 * over what a previous owner left pending, read, acknowledge.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { RedisClient } from '@petcover/service-kit';

/**
 * Creates `group` on `key` reading from the start of the stream (id 0), so
 * entries appended before the first start are delivered; MKSTREAM creates an
 * empty stream if needed. Idempotent: BUSYGROUP (already there) is ignored.
 */
export async function ensureGroup(redis: RedisClient, key: string, group: string): Promise<void> {
  try {
    await redis.xgroup('CREATE', key, group, '0', 'MKSTREAM');
  } catch (error) {
    if (!String((error as Error).message).startsWith('BUSYGROUP')) throw error;
  }
}

/** The group (or the stream) vanished: Redis restarted empty or was flushed. */
export function isNoGroupError(error: unknown): boolean {
  return String((error as Error)?.message ?? '').startsWith('NOGROUP');
}

/**
 * Moves every entry pending in `group` on `key` — whichever consumer it was
 * delivered to — to `consumer`. Safe only under the partition lease: nobody
 * else may be working on this partition. Entries trimmed from the stream are
 * dropped from the pending list by Redis. Returns how many were claimed.
 */
export async function claimAllPending(redis: RedisClient, key: string, group: string, consumer: string): Promise<number> {
  let cursor = '0-0';
  let claimed = 0;
  do {
    // XAUTOCLAIM <key> <group> <consumer> <min-idle> <start> COUNT n JUSTID → [next, ids, deleted]
    const reply = (await redis.call('XAUTOCLAIM', key, group, consumer, '0', cursor, 'COUNT', '1000', 'JUSTID')) as [string, string[], string[]?];
    cursor = reply[0];
    claimed += reply[1].length;
  } while (cursor !== '0-0');
  return claimed;
}

export interface RawEntry {
  id: string;
  /** Null when the entry was deleted/trimmed while pending. */
  fields: string[] | null;
}

export interface ReadResult {
  entries: RawEntry[];
  /**
   * Only for `>` reads that returned entries: whether an entry older than the
   * first one read is still pending in the group, whoever it was delivered to.
   * A replica that lost its lease without knowing it (paused, partitioned from
   * Postgres) can still XREADGROUP entries just before the new owner's first
   * read; those sit pending under its name and must be handled before anything
   * newer, or per-key order breaks.
   */
  olderPending: boolean;
  /**
   * The byte budget cut the read short: entries after the last one returned
   * were delivered to this consumer (pending under its name) and are read
   * next from its pending list, before any `>` read.
   */
  more: boolean;
  /** Bytes of the entries returned (fields and values). */
  bytes: number;
}

export interface ReadOptions {
  key: string;
  group: string;
  consumer: string;
  /** `>` for new entries, or an id: this consumer's pending entries after it. */
  from: string;
  count: number;
  /** Byte budget of one read (the first entry is always returned). */
  maxBytes: number;
  /** Entries the script reads in its first XREADGROUP (a guess of what fits; see read-bounded.lua). */
  firstChunk: number;
  /** XACKed just before the read, in the same pipeline. */
  ackFirst?: readonly string[];
  /**
   * For a `>` read that continues one already in hand (waitForEntry's entry):
   * olderPending looks for pending entries after this id (the entry in hand
   * is pending too, under our name, and older than anything read now).
   */
  continuing?: string;
}

interface ConsumerScripts {
  petcoverReadBounded(key: string, group: string, consumer: string, from: string, count: string, maxBytes: string, firstChunk: string): Promise<[[string, string[] | null][], number]>;
}

const installed = new WeakSet<RedisClient>();
function withScripts(redis: RedisClient): RedisClient & ConsumerScripts {
  if (!installed.has(redis)) {
    redis.defineCommand('petcoverReadBounded', { numberOfKeys: 1, lua: fs.readFileSync(path.join(__dirname, 'scripts', 'read-bounded.lua'), 'utf8') });
    installed.add(redis);
  }
  return redis as RedisClient & ConsumerScripts;
}

/**
 * Reads entries of one partition for `consumer`, bounded in entries and
 * bytes (read-bounded.lua, never blocking), XACKing `ackFirst` in the same
 * pipeline. A `>` read is followed in the same pipeline by
 * `XPENDING key group <start> + 1`: the oldest pending entry from `start`
 * (`-`, or just after the entry in hand when `continuing`); the entries just
 * read are pending too, so an oldest id below the first id read means older
 * entries are pending. The set of pending ids below the first one read can
 * only shrink after the read (new deliveries are always newer), so checking
 * right after the read is as safe as a separate round trip later.
 *
 * Why not from `-` when continuing: the entry in hand is the group's oldest
 * pending then, so a check from `-` always found it and never what a stale
 * replica read between it and this read (seen in pnpm chaos: an event handled
 * after a later one of its key).
 */
export async function readGroup(redis: RedisClient, options: ReadOptions): Promise<ReadResult> {
  const readingNew = options.from === '>';
  const pipeline = withScripts(redis).pipeline() as ReturnType<RedisClient['pipeline']> & { petcoverReadBounded(...args: string[]): unknown };
  const acking = options.ackFirst !== undefined && options.ackFirst.length > 0;
  if (acking) pipeline.xack(options.key, options.group, ...(options.ackFirst as string[]));
  pipeline.petcoverReadBounded(options.key, options.group, options.consumer, options.from, String(options.count), String(options.maxBytes), String(options.firstChunk));
  // XPENDING <key> <group> - + 1 → [[id, consumer, idle, deliveries]] or [].
  if (readingNew) pipeline.call('XPENDING', options.key, options.group, options.continuing === undefined ? '-' : `(${options.continuing}`, '+', '1');
  const results = (await pipeline.exec()) ?? [];
  for (const [error] of results) if (error) throw error;
  const [raw, more] = results[acking ? 1 : 0]?.[1] as [[string, string[] | null][], number];
  const entries = raw.map(([id, fields]) => ({ id, fields }));
  const oldest = readingNew && entries.length > 0 ? (results[acking ? 2 : 1]?.[1] as [string, ...unknown[]][] | undefined)?.[0]?.[0] : undefined;
  return {
    entries,
    olderPending: oldest !== undefined && compareEntryIds(oldest, (entries[0] as RawEntry).id) < 0,
    more: more === 1,
    bytes: bytesOf(entries),
  };
}

/**
 * Waits (XREADGROUP BLOCK) for the next new entry of the partition, after
 * XACKing `ackFirst` in the same pipeline. Without `rest` it delivers at most
 * ONE entry, so an idle partition waiting outside its concurrency slot holds
 * at most one entry in memory; the bounded read takes over once entries flow.
 *
 * With `rest` (the worker waits holding its slot), a bounded read of up to
 * `rest.count` more entries follows the wait in the same pipeline: Redis runs
 * it as soon as the wait returns, so a burst is one round trip, not the wait
 * and then a read. (If the wait times out empty, the read still runs: what
 * arrived in between is read, not lost.) Its byte budget does not count the
 * waited entry: the entries in hand stay within `rest.maxBytes` plus one.
 *
 * Older pending entries (see ReadResult.olderPending): a stale replica can
 * only read between our reads, so its entries are older than our first entry
 * or, between the wait and the read, older than our second. The two oldest
 * pending ids (`XPENDING - + 2`, taken last) tell both: the oldest is below
 * our first, or the second is below our second.
 */
export async function waitForEntry(
  redis: RedisClient,
  options: { key: string; group: string; consumer: string; blockMs: number; ackFirst?: readonly string[]; rest?: { count: number; maxBytes: number; firstChunk: number } },
): Promise<ReadResult> {
  const pipeline = withScripts(redis).pipeline() as ReturnType<RedisClient['pipeline']> & { petcoverReadBounded(...args: string[]): unknown };
  const acking = options.ackFirst !== undefined && options.ackFirst.length > 0;
  if (acking) pipeline.xack(options.key, options.group, ...(options.ackFirst as string[]));
  pipeline.call('XREADGROUP', 'GROUP', options.group, options.consumer, 'COUNT', 1, 'BLOCK', options.blockMs, 'STREAMS', options.key, '>');
  const { rest } = options;
  if (rest) pipeline.petcoverReadBounded(options.key, options.group, options.consumer, '>', String(rest.count), String(rest.maxBytes), String(rest.firstChunk));
  pipeline.call('XPENDING', options.key, options.group, '-', '+', '2');
  const results = (await pipeline.exec()) ?? [];
  for (const [error] of results) if (error) throw error;
  let at = acking ? 1 : 0;
  const reply = results[at++]?.[1] as [string, [string, string[] | null][]][] | null;
  const entries: RawEntry[] = (reply?.[0]?.[1] ?? []).map(([id, fields]) => ({ id, fields }));
  let more = false;
  if (rest) {
    const [raw, cut] = results[at++]?.[1] as [[string, string[] | null][], number];
    for (const [id, fields] of raw) entries.push({ id, fields });
    more = cut === 1;
  }
  if (entries.length === 0) return { entries, olderPending: false, more: false, bytes: 0 };
  const pending = ((results[at]?.[1] as [string, ...unknown[]][] | undefined) ?? []).map(([id]) => id);
  const olderPending = pending.some((id, i) => entries[i] !== undefined && compareEntryIds(id, entries[i]!.id) < 0);
  return { entries, olderPending, more, bytes: bytesOf(entries) };
}

/** Bytes of the entries' fields and values (what the read budget counts). */
function bytesOf(entries: readonly RawEntry[]): number {
  let bytes = 0;
  for (const entry of entries) for (const field of entry.fields ?? []) bytes += Buffer.byteLength(field);
  return bytes;
}

/** Orders two stream entry ids (`ms-seq`) numerically. */
function compareEntryIds(a: string, b: string): number {
  const [aMs, aSeq] = a.split('-').map(BigInt) as [bigint, bigint];
  const [bMs, bSeq] = b.split('-').map(BigInt) as [bigint, bigint];
  if (aMs !== bMs) return aMs < bMs ? -1 : 1;
  return aSeq === bSeq ? 0 : aSeq < bSeq ? -1 : 1;
}

export async function acknowledge(redis: RedisClient, key: string, group: string, ids: readonly string[]): Promise<void> {
  if (ids.length > 0) await redis.xack(key, group, ...ids);
}

/** How many entries `consumer` still has pending on `key` (0 when the group is gone). */
export async function pendingCountOf(redis: RedisClient, key: string, group: string, consumer: string): Promise<number> {
  try {
    const reply = (await redis.call('XPENDING', key, group, '-', '+', '1000', consumer)) as unknown[];
    return reply.length;
  } catch (error) {
    if (isNoGroupError(error)) return 0;
    throw error;
  }
}

/** Lag (Redis 7 XINFO GROUPS) and pending count of `group` on `key`; null when the group does not exist. */
export async function groupBacklog(redis: RedisClient, key: string, group: string): Promise<{ lag: number | null; pending: number } | null> {
  let groups: unknown[][];
  try {
    groups = (await redis.call('XINFO', 'GROUPS', key)) as unknown[][];
  } catch (error) {
    if (String((error as Error).message).startsWith('ERR no such key')) return null;
    throw error;
  }
  for (const info of groups) {
    const fields = new Map<string, unknown>();
    for (let i = 0; i + 1 < info.length; i += 2) fields.set(String(info[i]), info[i + 1]);
    if (fields.get('name') !== group) continue;
    const lag = fields.get('lag');
    return { lag: lag === null || lag === undefined ? null : Number(lag), pending: Number(fields.get('pending') ?? 0) };
  }
  return null;
}
