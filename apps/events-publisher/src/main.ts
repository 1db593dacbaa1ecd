#!/usr/bin/env node
/**
 * events-publisher: leases streams, drains the outbox in order, appends to
 * Redis Streams, marks rows published, prunes old rows. The only place with
 * signal handling and process.env (through env.ts).
 */
// First: tracing patches modules as they load.
import { tracing } from './instrument';
import { collectDefaultMetrics, Registry } from 'prom-client';
import {
  backoffDelay,
  connectDatabase,
  connectReadiness,
  createPublisher,
  outboxMigrations,
  RECONNECT_BACKOFF,
  type PublisherHooks,
} from '@petcover/outbox';
import {
  ConfigError,
  createLogger,
  createRedisClient,
  createShutdown,
  EXIT_CONFIG,
  installLastResortHandlers,
  maskUrlPassword,
  parseEnv,
  PortInUseError,
  readAppVersion,
  REDIS_SOCKET_TIMEOUT_MS,
  redisConnectionOf,
  startHealthServer,
  type Logger,
  type RedisClient,
  type RedisConnection,
} from '@petcover/service-kit';
import { CliUsageError, parseCli, USAGE } from './cli';
import { envSchema, type PublisherEnv } from './env';

/** EX_USAGE of sysexits.h. */
const EXIT_USAGE = 64;
/** Exit code of the test-only fault hook, distinct from crashes and config errors. */
export const FAULT_EXIT_CODE = 86;

async function main(argv: readonly string[]): Promise<void> {
  let cli;
  let env: PublisherEnv;
  try {
    cli = parseCli(argv);
    if (cli.command === 'help') {
      console.log(USAGE);
      return;
    }
    env = parseEnv(envSchema, process.env);
  } catch (error) {
    if (error instanceof CliUsageError) {
      console.error(`events-publisher: ${error.message}\n\n${USAGE}`);
      process.exit(EXIT_USAGE);
    }
    if (error instanceof ConfigError) {
      console.error(`events-publisher: ${error.message}`);
      process.exit(EXIT_CONFIG);
    }
    throw error;
  }

  const logger = createLogger({ name: 'events-publisher', level: cli.logLevel ?? env.LOG_LEVEL, format: env.LOG_FORMAT });
  installLastResortHandlers(logger);
  const database = connectDatabase(env.DATABASE_URL, { max: 10, applicationName: 'events-publisher' });
  const redis = connectRedis(redisConnectionOf(env), logger);
  // /readyz on its own connections: drains that fill the pool must not make the publisher look dead.
  const readiness = connectReadiness({ name: 'events-publisher', databaseUrl: env.DATABASE_URL, redis: redisConnectionOf(env), migrations: [outboxMigrations] });
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });

  const publisher = createPublisher({
    sql: database.sql,
    redis,
    logger,
    registry,
    keyPrefix: env.REDIS_KEY_PREFIX,
    partitions: { ...env.STREAM_PARTITIONS, ...cli.partitions },
    batchSize: cli.batchSize,
    batchMaxBytes: cli.batchMaxBytes ?? env.PUBLISHER_BATCH_MAX_BYTES,
    pollIntervalMs: cli.pollIntervalMs,
    leaseTtlMs: cli.leaseTtlMs,
    retentionMs: env.OUTBOX_RETENTION_DAYS * 24 * 3_600_000,
    hooks: faultHooks(env, logger),
    version: readAppVersion(__dirname),
  });
  const health = await startHealthServer({
    port: env.HEALTH_PORT,
    registry,
    checks: readiness.checks,
  });
  logger.info(
    {
      healthPort: health.port,
      database: maskUrlPassword(env.DATABASE_URL),
      redis: maskUrlPassword(env.REDIS_URL),
      redisCluster: env.REDIS_CLUSTER,
      ownerId: publisher.ownerId,
    },
    'events-publisher started',
  );
  const shutdown = createShutdown(logger, [
    { name: 'publisher', run: () => publisher.stop() },
    { name: 'health server', run: () => health.close() },
    { name: 'readiness connections', run: () => readiness.close() },
    { name: 'redis', run: () => redis.disconnect() },
    { name: 'postgres', run: () => database.close(2) },
    { name: 'tracing', run: () => tracing.shutdown() },
  ]);
  // `on`, not `once`: a second Ctrl-C must not kill the process mid-batch; shutdown is memoised.
  const onSignal = (signal: NodeJS.Signals) => {
    void shutdown({ signal, note: 'finishing batches in hand, releasing leases' }).then((clean) => process.exit(clean ? 0 : 1));
  };
  // Before start: the health server already answers, so an orchestrator may send SIGTERM while the publisher
  // is still registering (seen in CI on a Redis Cluster: the process died of the signal, exit code none).
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
  await publisher.start();
}

/**
 * Commands fail fast while Redis is down (one retry), so the drain loop backs
 * off instead of piling up a queue; reconnects go on with capped, jittered delays.
 * Connection errors are logged once per outage, not once per retry.
 */
function connectRedis(connection: RedisConnection, logger: Logger): RedisClient {
  const url = connection.url;
  const redis = createRedisClient(connection, {
    maxRetriesPerRequest: 1,
    retryStrategy: (attempt) => backoffDelay(attempt, RECONNECT_BACKOFF),
    socketTimeoutMs: REDIS_SOCKET_TIMEOUT_MS,
  });
  let down = false;
  redis.on('error', (error: Error) => {
    if (down) return;
    down = true;
    logger.warn({ err: error, redis: maskUrlPassword(url) }, 'redis unreachable; retrying in the background');
  });
  redis.on('ready', () => {
    if (!down) return;
    down = false;
    logger.info({ redis: maskUrlPassword(url) }, 'redis reachable again');
  });
  return redis;
}

/**
 * Test-only fault hooks (PETCOVER_FAULT), off by default:
 * `exit-after-append` exits between the Redis append and the published_at update;
 * `stop-before-append` SIGSTOPs this process once, with its first batch in hand,
 * so a test can let the lease expire and SIGCONT a zombie.
 */
function faultHooks(env: PublisherEnv, logger: Logger): PublisherHooks | undefined {
  const fault = env.PETCOVER_FAULT;
  if (fault === undefined) return undefined;
  logger.warn({ fault }, 'test fault hook armed');
  if (fault === 'exit-after-append') {
    return {
      afterAppend(stream, rows) {
        logger.warn({ fault, stream, rows: rows.length }, 'fault hook: exiting between append and published_at update');
        process.exit(FAULT_EXIT_CODE);
      },
    };
  }
  let stopped = false;
  return {
    beforeAppend(stream, rows) {
      if (stopped) return;
      stopped = true;
      logger.warn({ fault, stream, rows: rows.length }, 'fault hook: stopping this process (SIGSTOP) with a batch in hand');
      process.kill(process.pid, 'SIGSTOP');
    },
  };
}

main(process.argv.slice(2)).catch((error: unknown) => {
  if (error instanceof PortInUseError) console.error(`events-publisher: failed to start: ${error.message}`);
  else console.error('events-publisher: fatal', error);
  process.exit(1);
});
