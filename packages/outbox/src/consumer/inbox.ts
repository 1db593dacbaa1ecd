/**
 * The consumer's two hot statements on Postgres, each in one place.
 */
import { sql as drizzleSql } from 'drizzle-orm';
import { executePrepared, pipelinesOn, type Database, type Transaction } from '../db';
import { databaseErrorOf } from '../errors';
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
  const rows = await executePrepared<{ event_id: string }>(tx, drizzleSql`
    INSERT INTO events.processed_event (group_name, event_id)
    SELECT ${group}, unnest(${`{${eventIds.join(',')}}`}::uuid[])
    ON CONFLICT DO NOTHING
    RETURNING event_id::text AS event_id`);
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

/** The partition lease a worker commits under (see assertPartitionLease). */
export interface PartitionLeaseRef {
  streamName: string;
  role: LeaseRole;
  ownerId: string;
  fencingToken: string;
  group: string;
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
 * The statement FAILS when no row matches (its CASE casts a text to int,
 * SQLSTATE 22P02, message "partition lease lost ..."), so that it can travel
 * with the COMMIT behind it (commitFenced): a failed statement aborts the
 * transaction, and Postgres answers a COMMIT of an aborted transaction with
 * ROLLBACK. (The count is in the text so the planner cannot fold the cast.)
 *
 * SQL: SELECT CASE WHEN count(*) = 1 THEN 0 ELSE ('partition lease lost: ' || count(*) || ' rows')::int END
 *      FROM (SELECT 1 FROM events.stream_lease WHERE stream_name=$1 AND role=$2 AND owner_id=$3 AND fencing_token=$4 FOR SHARE) lease
 */
function fenceQuery(lease: PartitionLeaseRef) {
  return drizzleSql`
    SELECT CASE WHEN count(*) = 1 THEN 0 ELSE ('partition lease lost: ' || count(*) || ' matching rows')::int END AS fenced
    FROM (
      SELECT 1 FROM events.stream_lease
      WHERE stream_name = ${lease.streamName} AND role = ${lease.role} AND owner_id = ${lease.ownerId}
        AND fencing_token = ${lease.fencingToken}::bigint
      FOR SHARE) lease`;
}

/** The fence's own failure, told from any other error of the statement. */
function leaseLostOr(error: unknown, lease: PartitionLeaseRef): unknown {
  const failure = databaseErrorOf(error) as { code?: unknown; message?: unknown };
  if (failure?.code === '22P02' && String(failure.message).includes('partition lease lost')) return new PartitionLeaseLostError(lease.streamName, lease.group);
  return error;
}

/**
 * Runs `work` in one transaction and commits it fenced on the partition lease
 * (fenceQuery), the fence and COMMIT in ONE round trip: the fence
 * is handed to the connection before `work`'s callback returns, postgres.js
 * sends COMMIT right behind it in the same write, and when the fence fails
 * Postgres turns that COMMIT into ROLLBACK. Nothing of `work` commits then,
 * and PartitionLeaseLostError is thrown.
 *
 * Order: executePrepared queues the fence one microtask after the call; the
 * COMMIT is queued only after the callback's promise settles, later in the
 * same microtask queue, so the fence always goes first (commit-fenced.test.ts
 * would see an unfenced commit). The fence must be a prepared statement: an
 * unprepared one is described first, and postgres.js holds the COMMIT back
 * until that is answered (the test sees COMMIT wait).
 */
export async function commitFenced<T>(db: Database, lease: PartitionLeaseRef, work: (tx: Transaction) => Promise<T>): Promise<T> {
  let fence: Promise<unknown> | undefined;
  let result: T;
  try {
    result = await db.transaction(async (tx) => {
      const value = await work(tx);
      // Handed to the connection now, not awaited: COMMIT follows it in the same write.
      fence = executePrepared(tx, fenceQuery(lease)).catch((error: unknown) => {
        throw leaseLostOr(error, lease);
      });
      // Handled below; until then a rejection must not count as unhandled.
      fence.catch(() => undefined);
      // Through drizzle alone (a version that hides its client) the order is not ours to keep: wait for the answer.
      if (!pipelinesOn(tx)) await fence;
      return value;
    });
  } catch (error) {
    // postgres.js may have seen the fence fail before sending COMMIT: it rolled back and rethrew the fence's error.
    await fence;
    throw error;
  }
  await fence;
  return result;
}
