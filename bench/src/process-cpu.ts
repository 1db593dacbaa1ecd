/**
 * CPU time of every process a system runs on, read from /proc (utime + stime
 * of /proc/<pid>/stat), so the figure is the system's and not the harness's:
 * its own processes, the Postgres backends of the run's database (grouped by
 * who opened them), and Redis when the system uses it.
 *
 * What is left out, and why: Postgres' background processes (WAL writer,
 * checkpointer) serve every database on the server; pgbench's own client CPU
 * is the driver's and is reported apart. A backend that ends inside the
 * window loses its last share (pools here hold their connections).
 */
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import type { Sql } from '@petcover/outbox';

let ticksPerSecond: number | undefined;

/** The kernel's clock ticks per second (`getconf CLK_TCK`; 100 on Linux when unknown). */
export function clockTicksPerSecond(): number {
  if (ticksPerSecond === undefined) {
    try {
      ticksPerSecond = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    } catch {
      ticksPerSecond = 100;
    }
  }
  return ticksPerSecond;
}

/** Fields after the `(comm)` of a /proc/<pid>/stat line; comm may hold spaces and parentheses. */
function statFields(pid: number | 'self'): string[] | null {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  } catch {
    return null;
  }
}

/** CPU seconds (user + system) a process has used so far; null when it is gone or not on this machine. */
export function processCpuSeconds(pid: number): number | null {
  const fields = statFields(pid);
  if (!fields) return null;
  // Fields 14 and 15 of stat (utime, stime) are 11 and 12 after the comm.
  return (Number(fields[11]) + Number(fields[12])) / clockTicksPerSecond();
}

/** CPU seconds of this process's children that have ended (cutime + cstime): pgbench, once it exits. */
export function endedChildrenCpuSeconds(): number {
  const fields = statFields('self');
  return fields ? (Number(fields[13]) + Number(fields[14])) / clockTicksPerSecond() : 0;
}

/** Labels of the Postgres sessions the report tells apart. */
export const PRODUCER_SESSIONS = 'postgres: producer sessions';
export const SYSTEM_SESSIONS = 'postgres: system sessions';
export const AUTOVACUUM = 'postgres: autovacuum';
export const REDIS = 'redis-server';

/** application_name of producer connections: pgbench's and the Node producer's. */
const PRODUCER_APPLICATIONS = new Set(['pgbench', 'petcover-bench-producer']);
/** The harness's own connection (polling counts): not the system's cost. */
const HARNESS_APPLICATION = 'petcover-bench';

export interface CpuSources {
  /** The system's own processes, by label. */
  processes: ReadonlyArray<{ name: string; pid: number }>;
  /** A connection to the run's database (its backends are listed from pg_stat_activity). */
  sql: Sql;
  /** redis-server's pid when Redis counts for this system and runs on this machine. */
  redisPid: number | null;
}

/** CPU seconds so far of each measured process, by pid, with its label. */
export type CpuSnapshot = Map<number, { label: string; seconds: number }>;

/** Which label a backend of the run's database counts under; null for the harness's own. */
export function backendLabel(applicationName: string, backendType: string): string | null {
  if (backendType === 'autovacuum worker') return AUTOVACUUM;
  if (PRODUCER_APPLICATIONS.has(applicationName)) return PRODUCER_SESSIONS;
  if (applicationName === HARNESS_APPLICATION) return null;
  return SYSTEM_SESSIONS;
}

export async function snapshotCpu(sources: CpuSources): Promise<CpuSnapshot> {
  const snapshot: CpuSnapshot = new Map();
  const take = (pid: number, label: string) => {
    const seconds = processCpuSeconds(pid);
    if (seconds !== null) snapshot.set(pid, { label, seconds });
  };
  for (const p of sources.processes) take(p.pid, p.name);
  const backends = await sources.sql<{ pid: number; application_name: string | null; backend_type: string | null }[]>`
    SELECT pid, application_name, backend_type FROM pg_stat_activity
    WHERE datname = current_database() AND pid <> pg_backend_pid()`;
  for (const b of backends) {
    const label = backendLabel(b.application_name ?? '', b.backend_type ?? '');
    if (label !== null) take(b.pid, label);
  }
  if (sources.redisPid !== null) take(sources.redisPid, REDIS);
  return snapshot;
}

/**
 * CPU seconds used between two snapshots, summed by label. A process first
 * seen in `after` started inside the window and counts from zero.
 */
export function cpuBetween(before: CpuSnapshot, after: CpuSnapshot): Record<string, number> {
  const byLabel: Record<string, number> = {};
  for (const [pid, { label, seconds }] of after) {
    const start = before.get(pid);
    const used = start && start.label === label ? seconds - start.seconds : seconds;
    byLabel[label] = (byLabel[label] ?? 0) + Math.max(0, used);
  }
  return byLabel;
}

/** redis-server's pid (INFO server) when it runs on this machine; null otherwise (e.g. a remote cluster). */
export function localRedisPid(infoServer: string): number | null {
  const pid = Number(/process_id:(\d+)/.exec(infoServer)?.[1]);
  if (!Number.isInteger(pid) || pid <= 0) return null;
  return fs.existsSync(`/proc/${pid}/stat`) && fs.readFileSync(`/proc/${pid}/stat`, 'utf8').includes('(redis-server)') ? pid : null;
}

/**
 * Samples every `intervalMs` until stopped and keeps each process's latest
 * reading, so a backend that ends before the window does (pgbench's, when
 * its run ends) still counts up to its last sample. `stop()` takes a final
 * sample and returns the merged snapshot.
 */
export function trackCpu(sources: CpuSources, intervalMs: number): { stop(): Promise<CpuSnapshot> } {
  const latest: CpuSnapshot = new Map();
  const merge = (snapshot: CpuSnapshot) => snapshot.forEach((value, pid) => latest.set(pid, value));
  let sampling: Promise<void> = Promise.resolve();
  const timer = setInterval(() => {
    // One sample at a time; a failed sample only loses that sample.
    sampling = sampling.then(() => snapshotCpu(sources).then(merge, () => undefined));
  }, intervalMs);
  return {
    async stop() {
      clearInterval(timer);
      await sampling;
      merge(await snapshotCpu(sources));
      return latest;
    },
  };
}
