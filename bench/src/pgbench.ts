/**
 * pgbench, the producer that costs the system under test almost nothing: the
 * machine limits run it closed-loop (`-T`, as fast as it goes) and the live
 * scenarios open-loop (`-R`, a fixed schedule that never waits for the
 * system). Scripts are written to a temporary file for the run.
 */
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** pgbench of this machine's Postgres: PGBENCH, else the newest /usr/lib/postgresql/<v>/bin/pgbench, else PATH. */
export function findPgbench(): string {
  if (process.env.PGBENCH) return process.env.PGBENCH;
  const root = '/usr/lib/postgresql';
  if (fs.existsSync(root)) {
    const versions = fs.readdirSync(root).sort((a, b) => Number(b) - Number(a));
    for (const v of versions) {
      const candidate = path.join(root, v, 'bin', 'pgbench');
      if (fs.existsSync(candidate)) return candidate;
    }
  }
  return 'pgbench';
}

export interface PgbenchRun {
  databaseUrl: string;
  /** The script: one transaction per execution. */
  script: string;
  /** Variables the script uses (`-D name=value`). */
  variables?: Record<string, string>;
  clients: number;
  /** How long it runs (`-T`); or `transactions` per client (`-t`). */
  seconds?: number;
  transactions?: number;
  /** Open loop at this many transactions/s (`-R`); absent: closed loop. */
  ratePerSec?: number;
  /**
   * With a rate: transactions that would start later than this behind their
   * slot are skipped and counted (`-L`), so a system that cannot keep up does
   * not stretch the run.
   */
  latencyLimitMs?: number;
  /** `prepared` (default) prepares each statement once per connection, as postgres.js does. */
  queryMode?: 'simple' | 'extended' | 'prepared';
  /** Server settings of pgbench's own sessions (PGOPTIONS `-c name=value`), e.g. synchronous_commit. */
  sessionSettings?: Record<string, string>;
}

export interface PgbenchOutcome {
  /** Transactions committed. */
  processed: number;
  failed: number;
  /** Open loop only: slots skipped because they were already too late to start. */
  skipped: number;
  /** Committed transactions per second, without connection set-up. */
  tps: number;
  /** Open loop only: how far transactions started behind their slot, average and max (ms). */
  scheduleLagAvgMs: number | null;
  scheduleLagMaxMs: number | null;
  /** Client-side transaction latency, average (ms). */
  latencyAvgMs: number | null;
}

const number = (stdout: string, pattern: RegExp): number | null => {
  const match = pattern.exec(stdout);
  return match ? Number(match[1]) : null;
};

/** Reads pgbench's summary (PostgreSQL 15's wording). Throws when it printed no tps. */
export function parsePgbenchOutput(stdout: string): PgbenchOutcome {
  const tps = number(stdout, /^tps = ([\d.]+) \(without initial connection time\)/m) ?? number(stdout, /^tps = ([\d.]+)/m);
  if (tps === null) throw new Error(`pgbench printed no tps:\n${stdout}`);
  const lag = /^rate limit schedule lag: avg ([\d.]+) \(max ([\d.]+)\) ms/m.exec(stdout);
  return {
    processed: number(stdout, /^number of transactions actually processed: (\d+)/m) ?? 0,
    failed: number(stdout, /^number of failed transactions: (\d+)/m) ?? 0,
    skipped: number(stdout, /^number of transactions skipped: (\d+)/m) ?? 0,
    tps,
    scheduleLagAvgMs: lag ? Number(lag[1]) : null,
    scheduleLagMaxMs: lag ? Number(lag[2]) : null,
    latencyAvgMs: number(stdout, /^latency average = ([\d.]+) ms/m),
  };
}

/**
 * The `:name` variables pgbench would substitute in `script` (a `::` cast is
 * not one; pgbench does not skip string literals either). In the extended
 * and prepared modes each must be defined, or pgbench fails at run time.
 */
export function pgbenchVariablesUsed(script: string): string[] {
  const names = new Set<string>();
  for (const match of script.matchAll(/(?<!:):([A-Za-z_][A-Za-z0-9_]*)/g)) names.add(match[1] as string);
  return [...names];
}

/** Runs pgbench once (no vacuum, no initialisation: `-n`) and returns its summary. */
export async function runPgbench(options: PgbenchRun): Promise<PgbenchOutcome> {
  const defined = new Set([...Object.keys(options.variables ?? {}), ...[...options.script.matchAll(/^\\set\s+(\w+)/gm)].map((m) => m[1])]);
  // Simple mode leaves an unknown `:name` as it is; the other modes bind every one.
  const undefinedVariables = options.queryMode === 'simple' ? [] : pgbenchVariablesUsed(options.script).filter((name) => !defined.has(name));
  if (undefinedVariables.length > 0) throw new Error(`pgbench script uses undefined variable(s) ${undefinedVariables.join(', ')}`);
  const file = path.join(os.tmpdir(), `petcover-bench-${process.pid}-${Math.random().toString(36).slice(2)}.sql`);
  fs.writeFileSync(file, options.script);
  const length = options.transactions !== undefined ? ['-t', String(options.transactions)] : ['-T', String(options.seconds ?? 1)];
  const args = ['-n', '-M', options.queryMode ?? 'prepared', '-f', file, '-c', String(options.clients), '-j', String(Math.min(options.clients, 2)), ...length];
  for (const [name, value] of Object.entries(options.variables ?? {})) args.push('-D', `${name}=${value}`);
  if (options.ratePerSec !== undefined) args.push('-R', String(options.ratePerSec));
  if (options.ratePerSec !== undefined && options.latencyLimitMs !== undefined) args.push('-L', String(options.latencyLimitMs));
  const env: NodeJS.ProcessEnv = { ...process.env, PGAPPNAME: 'pgbench' };
  const settings = Object.entries(options.sessionSettings ?? {});
  for (const [name, value] of settings) {
    if (!/^[a-z_.]+$/.test(name) || !/^[\w.]+$/.test(value)) throw new Error(`pgbench session setting ${name}=${value} is not a plain name and value`);
  }
  if (settings.length > 0) env.PGOPTIONS = [env.PGOPTIONS, ...settings.map(([name, value]) => `-c ${name}=${value}`)].filter(Boolean).join(' ');
  try {
    const { stdout } = await run(findPgbench(), [...args, options.databaseUrl], { maxBuffer: 16 * 1024 * 1024, env });
    return parsePgbenchOutput(stdout);
  } finally {
    fs.rmSync(file, { force: true });
  }
}
