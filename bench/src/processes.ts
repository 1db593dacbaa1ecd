/**
 * The processes under test: the built publisher and consumer apps, and the
 * peers' worker processes, spawned for real. Their output goes to log files
 * so a slow terminal never throttles them.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

export interface ProcessSpec {
  /** Short label, used in log file names and error messages. */
  name: string;
  /** Node script and its arguments. */
  script: string;
  args: string[];
  env: Record<string, string>;
  /** How readiness shows: `/readyz` answering 200 on a port, or a line on stdout. */
  readiness: { healthPort: number } | { stdoutLine: string };
  logDir: string;
  /** Extra node flags, e.g. `--cpu-prof`. */
  nodeFlags?: string[];
}

export interface ManagedProcess {
  name: string;
  pid: number;
  logFile: string;
  /** Resolves when ready; rejects when the process exits first or the deadline passes. */
  waitReady(timeoutMs?: number): Promise<void>;
  /** Peak resident set size so far (VmHWM), in bytes; null once the process is gone. */
  peakRssBytes(): number | null;
  /** Sends `signal` and resolves with the exit code or signal when the process ends. */
  stop(signal?: NodeJS.Signals, timeoutMs?: number): Promise<string>;
  /** Resolves (never rejects) with `code=<n>` or `signal=<s>` when the process ends. */
  exited: Promise<string>;
}

/** Every child still running, so an interrupted run can end them all. */
const liveChildren = new Set<ChildProcess>();

/** SIGKILLs every child this process started that is still running (for an interrupted run). */
export function killStartedProcesses(): void {
  for (const child of liveChildren) child.kill('SIGKILL');
}

export function startProcess(spec: ProcessSpec): ManagedProcess {
  fs.mkdirSync(spec.logDir, { recursive: true });
  const logFile = path.join(spec.logDir, `${spec.name}.log`);
  const log = fs.openSync(logFile, 'a');
  const nodeFlags = [...(spec.nodeFlags ?? [])];
  // Name CPU profiles after the process so a run's profiles can be told apart.
  if (nodeFlags.includes('--cpu-prof')) nodeFlags.push(`--cpu-prof-name=${spec.name}-${Date.now()}.cpuprofile`);
  const child: ChildProcess = spawn(process.execPath, [...nodeFlags, spec.script, ...spec.args], {
    env: { ...process.env, ...spec.env },
    stdio: ['ignore', 'readiness' in spec && 'stdoutLine' in spec.readiness ? 'pipe' : log, log],
  });
  fs.closeSync(log);
  if (child.pid === undefined) throw new Error(`could not spawn ${spec.name} (${spec.script})`);
  const pid = child.pid;
  liveChildren.add(child);

  let exitedWith: string | undefined;
  const exited = new Promise<string>((resolve) => {
    child.once('exit', (code, signal) => {
      liveChildren.delete(child);
      exitedWith = signal ? `signal=${signal}` : `code=${code}`;
      resolve(exitedWith);
    });
  });

  let sawReadyLine = false;
  if ('stdoutLine' in spec.readiness && child.stdout) {
    const wanted = spec.readiness.stdoutLine;
    const out = fs.createWriteStream(logFile, { flags: 'a' });
    let buffered = '';
    child.stdout.on('data', (chunk: Buffer) => {
      out.write(chunk);
      if (sawReadyLine) return;
      buffered += chunk.toString('utf8');
      if (buffered.split('\n').some((line) => line.trim() === wanted)) sawReadyLine = true;
      buffered = buffered.slice(-4096);
    });
  }

  const isReady = async (): Promise<boolean> => {
    if ('stdoutLine' in spec.readiness) return sawReadyLine;
    try {
      const response = await fetch(`http://127.0.0.1:${spec.readiness.healthPort}/readyz`, { signal: AbortSignal.timeout(1000) });
      await response.arrayBuffer();
      return response.status === 200;
    } catch {
      return false;
    }
  };

  return {
    name: spec.name,
    pid,
    logFile,
    exited,
    async waitReady(timeoutMs = 30_000) {
      const deadline = Date.now() + timeoutMs;
      while (Date.now() < deadline) {
        if (exitedWith !== undefined) throw new Error(`${spec.name} exited (${exitedWith}) before it was ready; see ${logFile}`);
        if (await isReady()) return;
        await sleep(50);
      }
      throw new Error(`${spec.name} was not ready within ${timeoutMs} ms; see ${logFile}`);
    },
    peakRssBytes() {
      if (exitedWith !== undefined) return null;
      try {
        const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
        const match = /^VmHWM:\s+(\d+)\s+kB/m.exec(status);
        return match ? Number(match[1]) * 1024 : null;
      } catch {
        return null;
      }
    },
    async stop(signal = 'SIGTERM', timeoutMs = 15_000) {
      if (exitedWith !== undefined) return exitedWith;
      child.kill(signal);
      const timer = sleep(timeoutMs).then(() => 'timeout' as const);
      const outcome = await Promise.race([exited, timer]);
      if (outcome === 'timeout') {
        // A process that ignores SIGTERM must not outlive the run.
        child.kill('SIGKILL');
        return `${await exited} (did not stop within ${timeoutMs} ms of ${signal}; killed)`;
      }
      return outcome;
    },
  };
}

/** Stops every process given, each with SIGTERM then SIGKILL, even when one fails. */
export async function stopAll(processes: readonly (ManagedProcess | undefined)[]): Promise<void> {
  await Promise.allSettled(processes.filter((p): p is ManagedProcess => p !== undefined).map((p) => p.stop('SIGTERM')));
}

