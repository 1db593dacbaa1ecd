/**
 * A real local Redis Cluster for tests, chaos and the bench: `masters`
 * masters with `replicasPerMaster` replicas each, every node a
 * `redis-server --cluster-enabled yes` on a free port with its files in one
 * temp directory, joined with `redis-cli --cluster create`.
 *
 * Every node is stopped and the directory removed by `destroy()`, and the
 * nodes are SIGKILLed when the test process exits, even on a failure.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import Redis from 'ioredis';
import { redisConnectionEnv, type RedisConnection } from '@petcover/service-kit';
import { freePort } from './servers';
import { waitFor } from './wait';

const execFileAsync = promisify(execFile);

export interface ClusterNodeInfo {
  port: number;
  id: string;
  role: 'master' | 'replica';
  /** Master's node id, for a replica. */
  masterId?: string;
  /** The node is flagged failed or unreachable by the node asked. */
  failed: boolean;
  /** Slot ranges served, for a master (`[from, to]`). */
  slots: [number, number][];
}

export interface DedicatedRedisCluster {
  /** `redis://127.0.0.1:<port>/0` of the first node: the REDIS_URL seed. */
  url: string;
  /** Every node as `127.0.0.1:<port>`: REDIS_CLUSTER_SEEDS. */
  seeds: string[];
  ports: number[];
  /** For createRedisClient. */
  connection: RedisConnection;
  /** REDIS_URL, REDIS_CLUSTER and REDIS_CLUSTER_SEEDS for a child process. */
  env: Record<string, string>;
  /** The cluster's view (CLUSTER NODES) from a running node. */
  nodes(): Promise<ClusterNodeInfo[]>;
  /** Whether the node on `port` runs. */
  isRunning(port: number): boolean;
  /**
   * SIGKILLs the master serving `slot` (default: the first master's first
   * slot), waits until one of its replicas was promoted and every running
   * node reports cluster_state:ok. Returns the killed and promoted ports.
   */
  killMaster(options?: { slot?: number; timeoutMs?: number }): Promise<{ killed: number; promoted: number }>;
  /**
   * SIGSTOPs the master serving `slot`: its sockets stay open and silent (a
   * paused VM, a partition that drops packets), so its clients get no error.
   * Waits until one of its replicas was promoted. `thaw()` SIGCONTs it and
   * waits until it has rejoined (as a replica) and every node reports ok.
   */
  freezeMaster(options?: { slot?: number; timeoutMs?: number }): Promise<{ frozen: number; promoted: number; thaw(): Promise<void> }>;
  /** Starts a killed node again: it rejoins (as a replica) and resyncs. */
  restartNode(port: number, options?: { timeoutMs?: number }): Promise<void>;
  /** Stops every node and removes the files. Idempotent. */
  destroy(): Promise<void>;
}

export interface RedisClusterOptions {
  masters?: number;
  replicasPerMaster?: number;
  /**
   * cluster-node-timeout: how long a master may be silent before its replica
   * takes over. Short so failover tests finish quickly; long enough that a
   * loaded CI machine does not fail nodes over on its own.
   */
  nodeTimeoutMs?: number;
  /** Deadline for the cluster to form. */
  startTimeoutMs?: number;
}

const running = new Set<ChildProcess>();
let exitHookInstalled = false;
function killAllOnExit(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const child of running) child.kill('SIGKILL');
  });
}

async function withNode<T>(port: number, action: (client: Redis) => Promise<T>): Promise<T> {
  const client = new Redis({ host: '127.0.0.1', port, lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null, connectTimeout: 1_000 });
  client.on('error', () => undefined); // connect() rejects with it
  try {
    await client.connect();
    return await action(client);
  } finally {
    client.disconnect();
  }
}

function parseClusterNodes(text: string): ClusterNodeInfo[] {
  return text
    .trim()
    .split('\n')
    .filter(Boolean)
    .map((line) => {
      // <id> <ip:port@cport> <flags> <master> <ping-sent> <pong-recv> <epoch> <link-state> <slot> <slot> ...
      const [id, address, flags, master, , , , , ...slots] = line.split(' ');
      const flagList = (flags as string).split(',');
      return {
        id: id as string,
        port: Number((address as string).split('@')[0]?.split(':').pop()),
        role: flagList.includes('master') ? 'master' : 'replica',
        ...(master && master !== '-' ? { masterId: master } : {}),
        failed: flagList.some((f) => f === 'fail' || f === 'fail?' || f === 'noaddr'),
        slots: slots
          .filter((s) => !s.startsWith('['))
          .map((s) => {
            const [from, to] = s.split('-').map(Number) as [number, number?];
            return [from, to ?? from] as [number, number];
          }),
      } satisfies ClusterNodeInfo;
    });
}

/** Starts the nodes, creates the cluster and waits until every node reports cluster_state:ok. */
export async function startRedisCluster(options: RedisClusterOptions = {}): Promise<DedicatedRedisCluster> {
  const masters = options.masters ?? 3;
  const replicas = options.replicasPerMaster ?? 1;
  const nodeTimeoutMs = options.nodeTimeoutMs ?? 3_000;
  const startTimeoutMs = options.startTimeoutMs ?? 60_000;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'petcover-redis-cluster-'));
  const ports: number[] = [];
  for (let i = 0; i < masters * (replicas + 1); i++) {
    let port = await freePort();
    // The cluster bus listens on port + 10000; both must be free.
    while (port + 10_000 > 65_535 || ports.includes(port)) port = await freePort();
    ports.push(port);
  }
  const children = new Map<number, ChildProcess>();
  killAllOnExit();

  const startNode = async (port: number) => {
    const nodeDir = path.join(dir, String(port));
    fs.mkdirSync(nodeDir, { recursive: true });
    const child = spawn(
      'redis-server',
      [
        '--port', String(port),
        '--bind', '127.0.0.1',
        '--cluster-enabled', 'yes',
        '--cluster-config-file', path.join(nodeDir, 'nodes.conf'),
        '--cluster-node-timeout', String(nodeTimeoutMs),
        // A replica that lags (its master died mid-write) is still promoted:
        // losing the tail of a stream is the fault the publisher must repair.
        '--cluster-replica-validity-factor', '0',
        '--save', '',
        '--appendonly', 'no',
        '--dir', nodeDir,
        '--logfile', path.join(nodeDir, 'redis.log'),
      ],
      { stdio: 'ignore' },
    );
    children.set(port, child);
    running.add(child);
    child.once('exit', () => running.delete(child));
    await waitFor(() => withNode(port, async (c) => (await c.ping()) === 'PONG').catch(() => false), {
      timeoutMs: 10_000,
      description: `redis-server --cluster-enabled on port ${port}`,
    });
  };

  const stopNode = async (port: number, signal: NodeJS.Signals) => {
    const child = children.get(port);
    children.delete(port);
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill(signal);
    await exited;
  };

  // Frozen (SIGSTOP) nodes accept connections but never answer: asked nothing.
  const frozen = new Set<number>();
  const livePorts = () => ports.filter((p) => children.has(p) && !frozen.has(p));

  const nodes = async (): Promise<ClusterNodeInfo[]> => {
    for (const port of livePorts()) {
      try {
        return parseClusterNodes(String(await withNode(port, (c) => c.call('CLUSTER', 'NODES'))));
      } catch {
        // try the next node
      }
    }
    throw new Error('no cluster node answers');
  };

  const allOk = async () => {
    for (const port of livePorts()) {
      const info = String(await withNode(port, (c) => c.call('CLUSTER', 'INFO')).catch(() => ''));
      if (!info.includes('cluster_state:ok')) return false;
    }
    return true;
  };

  /** Every live replica's link to its master is up, so a failover has a replica to promote. */
  const replicasInSync = async () => {
    for (const port of livePorts()) {
      const info = String(await withNode(port, (c) => c.info('replication')).catch(() => ''));
      if (info.includes('role:slave') && !info.includes('master_link_status:up')) return false;
    }
    return true;
  };

  /** The port of the live master serving `slot`, once every replica is in sync (so one can be promoted). */
  const masterOf = async (slot: number, timeoutMs: number): Promise<number> => {
    await waitFor(replicasInSync, { timeoutMs, intervalMs: 100, description: 'replicas in sync before failing a master' });
    const known = await nodes();
    const victim = known.find((n) => n.role === 'master' && !n.failed && n.slots.some(([from, to]) => slot >= from && slot <= to));
    if (!victim) throw new Error(`no live master serves slot ${slot}`);
    // A master whose replica was promoted earlier (and whose old master never came back) has none left to promote.
    if (!known.some((n) => n.role === 'replica' && n.masterId === victim.id && !n.failed && livePorts().includes(n.port))) {
      throw new Error(`the master on port ${victim.port} (slot ${slot}) has no live replica to promote: restart the node a previous failover left down`);
    }
    return victim.port;
  };

  /** Waits until a node other than `victim` serves `slot` as master and the live nodes report ok; returns its port. */
  const promotedFor = async (victim: number, slot: number, timeoutMs: number): Promise<number> => {
    let promoted = 0;
    await waitFor(
      async () => {
        const now = await nodes().catch(() => []);
        const owner = now.find((n) => n.role === 'master' && !n.failed && n.slots.some(([from, to]) => slot >= from && slot <= to));
        if (!owner || owner.port === victim) return false;
        promoted = owner.port;
        return allOk();
      },
      { timeoutMs, intervalMs: 200, description: `a replica of the failed master (port ${victim}) to be promoted` },
    );
    return promoted;
  };

  let destroyed: Promise<void> | undefined;
  const destroy = () =>
    (destroyed ??= (async () => {
      for (const port of frozen) children.get(port)?.kill('SIGCONT');
      await Promise.all([...children.keys()].map((port) => stopNode(port, 'SIGKILL')));
      fs.rmSync(dir, { recursive: true, force: true });
    })());

  try {
    await Promise.all(ports.map(startNode));
    await execFileAsync(
      'redis-cli',
      ['--cluster', 'create', ...ports.map((p) => `127.0.0.1:${p}`), '--cluster-replicas', String(replicas), '--cluster-yes'],
      { timeout: startTimeoutMs },
    );
    await waitFor(async () => (await allOk()) && (await nodes()).filter((n) => n.role === 'replica').length === masters * replicas && (await replicasInSync()), {
      timeoutMs: startTimeoutMs,
      intervalMs: 200,
      description: `Redis Cluster on ports ${ports.join(',')} to report cluster_state:ok with every replica in sync`,
    });
  } catch (error) {
    await destroy();
    throw error;
  }

  const url = `redis://127.0.0.1:${ports[0]}/0`;
  const seeds = ports.map((p) => `127.0.0.1:${p}`);
  const connection: RedisConnection = { url, cluster: true, clusterSeeds: seeds.slice(1) };
  return {
    url,
    seeds,
    ports,
    connection,
    env: redisConnectionEnv(connection),
    nodes,
    isRunning: (port) => children.has(port),
    async killMaster({ slot = 0, timeoutMs = 60_000 } = {}) {
      const victim = await masterOf(slot, timeoutMs);
      await stopNode(victim, 'SIGKILL');
      return { killed: victim, promoted: await promotedFor(victim, slot, timeoutMs) };
    },
    async freezeMaster({ slot = 0, timeoutMs = 60_000 } = {}) {
      const victim = await masterOf(slot, timeoutMs);
      frozen.add(victim);
      children.get(victim)?.kill('SIGSTOP');
      const promoted = await promotedFor(victim, slot, timeoutMs);
      const thaw = async () => {
        if (!frozen.delete(victim)) return;
        children.get(victim)?.kill('SIGCONT');
        await waitFor(async () => (await allOk()) && (await replicasInSync()), {
          timeoutMs,
          intervalMs: 200,
          description: `thawed node ${victim} to rejoin the cluster`,
        });
      };
      return { frozen: victim, promoted, thaw };
    },
    async restartNode(port, { timeoutMs = 60_000 } = {}) {
      if (children.has(port)) throw new Error(`node ${port} is running`);
      await startNode(port);
      await waitFor(async () => (await allOk()) && (await replicasInSync()), {
        timeoutMs,
        intervalMs: 200,
        description: `node ${port} to rejoin the cluster`,
      });
    },
    destroy,
  };
}
