/**
 * The consumer's two hot statements on Postgres, each in one place.
 */
import { sql as drizzleSql } from 'drizzle-orm';
import type { Transaction } from '../db';
import type { LeaseRole } from '../lease/lease';

/**
 * Records `eventIds` as processed by `group` inside `tx` and returns the ids
 * that were NOT yet recorded (those whose handler must run). Ids already
 * present are duplicates: their effect committed before.
 *
 * SQL: INSERT INTO events.processed_event (group_name, event_id)
 *        SELECT $group, unnest($ids::uuid[]) ON CONFLICT DO NOTHING RETURNING event_id
 * Params: group name; event ids (validated UUIDs, passed as one array literal).
 * Result: the set of newly inserted event ids (lower case).
 */
export async function markProcessed(tx: Transaction, group: string, eventIds: readonly string[]): Promise<Set<string>> {
  if (eventIds.length === 0) return new Set();
  const rows = (await tx.execute(drizzleSql`
    INSERT INTO events.processed_event (group_name, event_id)
    SELECT ${group}, unnest(${`{${eventIds.join(',')}}`}::uuid[])
    ON CONFLICT DO NOTHING
    RETURNING event_id::text AS event_id`)) as unknown as { event_id: string }[];
  return new Set(rows.map((r) => r.event_id));
}

export class PartitionLeaseLostError extends Error {
  constructor(
    readonly partitionStream: string,
    readonly group: string,
  ) {
    super(`lease of ${partitionStream} for group ${group} is no longer ours; not committing`);
    this.name = 'PartitionLeaseLostError';
  }
}

/**
 * Fence checked just before COMMIT: the partition lease must still be the
 * grant this worker started under — our owner id AND its fencing token.
 * `FOR SHARE` holds the lease row until our commit, so a takeover (an UPDATE of
 * that row) waits for it: a replica that lost its lease can never commit an
 * effect after the new owner started, which keeps per-partition order even
 * against a paused zombie. Exactly-once itself comes from processed_event.
 *
 * The token matters when the lease comes BACK: a replica that stalled past
 * its TTL, while another replica took the partition, parked keys on it and
 * gave it up again, renews "its" lease on waking (a new grant, a new token).
 * Its old worker knows nothing of what happened meanwhile (which keys are
 * parked now, what is pending); checked by owner id alone it could still
 * commit, and ran a key's later event before the earlier one parked by the
 * other replica. With the token it cannot: the consumer replaces it.
 *
 * An expired lease that nobody took over yet is still ours to commit under:
 * the row lock makes the commit happen strictly before any takeover.
 *
 * SQL: SELECT 1 FROM events.stream_lease WHERE stream_name=$1 AND role=$2 AND owner_id=$3 AND fencing_token=$4 FOR SHARE
 * Throws PartitionLeaseLostError when no row matches.
 */
export async function assertPartitionLease(
  tx: Transaction,
  lease: { streamName: string; role: LeaseRole; ownerId: string; fencingToken: string; group: string },
): Promise<void> {
  const rows = await tx.execute(drizzleSql`
    SELECT 1 FROM events.stream_lease
    WHERE stream_name = ${lease.streamName} AND role = ${lease.role} AND owner_id = ${lease.ownerId}
      AND fencing_token = ${lease.fencingToken}::bigint
    FOR SHARE`);
  if (rows.length === 0) throw new PartitionLeaseLostError(lease.streamName, lease.group);
}
