/**
 * Leases on `events.stream_lease`: who may publish a stream (role
 * `publisher`), consume a partition for a group (`consumer:<group>`), or run
 * maintenance (`maintenance`). Every time comparison happens in SQL on the
 * database clock, so replicas with skewed clocks still agree.
 */
import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import type { Sql } from '../db';

export type LeaseRole = 'publisher' | 'maintenance' | `consumer:${string}`;

export interface LeaseGrant {
  streamName: string;
  role: LeaseRole;
  ownerId: string;
  /** Decimal string of a bigint; grows on every change of owner. */
  fencingToken: string;
  leaseUntil: Date;
  /** True when this call took the lease (insert or takeover), false when it renewed it. */
  acquired: boolean;
}

/** `<hostname>:<pid>:<random>`: readable in psql, unique per process start. */
export function makeOwnerId(): string {
  return `${hostname()}:${process.pid}:${randomBytes(3).toString('hex')}`;
}

export function consumerRole(group: string): LeaseRole {
  return `consumer:${group}`;
}

/** Largest fencing token Postgres can store (bigint); a takeover adds one to it. */
const MAX_FENCING_TOKEN = 2n ** 63n - 1n;

/**
 * Why a lease row is in a state no process ever writes (a row edited by
 * hand), or null when it is plausible. Tokens start at the database clock in
 * ms and only grow, so a token at or below zero, or at the bigint maximum
 * (the next takeover's `token + 1` overflows: nobody could ever take the
 * lease over), cannot come from an owner; nor can a blank owner.
 * One definition for the lease statement, the processes' logs and `events status`.
 */
export function impossibleLeaseReason(row: { ownerId: string; fencingToken: string }): string | null {
  if (row.ownerId.trim() === '') return 'its owner_id is empty';
  let token: bigint;
  try {
    token = BigInt(row.fencingToken);
  } catch {
    return `its fencing_token ${row.fencingToken} is not a number`;
  }
  if (token <= 0n) return `its fencing_token ${row.fencingToken} is not positive (owners write the database clock in ms, and only increase it)`;
  if (token >= MAX_FENCING_TOKEN) return `its fencing_token ${row.fencingToken} is at the bigint maximum, so no owner can take it over (token + 1 overflows)`;
  return null;
}

/**
 * A lease row edited by hand into a state no owner writes (see
 * impossibleLeaseReason). Not a database outage: the stream stays blocked
 * for this role until an operator drops the row with the command in `fix`.
 */
export class ImpossibleLeaseError extends Error {
  readonly fix: string;

  constructor(
    readonly streamName: string,
    readonly role: string,
    readonly reason: string,
  ) {
    const fix = `events lease release --stream ${streamName} --role ${role}`;
    super(`the ${role} lease row on ${streamName} was edited into an impossible state: ${reason}; nothing takes it over until it is dropped: ${fix}`);
    this.name = 'ImpossibleLeaseError';
    this.fix = fix;
  }
}

/** Postgres `numeric_value_out_of_range`: the takeover's token + 1 overflowed. */
function isOutOfRange(error: unknown): boolean {
  return (error as { code?: string })?.code === '22003';
}

/**
 * Acquire-or-renew in one statement: insert the lease, take it over when
 * `lease_until < now()`, or renew it when `ownerId` already holds it. Returns
 * null when another live owner holds it.
 *
 * The fencing token on a new or taken-over lease is max(previous + 1, database
 * clock in ms), so it keeps growing even after the row is deleted by hand or
 * the database is re-created; Redis refuses appends with an older token.
 *
 * Throws ImpossibleLeaseError, not a database error, when the row was edited
 * by hand into a state no owner writes (a token at the bigint maximum makes
 * the takeover overflow; a non-positive token would be fenced by Redis).
 */
export async function acquireLease(
  sql: Sql,
  lease: { streamName: string; role: LeaseRole; ownerId: string; ttlMs: number },
): Promise<LeaseGrant | null> {
  let rows: { fencing_token: string; lease_until: Date; acquired: boolean }[];
  try {
    rows = await sql<{ fencing_token: string; lease_until: Date; acquired: boolean }[]>`
    INSERT INTO events.stream_lease AS l
      (stream_name, role, owner_id, lease_until, fencing_token, acquired_at, renewed_at)
    VALUES (
      ${lease.streamName}, ${lease.role}, ${lease.ownerId},
      now() + make_interval(secs => ${lease.ttlMs}::float8 / 1000),
      (extract(epoch FROM clock_timestamp()) * 1000)::bigint, now(), now())
    ON CONFLICT (stream_name, role) DO UPDATE SET
      owner_id = EXCLUDED.owner_id,
      lease_until = EXCLUDED.lease_until,
      fencing_token = CASE WHEN l.owner_id = EXCLUDED.owner_id THEN l.fencing_token
                           ELSE GREATEST(l.fencing_token + 1, EXCLUDED.fencing_token) END,
      acquired_at = CASE WHEN l.owner_id = EXCLUDED.owner_id THEN l.acquired_at ELSE now() END,
      renewed_at = now()
    WHERE l.owner_id = EXCLUDED.owner_id OR l.lease_until < now()
    RETURNING fencing_token::text, lease_until, (xmax = 0 OR acquired_at = now()) AS acquired`;
  } catch (error) {
    if (isOutOfRange(error)) await throwIfImpossible(sql, lease);
    throw error;
  }
  const row = rows[0];
  if (!row) return null;
  const reason = impossibleLeaseReason({ ownerId: lease.ownerId, fencingToken: row.fencing_token });
  if (reason) throw new ImpossibleLeaseError(lease.streamName, lease.role, reason);
  return { ...lease, fencingToken: row.fencing_token, leaseUntil: new Date(row.lease_until), acquired: row.acquired };
}

/** Reads the row the statement failed on and throws ImpossibleLeaseError when it is hand-edited nonsense. */
async function throwIfImpossible(sql: Sql, lease: { streamName: string; role: LeaseRole }): Promise<void> {
  const [row] = await sql<{ owner_id: string; fencing_token: string }[]>`
    SELECT owner_id, fencing_token::text FROM events.stream_lease WHERE stream_name = ${lease.streamName} AND role = ${lease.role}`;
  const reason = row ? impossibleLeaseReason({ ownerId: row.owner_id, fencingToken: row.fencing_token }) : null;
  if (reason) throw new ImpossibleLeaseError(lease.streamName, lease.role, reason);
}

/**
 * Gives the lease up so another replica can take it at once. Only the owner
 * can release; returns false when it no longer held it. Idempotent.
 */
export async function releaseLease(sql: Sql, lease: { streamName: string; role: LeaseRole; ownerId: string }): Promise<boolean> {
  const rows = await sql`
    DELETE FROM events.stream_lease
    WHERE stream_name = ${lease.streamName} AND role = ${lease.role} AND owner_id = ${lease.ownerId}
    RETURNING 1`;
  return rows.length > 0;
}

/** Operator action (`events lease release`): drops the lease whoever holds it. */
export async function forceReleaseLease(sql: Sql, lease: { streamName: string; role: string }): Promise<boolean> {
  const rows = await sql`
    DELETE FROM events.stream_lease WHERE stream_name = ${lease.streamName} AND role = ${lease.role} RETURNING 1`;
  return rows.length > 0;
}
