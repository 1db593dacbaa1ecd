/**
 * How every process connects to Redis: one node, or Redis Cluster
 * (`REDIS_CLUSTER=1`) through `ioredis.Cluster`. Apps, the `events` CLI, the
 * bench, chaos and the test kit all create their clients here, so a setting
 * (credentials, TLS, seeds, failover retries) means the same everywhere.
 *
 * Also what differs between the two at run time: which servers hold keys
 * (SCAN must visit every master), and what "ready" means (CLUSTER INFO).
 */
import Redis, { Cluster, type ClusterNode, type ClusterOptions, type RedisOptions } from 'ioredis';
import { z } from 'zod';
import { parseEnv, type Env } from './config';
import { DEFAULT_REDIS_URL } from './connection-urls';

/** A single-node client or a cluster client; both speak the same commands. */
export type RedisClient = Redis | Cluster;

/** Where Redis is, as read from REDIS_URL, REDIS_CLUSTER and REDIS_CLUSTER_SEEDS. */
export interface RedisConnection {
  /** `redis[s]://[user:pass@]host:port[/db]`; in cluster mode one seed node (db 0 only). */
  url: string;
  cluster: boolean;
  /** Further seed nodes (`host:port`) in cluster mode, tried when the first is down. */
  clusterSeeds?: readonly string[];
}

export interface RedisClientOptions {
  /** Single node: ioredis `maxRetriesPerRequest`. Cluster: the same, per node connection. */
  maxRetriesPerRequest?: number | null;
  enableOfflineQueue?: boolean;
  lazyConnect?: boolean;
  connectTimeout?: number;
  /** CLIENT SETNAME of each connection, so `CLIENT LIST` says whose it is. */
  connectionName?: string;
  /**
   * Delay (ms) before reconnect attempt `attempt`, or null to give up. For a
   * cluster it applies when no seed or known node answers at all; a single
   * failed node is handled by the cluster's own failover retries.
   */
  retryStrategy?: (attempt: number) => number | null;
  /**
   * A connection with a command in flight that receives nothing for this
   * long is destroyed (its commands fail, it reconnects): how a frozen server
   * (SIGSTOP, a paused VM, a partition that drops packets, none of which
   * closes the socket) is told from a slow one. Must exceed the longest BLOCK
   * the client sends. Default none; the apps set REDIS_SOCKET_TIMEOUT_MS, the
   * consumer its block time plus that.
   */
  socketTimeoutMs?: number;
}

/** The apps' socket timeout (see RedisClientOptions.socketTimeoutMs): far above any command's normal answer time. */
export const REDIS_SOCKET_TIMEOUT_MS = 10_000;

export class RedisConnectionError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'RedisConnectionError';
  }
}

const SEED = /^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):(\d{1,5})$/;

/** `host:port,host:port` → `['host:port', ...]`; throws RedisConnectionError naming the bad item. */
export function parseClusterSeeds(text: string | undefined): string[] {
  const seeds = (text ?? '').split(',').map((s) => s.trim()).filter(Boolean);
  for (const seed of seeds) {
    const match = SEED.exec(seed);
    if (!match || Number(match[2]) < 1 || Number(match[2]) > 65535) {
      throw new RedisConnectionError(`cluster seed ${JSON.stringify(seed)} is not host:port`);
    }
  }
  return seeds;
}

const flag = z
  .enum(['0', '1', 'true', 'false'])
  .default('0')
  .transform((v) => v === '1' || v === 'true');

/**
 * The cluster settings every process reads next to REDIS_URL (merge into an
 * env schema with `.extend(redisClusterEnvFields)`).
 */
export const redisClusterEnvFields = {
  /** 1: REDIS_URL is a seed node of a Redis Cluster. */
  REDIS_CLUSTER: flag,
  /** More seed nodes, `host:port,host:port` (cluster mode only). */
  REDIS_CLUSTER_SEEDS: z
    .string()
    .default('')
    .transform((text, ctx) => {
      try {
        return parseClusterSeeds(text);
      } catch (error) {
        ctx.addIssue({ code: 'custom', message: (error as Error).message });
        return z.NEVER;
      }
    }),
};

/** The RedisConnection of an env parsed with `redisClusterEnvFields` and a REDIS_URL. */
export function redisConnectionOf(env: { REDIS_URL: string; REDIS_CLUSTER: boolean; REDIS_CLUSTER_SEEDS: readonly string[] }): RedisConnection {
  return { url: env.REDIS_URL, cluster: env.REDIS_CLUSTER, clusterSeeds: env.REDIS_CLUSTER_SEEDS };
}

/**
 * The RedisConnection of a raw environment (REDIS_URL, default
 * DEFAULT_REDIS_URL; REDIS_CLUSTER; REDIS_CLUSTER_SEEDS), for tools without
 * an env.ts (bench, chaos, test kit). Throws ConfigError naming a bad value.
 */
export function readRedisConnection(env: Env): RedisConnection {
  return redisConnectionOf(parseEnv(z.object({ REDIS_URL: z.string().url().default(DEFAULT_REDIS_URL), ...redisClusterEnvFields }), env, []));
}

/** REDIS_URL, REDIS_CLUSTER and REDIS_CLUSTER_SEEDS of `connection`, for a child process's environment. */
export function redisConnectionEnv(connection: RedisConnection): Record<string, string> {
  return {
    REDIS_URL: connection.url,
    REDIS_CLUSTER: connection.cluster ? '1' : '0',
    REDIS_CLUSTER_SEEDS: connection.cluster ? (connection.clusterSeeds ?? []).join(',') : '',
  };
}

/** Host and port of a seed (`host:port`, IPv6 in brackets). */
function seedNode(seed: string): ClusterNode {
  const match = SEED.exec(seed) as RegExpExecArray;
  return { host: (match[1] as string).replace(/^\[|\]$/g, ''), port: Number(match[2]) };
}

/**
 * Node options and seed list of a cluster URL. Credentials and TLS
 * (`rediss://`) apply to every node the cluster reports, not only the seed.
 */
function clusterSettings(connection: RedisConnection): { seeds: ClusterNode[]; node: RedisOptions; tls: boolean } {
  let url: URL;
  try {
    url = new URL(connection.url);
  } catch {
    throw new RedisConnectionError('REDIS_URL is not a URL');
  }
  if (url.protocol !== 'redis:' && url.protocol !== 'rediss:') {
    throw new RedisConnectionError(`REDIS_URL must start with redis:// or rediss:// (got ${url.protocol}//)`);
  }
  const db = url.pathname.replace(/^\//, '');
  if (db !== '' && db !== '0') throw new RedisConnectionError(`Redis Cluster has only database 0; REDIS_URL selects database ${db}`);
  const tls = url.protocol === 'rediss:';
  const node: RedisOptions = {};
  if (url.username) node.username = decodeURIComponent(url.username);
  if (url.password) node.password = decodeURIComponent(url.password);
  if (tls) node.tls = { servername: url.hostname };
  const seeds = [{ host: url.hostname.replace(/^\[|\]$/g, ''), port: Number(url.port || 6379) }, ...(connection.clusterSeeds ?? []).map(seedNode)];
  return { seeds, node, tls };
}

/**
 * Delays of a cluster client while a master fails over: commands to its
 * slots are retried (up to `maxRedirections` times) while the cluster
 * promotes a replica, which takes about two cluster-node-timeouts.
 */
const CLUSTER_FAILOVER_RETRY_MS = 300;
const CLUSTER_MAX_REDIRECTIONS = 16;

/**
 * How often a cluster client asks for the slot map again. ioredis otherwise
 * refreshes it only on an error (MOVED, a closed connection): a master that
 * froze (SIGSTOP, a paused VM) returns no error, so after its replica was
 * promoted the client kept sending that slot's commands to the frozen node.
 */
const CLUSTER_SLOTS_REFRESH_MS = 5_000;

/**
 * A client for `connection`: `ioredis` for one node, `ioredis.Cluster` for a
 * cluster. Throws RedisConnectionError for a URL cluster mode cannot use.
 * The caller owns the client (listen to 'error', disconnect on stop).
 */
export function createRedisClient(connection: RedisConnection, options: RedisClientOptions = {}): RedisClient {
  const common = {
    ...(options.maxRetriesPerRequest !== undefined ? { maxRetriesPerRequest: options.maxRetriesPerRequest } : {}),
    ...(options.connectTimeout !== undefined ? { connectTimeout: options.connectTimeout } : {}),
    ...(options.connectionName !== undefined ? { connectionName: options.connectionName } : {}),
    ...(options.socketTimeoutMs !== undefined ? { socketTimeout: options.socketTimeoutMs } : {}),
  };
  if (!connection.cluster) {
    return new Redis(connection.url, {
      ...common,
      ...(options.enableOfflineQueue !== undefined ? { enableOfflineQueue: options.enableOfflineQueue } : {}),
      ...(options.lazyConnect !== undefined ? { lazyConnect: options.lazyConnect } : {}),
      ...(options.retryStrategy ? { retryStrategy: options.retryStrategy } : {}),
    });
  }
  const { seeds, node, tls } = clusterSettings(connection);
  const clusterOptions: ClusterOptions = {
    redisOptions: { ...node, ...common },
    ...(options.enableOfflineQueue !== undefined ? { enableOfflineQueue: options.enableOfflineQueue } : {}),
    ...(options.lazyConnect !== undefined ? { lazyConnect: options.lazyConnect } : {}),
    ...(options.retryStrategy ? { clusterRetryStrategy: (attempt: number) => options.retryStrategy?.(attempt) ?? null } : {}),
    retryDelayOnFailover: CLUSTER_FAILOVER_RETRY_MS,
    retryDelayOnClusterDown: CLUSTER_FAILOVER_RETRY_MS,
    retryDelayOnTryAgain: CLUSTER_FAILOVER_RETRY_MS,
    maxRedirections: CLUSTER_MAX_REDIRECTIONS,
    slotsRefreshInterval: CLUSTER_SLOTS_REFRESH_MS,
    // With TLS the certificate names the host: connect by name, not by the address DNS gives.
    ...(tls ? { dnsLookup: (address: string, callback: (error: Error | null, address: string) => void) => callback(null, address) } : {}),
  };
  return new Cluster(seeds, clusterOptions);
}

export function isCluster(client: RedisClient): client is Cluster {
  return client instanceof Cluster;
}

/**
 * The servers that hold keys: the client itself for one node, every master
 * for a cluster. Throws when a cluster client does not know its masters yet
 * (not connected).
 */
export function masterNodes(client: RedisClient): Redis[] {
  if (!isCluster(client)) return [client];
  const masters = client.nodes('master');
  if (masters.length === 0) throw new RedisConnectionError(`Redis Cluster client is ${client.status}: no master known`);
  return masters;
}

/**
 * Every key matching `pattern` (SCAN, never KEYS), in batches, on every
 * master. Keys of a cluster come from several nodes, so a batch may span
 * slots: send single-key commands for them, or use `node` (the master that
 * holds them) for a pipeline.
 */
export async function* scanKeys(
  client: RedisClient,
  pattern: string,
  options: { count?: number; type?: string } = {},
): AsyncGenerator<{ node: Redis; keys: string[] }> {
  for (const node of masterNodes(client)) {
    let cursor = '0';
    do {
      const args: (string | number)[] = ['MATCH', pattern, 'COUNT', options.count ?? 1000];
      if (options.type) args.push('TYPE', options.type);
      const [next, keys] = (await node.call('SCAN', cursor, ...args)) as [string, string[]];
      cursor = next;
      if (keys.length > 0) yield { node, keys };
    } while (cursor !== '0');
  }
}

/**
 * Throws unless Redis answers and, for a cluster, reports `cluster_state:ok`
 * (all slots served); a single-node client pointed at a cluster node fails
 * too. For `/readyz`.
 */
export async function assertRedisReady(client: RedisClient): Promise<void> {
  if (client.status !== 'ready') throw new Error(`redis connection is ${client.status}`);
  if (!isCluster(client)) {
    const answer = await client.ping();
    if (answer !== 'PONG') throw new Error(`PING answered ${answer}`);
    // A cluster node answers PING, then MOVED for most keys: say what to set.
    if (/cluster_enabled:1/.test(await client.info('cluster'))) throw new Error('REDIS_URL is a Redis Cluster node: set REDIS_CLUSTER=1');
    return;
  }
  const info = String(await client.call('CLUSTER', 'INFO'));
  const state = /cluster_state:(\w+)/.exec(info)?.[1];
  if (state !== 'ok') throw new Error(`redis cluster_state is ${state ?? 'unknown'}`);
}
