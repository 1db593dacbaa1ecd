/**
 * The built events-publisher and events-consumer apps (`dist/main.js`, run
 * `pnpm build` first) as child processes for tests that need real processes:
 * output collected for assertions and failure messages, SIGTERM or SIGKILL,
 * and every process a test file spawned killed at its end.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

const APPS_DIR = path.join(__dirname, '..', '..', '..', '..', 'apps');

export const BUILT_APP_MAINS = {
  publisher: path.join(APPS_DIR, 'events-publisher', 'dist', 'main.js'),
  consumer: path.join(APPS_DIR, 'events-consumer', 'dist', 'main.js'),
} as const;

/**
 * Fails a test file at once, naming what to build, when any of `files` (built
 * outputs it runs: an app's dist/main.js, a command) is missing. Turbo's test
 * task builds first; a file run alone needs `pnpm build`.
 */
export function requireBuiltFiles(files: readonly string[]): void {
  const missing = files.filter((file) => !fs.existsSync(file));
  if (missing.length > 0) throw new Error(`build the apps first (pnpm build): missing ${missing.join(', ')}`);
}

/** A child process whose output is collected for assertions and failure messages. */
export interface CapturedProcess {
  child: ChildProcess;
  /** Everything it printed so far (stdout and stderr). */
  output(): string;
  /** What it printed on stderr so far. */
  stderr(): string;
  exited: Promise<number | null>;
  /** Sends `signal` (default SIGTERM) unless it already exited; resolves with the exit code. Idempotent. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}
export type BuiltAppProcess = CapturedProcess;

const spawned = new Set<ChildProcess>();

/**
 * `node <args>` with only PATH and `env` in its environment, its output
 * collected. The child is in `tracked` until it exits (default: the set
 * `killSpawnedApps` empties), so a test file can kill what it left running.
 */
export function spawnNodeProcess(args: readonly string[], env: Record<string, string>, tracked: Set<ChildProcess> = spawned): CapturedProcess {
  const child = spawn(process.execPath, [...args], { env: { PATH: process.env.PATH ?? '', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  tracked.add(child);
  let output = '';
  let stderr = '';
  child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => {
    output += chunk.toString();
    stderr += chunk.toString();
  });
  const exited = new Promise<number | null>((resolve) =>
    child.once('exit', (code) => {
      tracked.delete(child);
      resolve(code);
    }),
  );
  return {
    child,
    output: () => output,
    stderr: () => stderr,
    exited,
    stop(signal = 'SIGTERM') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exited;
    },
  };
}

/** `node <main> start <args>` of a built app, with only PATH and `env` in its environment. */
export function spawnBuiltApp(app: keyof typeof BUILT_APP_MAINS, args: readonly string[], env: Record<string, string>): BuiltAppProcess {
  return spawnNodeProcess([BUILT_APP_MAINS[app], 'start', ...args], env);
}

/** SIGKILLs every app this test file spawned that still runs (afterEach / afterAll). */
export function killSpawnedApps(): void {
  for (const child of spawned) child.kill('SIGKILL');
}
