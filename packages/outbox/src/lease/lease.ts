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

/**
 * Acquire-or-renew in one statement: insert the lease, take it over when
 * `lease_until < now()`, or renew it when `ownerId` already holds it. Returns
 * null when another live owner holds it.
 *
 * The fencing token on a new or taken-over lease is max(previous + 1, database
 * clock in ms), so it keeps growing even after the row is deleted by hand or
 * the database is re-created; Redis refuses appends with an older token.
 */
export async function acquireLease(
  sql: Sql,
  lease: { streamName: string; role: LeaseRole; ownerId: string; ttlMs: number },
): Promise<LeaseGrant | null> {
  const rows = await sql<{ fencing_token: string; lease_until: Date; acquired: boolean }[]>`
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
  const row = rows[0];
  if (!row) return null;
  return { ...lease, fencingToken: row.fencing_token, leaseUntil: new Date(row.lease_until), acquired: row.acquired };
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
