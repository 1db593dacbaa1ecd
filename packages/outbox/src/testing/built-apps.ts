/**
 * The built events-publisher and events-consumer apps (`dist/main.js`, run
 * `pnpm build` first) as child processes for tests that need real processes:
 * output collected for assertions and failure messages, SIGTERM or SIGKILL,
 * and every process a test file spawned killed at its end.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';

const APPS_DIR = path.join(__dirname, '..', '..', '..', '..', 'apps');

export const BUILT_APP_MAINS = {
  publisher: path.join(APPS_DIR, 'events-publisher', 'dist', 'main.js'),
  consumer: path.join(APPS_DIR, 'events-consumer', 'dist', 'main.js'),
} as const;

export interface BuiltAppProcess {
  child: ChildProcess;
  /** Everything it printed so far (stdout and stderr). */
  output(): string;
  exited: Promise<number | null>;
  /** Sends `signal` (default SIGTERM) unless it already exited; resolves with the exit code. Idempotent. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

const spawned = new Set<ChildProcess>();

/** `node <main> start <args>` with only PATH and `env` in its environment. */
export function spawnBuiltApp(app: keyof typeof BUILT_APP_MAINS, args: readonly string[], env: Record<string, string>): BuiltAppProcess {
  const child = spawn(process.execPath, [BUILT_APP_MAINS[app], 'start', ...args], { env: { PATH: process.env.PATH, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  spawned.add(child);
  let output = '';
  child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<number | null>((resolve) =>
    child.once('exit', (code) => {
      spawned.delete(child);
      resolve(code);
    }),
  );
  return {
    child,
    output: () => output,
    exited,
    stop(signal = 'SIGTERM') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      return exited;
    },
  };
}

/** SIGKILLs every app this test file spawned that still runs (afterEach / afterAll). */
export function killSpawnedApps(): void {
  for (const child of spawned) child.kill('SIGKILL');
}
