/**
 * The built apps (api, events-publisher, events-consumer) as real child
 * processes for end-to-end tests: started with an environment, awaited on
 * /readyz, stopped with SIGTERM. Output is kept for failure messages.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { waitFor } from '@petcover/outbox/testing';

export interface RunningApp {
  name: string;
  child: ChildProcess;
  output: string[];
  exited: Promise<number | null>;
}

export class RunningApps {
  private readonly apps: RunningApp[] = [];

  constructor(private readonly env: NodeJS.ProcessEnv) {}

  start(name: string, args: string[], extraEnv: NodeJS.ProcessEnv = {}): RunningApp {
    const child = spawn(process.execPath, args, { env: { ...this.env, ...extraEnv }, stdio: ['ignore', 'pipe', 'pipe'] });
    const output: string[] = [];
    child.stdout?.on('data', (chunk: Buffer) => output.push(chunk.toString()));
    child.stderr?.on('data', (chunk: Buffer) => output.push(chunk.toString()));
    const app = { name, child, output, exited: new Promise<number | null>((resolve) => child.once('exit', resolve)) };
    this.apps.push(app);
    return app;
  }

  /** Waits until `app` answers 200 on /readyz at `port`; fails at once (with its output) if it exits. */
  // Generous: a deadline for boot on a loaded CI machine (load 30 on 2 cores took over 30 s), not a speed check.
  async waitReady(app: RunningApp, port: number, timeoutMs = 90_000): Promise<void> {
    await waitFor(
      async () => {
        if (app.child.exitCode !== null) throw new Error(`${app.name} exited: ${app.output.join('').slice(-2000)}`);
        return (await fetch(`http://127.0.0.1:${port}/readyz`).catch(() => undefined))?.ok ?? false;
      },
      { timeoutMs, intervalMs: 200, description: `${app.name} ready on :${port}` },
    );
  }

  /** SIGTERM to every app still running; resolves when all exited. */
  async stopAll(): Promise<void> {
    for (const app of this.apps) if (app.child.exitCode === null) app.child.kill('SIGTERM');
    await Promise.all(this.apps.map((app) => app.exited));
  }
}
