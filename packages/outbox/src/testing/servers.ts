/**
 * Dedicated Redis and Postgres servers for tests that stop, restart or kill
 * them. Each listens on a random free port with its data in a temp directory,
 * so the machine's shared services are never disturbed.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import Redis from 'ioredis';
import postgres from 'postgres';
import { waitFor } from './wait';

/** Ports this process handed out: the caller binds them later (a child's HEALTH_PORT, a server). */
const handedOut = new Set<number>();

/**
 * A TCP port free right now on 127.0.0.1, for something to bind soon. Never
 * one this process handed out before: the port is released before its user
 * binds it, and the kernel may pick a just-released port again, so two
 * calls in a row could return the same one (seen in `pnpm chaos`: a
 * publisher and a consumer given one health port, the consumer refused to
 * start). Another process may still take it in between; that is rarer, and
 * the caller's bind then fails loudly.
 */
export async function freePort(): Promise<number> {
  for (;;) {
    const port = await new Promise<number>((resolve, reject) => {
      const server = net.createServer();
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => {
        const { port: bound } = server.address() as net.AddressInfo;
        server.close(() => resolve(bound));
      });
    });
    if (handedOut.has(port)) continue;
    handedOut.add(port);
    return port;
  }
}

export interface DedicatedRedis {
  url: string;
  port: number;
  start(): Promise<void>;
  /**
   * SIGTERM and wait for exit; data is not persisted (unless appendOnly): a
   * snapshot taken by `saveSnapshot()` is removed too, so a restart is empty.
   */
  stop(): Promise<void>;
  restart(): Promise<void>;
  /** `SAVE`: writes an RDB snapshot of the data set now (Redis's default persistence). */
  saveSnapshot(): Promise<void>;
  /**
   * `SHUTDOWN NOSAVE` (SIGKILL if it does not exit within 5 s: nothing more
   * is written either way), `whileDown`, then start again: the server comes
   * back with the last `saveSnapshot()` (or empty without one), i.e. older
   * than it was.
   */
  restartFromSnapshot(options?: { whileDown?: () => Promise<void> }): Promise<void>;
  /** Stops the server and removes its directory. */
  destroy(): Promise<void>;
}

/**
 * A redis-server on a random port, started before it resolves. No automatic
 * persistence: AOF only with `appendOnly`, RDB only through `saveSnapshot()`.
 */
export async function startDedicatedRedis(options: { appendOnly?: boolean } = {}): Promise<DedicatedRedis> {
  const port = await freePort();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'petcover-redis-'));
  let child: ChildProcess | undefined;
  const url = `redis://127.0.0.1:${port}/0`;
  const ping = async () => {
    const client = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
    client.on('error', () => undefined); // a refused connection is the answer "not yet"; connect() rejects with it
    try {
      await client.connect();
      return (await client.ping()) === 'PONG';
    } finally {
      client.disconnect();
    }
  };
  const halt = async (signal: NodeJS.Signals) => {
    const running = child;
    child = undefined;
    if (!running || running.exitCode !== null) return;
    const exited = new Promise((resolve) => running.once('exit', resolve));
    running.kill(signal);
    await exited;
  };
  const shutdownNoSave = async () => {
    const running = child;
    child = undefined;
    if (!running || running.exitCode !== null) return;
    const exited = new Promise((resolve) => running.once('exit', resolve));
    const client = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
    client.on('error', () => undefined);
    // SHUTDOWN has no reply: the connection just closes, so its rejection is the expected answer.
    await client.connect().then(() => client.call('SHUTDOWN', 'NOSAVE')).catch(() => undefined);
    client.disconnect();
    const timer = setTimeout(() => running.kill('SIGKILL'), 5_000);
    await exited;
    clearTimeout(timer);
  };
  const handle: DedicatedRedis = {
    url,
    port,
    async start() {
      const args = ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--dir', dir];
      args.push('--appendonly', options.appendOnly ? 'yes' : 'no');
      child = spawn('redis-server', args, { stdio: 'ignore' });
      await waitFor(ping, { timeoutMs: 10_000, description: `redis-server on port ${port}` });
    },
    async stop() {
      await halt('SIGTERM');
      if (!options.appendOnly) fs.rmSync(path.join(dir, 'dump.rdb'), { force: true });
    },
    async restart() {
      await handle.stop();
      await handle.start();
    },
    async saveSnapshot() {
      const client = new Redis(url, { maxRetriesPerRequest: 1 });
      try {
        await client.save();
      } finally {
        client.disconnect();
      }
    },
    async restartFromSnapshot(restartOptions = {}) {
      await shutdownNoSave();
      await restartOptions.whileDown?.();
      await handle.start();
    },
    async destroy() {
      await handle.stop();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
  await handle.start();
  return handle;
}

export interface DedicatedPostgres {
  /** URL of the `postgres` database of this server; use withDatabaseName for others. */
  url: string;
  port: number;
  start(): Promise<void>;
  /** `pg_ctl stop -m fast`: clients are disconnected, committed data survives. */
  stop(): Promise<void>;
  restart(): Promise<void>;
  destroy(): Promise<void>;
}

function postgresBinDir(): string {
  const root = '/usr/lib/postgresql';
  const versions = fs.existsSync(root) ? fs.readdirSync(root).sort((a, b) => Number(b) - Number(a)) : [];
  for (const v of versions) if (fs.existsSync(path.join(root, v, 'bin', 'initdb'))) return path.join(root, v, 'bin');
  return ''; // rely on PATH
}

/** Postgres refuses to run as root; run its tools as the `postgres` user then. */
function asPostgresUser(command: string, args: string[]): [string, string[]] {
  const bin = postgresBinDir();
  const full = bin ? path.join(bin, command) : command;
  if (process.getuid?.() === 0) return ['runuser', ['-u', 'postgres', '--', full, ...args]];
  return [full, args];
}

/** initdb into a temp dir and start a Postgres on a random port (trust auth, user postgres). */
export async function startDedicatedPostgres(): Promise<DedicatedPostgres> {
  const port = await freePort();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'petcover-pg-'));
  const dataDir = path.join(dir, 'data');
  if (process.getuid?.() === 0) execFileSync('chown', ['-R', 'postgres', dir]);
  const run = (command: string, args: string[]) => {
    const [file, argv] = asPostgresUser(command, args);
    execFileSync(file, argv, { stdio: 'pipe' });
  };
  run('initdb', ['-D', dataDir, '-U', 'postgres', '--auth=trust', '--no-sync', '-E', 'UTF8']);
  const url = `postgresql://postgres@127.0.0.1:${port}/postgres`;
  const answers = async () => {
    const sql = postgres(url, { max: 1, connect_timeout: 1, onnotice: () => undefined });
    try {
      await sql`SELECT 1`;
      return true;
    } finally {
      await sql.end({ timeout: 1 });
    }
  };
  const handle: DedicatedPostgres = {
    url,
    port,
    async start() {
      const opts = `-p ${port} -c listen_addresses=127.0.0.1 -c unix_socket_directories=${dir} -c fsync=off -c max_connections=200`;
      run('pg_ctl', ['-D', dataDir, '-o', opts, '-l', path.join(dir, 'log'), '-w', 'start']);
      await waitFor(answers, { timeoutMs: 15_000, description: `postgres on port ${port}` });
    },
    async stop() {
      run('pg_ctl', ['-D', dataDir, '-m', 'fast', '-w', 'stop']);
    },
    async restart() {
      await handle.stop();
      await handle.start();
    },
    async destroy() {
      try {
        await handle.stop();
      } catch {
        // already stopped
      }
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
  await handle.start();
  return handle;
}
