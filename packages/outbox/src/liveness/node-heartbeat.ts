/**
 * A process's entry in `events.relay_node`: registered by `start()` before
 * the process takes any lease, refreshed every `intervalMs`, removed by
 * `stop()` after its leases are released. The publisher and the consumer
 * each run one under the owner id they hold leases with.
 *
 * It heartbeats on one connection reserved from the caller's pool and
 * records that session (pg_backend_pid, backend_start), so readers can tell a
 * killed process at once by its missing session (see nodes.ts). The pool
 * therefore needs one connection more than the component's own work.
 */
import { hostname } from 'node:os';
import type { ReservedSql } from 'postgres';
import type { Logger } from 'pino';
import type { Sql } from '../db';
import { sleep } from '../backoff';

export const NODE_HEARTBEAT_DEFAULTS = {
  /** Cheap (one UPDATE on a tiny table); also the worst-case time until a frozen process is seen as dead, divided by ttlFactor. */
  intervalMs: 5_000,
  /**
   * A node whose heartbeat is older than intervalMs × ttlFactor is dead.
   * Three missed beats, so a loaded machine or a Postgres blip does not
   * declare a live process dead; a killed one is seen at once by its session.
   */
  ttlFactor: 3,
  /** Rows of nodes dead this long (and holding no lease) are deleted by any live node. */
  forgetDeadAfterMs: 24 * 3_600_000,
} as const;

/** Postgres may be down at start or stop: neither waits longer than this. */
const START_TIMEOUT_MS = 2_000;
const STOP_TIMEOUT_MS = 2_000;

export interface NodeHeartbeatOptions {
  sql: Sql;
  ownerId: string;
  /** `publisher` or `consumer:<group>`. */
  role: 'publisher' | `consumer:${string}`;
  /** Version of the app (its package.json); shown by `events nodes`. */
  version?: string;
  logger: Logger;
  intervalMs?: number;
}

export interface NodeHeartbeat {
  /** Registers (one bounded attempt; on failure the loop keeps trying) and starts heartbeating. Idempotent. */
  start(): Promise<void>;
  /** Stops heartbeating and deletes the row (bounded; on failure the row simply turns dead). Memoised; safe before start. */
  stop(): Promise<void>;
}

/** Registration or heartbeat: upsert, keeping started_at, recording the session it runs on. */
async function beat(
  conn: ReservedSql | Sql,
  node: { ownerId: string; role: string; version: string; ttlMs: number; forgetDeadAfterMs: number },
): Promise<void> {
  await conn`
    INSERT INTO events.relay_node AS n
      (owner_id, role, host, pid, version, started_at, heartbeat_at, heartbeat_ttl_ms, backend_pid, backend_started_at)
    SELECT ${node.ownerId}, ${node.role}, ${hostname()}, ${process.pid}, ${node.version}, now(), now(), ${node.ttlMs},
           pg_backend_pid(), (SELECT backend_start FROM pg_stat_activity WHERE pid = pg_backend_pid())
    ON CONFLICT (owner_id) DO UPDATE SET
      heartbeat_at = now(), heartbeat_ttl_ms = EXCLUDED.heartbeat_ttl_ms,
      backend_pid = EXCLUDED.backend_pid, backend_started_at = EXCLUDED.backend_started_at`;
  // Killed processes leave rows behind; keep them a day for `events nodes`, then drop them.
  await conn`
    DELETE FROM events.relay_node d
    WHERE d.heartbeat_at < now() - make_interval(secs => ${node.forgetDeadAfterMs}::float8 / 1000)
      AND NOT EXISTS (SELECT 1 FROM events.stream_lease l WHERE l.owner_id = d.owner_id)`;
}

export function createNodeHeartbeat(options: NodeHeartbeatOptions): NodeHeartbeat {
  const intervalMs = options.intervalMs ?? NODE_HEARTBEAT_DEFAULTS.intervalMs;
  const node = {
    ownerId: options.ownerId,
    role: options.role,
    version: options.version ?? 'unknown',
    ttlMs: intervalMs * NODE_HEARTBEAT_DEFAULTS.ttlFactor,
    forgetDeadAfterMs: NODE_HEARTBEAT_DEFAULTS.forgetDeadAfterMs,
  };
  const log = options.logger.child({ component: 'node-heartbeat', ownerId: options.ownerId, role: options.role });
  const abort = new AbortController();
  let conn: ReservedSql | undefined;
  let failing = false;
  let loop: Promise<void> | undefined;
  let stopping: Promise<void> | undefined;

  async function beatOnce(): Promise<void> {
    try {
      conn ??= await options.sql.reserve();
      await beat(conn, node);
      if (failing) log.info('node heartbeat succeeds again');
      failing = false;
    } catch (error) {
      // The reserved session may be gone (Postgres restart): take a fresh one next time.
      conn?.release();
      conn = undefined;
      if (!failing) log.warn({ err: error }, 'node heartbeat failed; retrying every interval (status reports this node dead meanwhile)');
      failing = true;
    }
  }

  async function run(): Promise<void> {
    while (await sleep(intervalMs, abort.signal)) await beatOnce();
  }

  /** Waits for `work` at most `ms` (the work goes on in the background after that). */
  async function bounded(ms: number, work: Promise<unknown>): Promise<void> {
    const timer = new AbortController();
    await Promise.race([work, sleep(ms, timer.signal)]);
    timer.abort();
  }

  return {
    async start() {
      if (loop || stopping) return;
      const registered = beatOnce();
      loop = registered.then(run);
      // Registration before the caller takes leases, so no lease has an unregistered owner;
      // bounded, because with Postgres down the component must still start and retry.
      await bounded(START_TIMEOUT_MS, registered);
    },
    stop() {
      stopping ??= (async () => {
        abort.abort();
        if (loop) await bounded(STOP_TIMEOUT_MS, loop);
        const deregister = options.sql`DELETE FROM events.relay_node WHERE owner_id = ${node.ownerId}`.catch((error: unknown) => {
          log.warn({ err: error }, 'could not deregister the node; it turns dead by itself');
        });
        await bounded(STOP_TIMEOUT_MS, deregister);
        conn?.release();
        conn = undefined;
      })();
      return stopping;
    },
  };
}
