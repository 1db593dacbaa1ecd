/**
 * Redis stream entry ids (`<ms>-<seq>`): ordering and parts. Ids compare as a
 * pair of integers, never as text ('9-0' < '10-0').
 */

/** The id before every entry: what the publisher expects of a stream that does not exist. */
export const NO_ENTRY = '0-0';

const ENTRY_ID = /^(\d+)-(\d+)$/;

export function isEntryId(text: string): boolean {
  return ENTRY_ID.test(text);
}

/** <0, 0, >0 as `a` is older than, equal to or newer than `b`. */
export function compareEntryIds(a: string, b: string): number {
  const [aMs, aSeq] = entryIdParts(a);
  const [bMs, bSeq] = entryIdParts(b);
  if (aMs !== bMs) return aMs < bMs ? -1 : 1;
  return aSeq === bSeq ? 0 : aSeq < bSeq ? -1 : 1;
}

/** [ms, seq] as bigints. Throws on a malformed id. */
export function entryIdParts(id: string): [bigint, bigint] {
  const match = ENTRY_ID.exec(id);
  if (!match) throw new Error(`not a Redis stream entry id: "${id}"`);
  return [BigInt(match[1]!), BigInt(match[2]!)];
}

/** Milliseconds encoded in an entry id. */
export function entryIdMs(id: string): number {
  return Number(id.split('-')[0]);
}
