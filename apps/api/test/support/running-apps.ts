/**
 * The built apps (api, events-publisher, events-consumer) as real child
 * processes for end-to-end tests: started with an environment, awaited on
 * /readyz, stopped with SIGTERM. Output is kept for failure messages.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { APP_READY_TIMEOUT_MS, testRedisUrl, waitForReady } from '@petcover/outbox/testing';

export interface RunningApp {
  name: string;
  child: ChildProcess;
  output: string[];
  exited: Promise<number | null>;
}

/** What the three apps need to run against a test's own database, Redis key prefix and document directory. */
export function appsEnvironment(options: { databaseUrl: string; redisKeyPrefix: string; authSecret: string; signatureApiKey: string; storeDir: string }): NodeJS.ProcessEnv {
  return {
    PATH: process.env.PATH,
    DATABASE_URL: options.databaseUrl,
    REDIS_URL: testRedisUrl(),
    REDIS_KEY_PREFIX: options.redisKeyPrefix,
    LOG_LEVEL: 'warn',
    AUTH_SECRET: options.authSecret,
    SIGNATURE_API_KEY: options.signatureApiKey,
    DOCUMENT_STORE_DIR: options.storeDir,
  };
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
  async waitReady(app: RunningApp, port: number, timeoutMs = APP_READY_TIMEOUT_MS): Promise<void> {
    await waitForReady(port, {
      name: app.name,
      timeoutMs,
      exited: () => (app.child.exitCode !== null || app.child.signalCode !== null ? app.output.join('').slice(-2000) : undefined),
    });
  }

  /** SIGTERM to one app; resolves when it exited. */
  async stop(app: RunningApp): Promise<void> {
    if (app.child.exitCode === null && app.child.signalCode === null) app.child.kill('SIGTERM');
    await app.exited;
  }

  /** SIGTERM to every app still running; resolves when all exited. */
  async stopAll(): Promise<void> {
    for (const app of this.apps) if (app.child.exitCode === null && app.child.signalCode === null) app.child.kill('SIGTERM');
    await Promise.all(this.apps.map((app) => app.exited));
  }
}
