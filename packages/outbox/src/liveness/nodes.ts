/**
 * Who is alive: the rows of `events.relay_node` read with one liveness rule,
 * and the operator action that follows from it (release every lease whose
 * owner is dead). The rule lives only here, in SQL on the database clock.
 */
import type { Sql } from '../db';

/**
 * A node is alive while both hold:
 * - its last heartbeat is younger than its own TTL (a hung or cut-off process
 *   stops heartbeating), and
 * - the Postgres session it heartbeats on still exists (a SIGKILLed or
 *   crashed process loses its session at once, long before the TTL runs out).
 * backend_start is compared too so a recycled backend pid does not revive a
 * dead node; it is NULL for roles that may not read other sessions' details,
 * and then the pid alone decides.
 */
const NODE_ALIVE_SQL = `(
  n.heartbeat_at >= now() - make_interval(secs => n.heartbeat_ttl_ms / 1000.0)
  AND (n.backend_pid IS NULL OR EXISTS (
    SELECT 1 FROM pg_stat_activity a
    WHERE a.pid = n.backend_pid
      AND (a.backend_start IS NULL OR n.backend_started_at IS NULL OR a.backend_start = n.backend_started_at))))`;

/** Why a registered node counts as dead; null while alive. */
const NODE_DEAD_REASON_SQL = `CASE
  WHEN n.heartbeat_at < now() - make_interval(secs => n.heartbeat_ttl_ms / 1000.0) THEN 'heartbeat_stale'
  WHEN NOT ${NODE_ALIVE_SQL} THEN 'session_gone'
  END`;

export type NodeDeadReason = 'heartbeat_stale' | 'session_gone';

export interface NodeStatus {
  ownerId: string;
  role: string;
  host: string;
  pid: number;
  version: string;
  startedAt: string;
  heartbeatAt: string;
  secondsSinceHeartbeat: number;
  heartbeatTtlMs: number;
  alive: boolean;
  /** Why it counts as dead: no heartbeat within its TTL, or its Postgres session ended (process killed). */
  deadReason: NodeDeadReason | null;
}

interface NodeDbRow {
  owner_id: string;
  role: string;
  host: string;
  pid: number;
  version: string;
  started_ms: string;
  heartbeat_ms: string;
  since_heartbeat_s: string;
  heartbeat_ttl_ms: number;
  dead_reason: NodeDeadReason | null;
}

/** False before the liveness migration ran (an older schema): liveness is then unknown, not "all dead". */
export async function relayNodeTableExists(sql: Sql): Promise<boolean> {
  const [row] = await sql<{ present: boolean }[]>`SELECT to_regclass('events.relay_node') IS NOT NULL AS present`;
  return row?.present ?? false;
}

/** Every registered node, alive first, then by role and owner. Read-only. */
export async function listNodes(sql: Sql): Promise<NodeStatus[]> {
  const rows = await sql<NodeDbRow[]>`
    SELECT n.owner_id, n.role, n.host, n.pid, n.version, n.heartbeat_ttl_ms,
           (extract(epoch FROM n.started_at) * 1000)::bigint::text AS started_ms,
           (extract(epoch FROM n.heartbeat_at) * 1000)::bigint::text AS heartbeat_ms,
           extract(epoch FROM now() - n.heartbeat_at)::text AS since_heartbeat_s,
           ${sql.unsafe(NODE_DEAD_REASON_SQL)} AS dead_reason
    FROM events.relay_node n
    ORDER BY dead_reason NULLS FIRST, n.role, n.owner_id`;
  return rows.map((r) => ({
    ownerId: r.owner_id,
    role: r.role,
    host: r.host,
    pid: Number(r.pid),
    version: r.version,
    startedAt: new Date(Number(r.started_ms)).toISOString(),
    heartbeatAt: new Date(Number(r.heartbeat_ms)).toISOString(),
    secondsSinceHeartbeat: Math.round(Number(r.since_heartbeat_s) * 10) / 10,
    heartbeatTtlMs: Number(r.heartbeat_ttl_ms),
    alive: r.dead_reason === null,
    deadReason: r.dead_reason,
  }));
}

export interface ReleasedLease {
  streamName: string;
  role: string;
  ownerId: string;
  /** `unregistered` when no node row ever existed for the owner (e.g. a lease inserted by hand). */
  ownerState: 'dead' | 'unregistered';
}

/**
 * Operator action (`events lease release --all-dead`): deletes every lease
 * whose owner is not a live node (dead, or never registered), in one
 * statement, so a running replica takes each over within its poll interval.
 * Idempotent; returns what it released.
 */
export async function releaseLeasesOfDeadOwners(sql: Sql): Promise<ReleasedLease[]> {
  const rows = await sql<{ stream_name: string; role: string; owner_id: string; registered: boolean }[]>`
    DELETE FROM events.stream_lease l
    WHERE NOT EXISTS (SELECT 1 FROM events.relay_node n WHERE n.owner_id = l.owner_id AND ${sql.unsafe(NODE_ALIVE_SQL)})
    RETURNING l.stream_name, l.role, l.owner_id,
              EXISTS (SELECT 1 FROM events.relay_node n WHERE n.owner_id = l.owner_id) AS registered`;
  return rows
    .map((r) => ({ streamName: r.stream_name, role: r.role, ownerId: r.owner_id, ownerState: r.registered ? ('dead' as const) : ('unregistered' as const) }))
    .sort((a, b) => a.streamName.localeCompare(b.streamName) || a.role.localeCompare(b.role));
}
