/**
 * One real app process (publisher or consumer) under the chaos runner's
 * control: spawned from the built `dist/main.js`, its output appended to a
 * log file, and killed, frozen, thawed or restarted on the fault schedule.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import { setTimeout as sleep } from 'node:timers/promises';

export interface AppProcessSpec {
  /** e.g. `publisher#0`. */
  name: string;
  script: string;
  args: string[];
  env: NodeJS.ProcessEnv;
  healthPort: number;
  logFile: string;
}

/** GET /readyz answered 200 within one second. */
export function isReady(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const request = http.get({ host: '127.0.0.1', port, path: '/readyz', timeout: 1_000 }, (response) => {
      response.resume();
      resolve(response.statusCode === 200);
    });
    request.on('timeout', () => request.destroy());
    request.on('error', () => resolve(false));
  });
}

export class AppProcess {
  private child: ChildProcess | undefined;
  private frozen = false;
  /** Exits we did not cause (a crash): counted and reported by the runner. */
  unexpectedExits: Array<{ code: number | null; signal: NodeJS.Signals | null }> = [];
  private expectingExit = false;

  constructor(readonly spec: AppProcessSpec) {}

  get name(): string {
    return this.spec.name;
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  get running(): boolean {
    return this.child !== undefined && this.child.exitCode === null && this.child.signalCode === null;
  }

  get isFrozen(): boolean {
    return this.frozen;
  }

  start(): void {
    if (this.running) return;
    const log = fs.openSync(this.spec.logFile, 'a');
    fs.writeSync(log, `\n--- ${new Date().toISOString()} start ${this.spec.name}\n`);
    const child = spawn(process.execPath, [this.spec.script, ...this.spec.args], {
      env: { ...this.spec.env, HEALTH_PORT: String(this.spec.healthPort) },
      stdio: ['ignore', log, log],
    });
    fs.closeSync(log);
    this.expectingExit = false;
    this.frozen = false;
    child.once('exit', (code, signal) => {
      if (!this.expectingExit) this.unexpectedExits.push({ code, signal });
    });
    this.child = child;
  }

  /** Waits until /readyz answers 200, or throws naming the process after `timeoutMs`. */
  async waitReady(timeoutMs: number, signal?: AbortSignal): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      if (await isReady(this.spec.healthPort)) return;
      if (!this.running) throw new Error(`${this.name} exited before it was ready; see ${this.spec.logFile}`);
      await sleep(200, undefined, { signal });
    }
    throw new Error(`${this.name} not ready after ${timeoutMs} ms; see ${this.spec.logFile}`);
  }

  /** SIGKILL, and wait for the exit. */
  async kill(): Promise<void> {
    const child = this.child;
    if (!child || !this.running) return;
    this.expectingExit = true;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGKILL');
    await exited;
    this.frozen = false;
  }

  freeze(): void {
    if (!this.running || this.frozen) return;
    this.child?.kill('SIGSTOP');
    this.frozen = true;
  }

  thaw(): void {
    if (!this.running || !this.frozen) return;
    this.child?.kill('SIGCONT');
    this.frozen = false;
  }

  /** Graceful stop (SIGTERM; SIGKILL after `timeoutMs`). Idempotent; thaws a frozen process first. */
  async stop(timeoutMs = 10_000): Promise<void> {
    const child = this.child;
    if (!child || !this.running) return;
    this.expectingExit = true;
    this.thaw();
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    await exited;
    clearTimeout(timer);
  }

  /** The last `lines` lines of the process's log, for a failure report. */
  tailLog(lines = 15): string {
    try {
      const text = fs.readFileSync(this.spec.logFile, 'utf8').trimEnd().split('\n');
      return text.slice(-lines).join('\n');
    } catch {
      return '(no log)';
    }
  }
}
