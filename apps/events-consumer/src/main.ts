#!/usr/bin/env node
/**
 * events-consumer: leases stream partitions for its group, runs the handler
 * registry, dead-letters what cannot be handled. Signal handling lives here
 * and nowhere else.
 */
// First: tracing patches modules as they load.
import { tracing } from './instrument';
import { collectDefaultMetrics, Registry } from 'prom-client';
import {
  backoffDelay,
  connectDatabase,
  connectReadiness,
  CONSUMER_DEFAULTS,
  createConsumer,
  createHandlerRegistry,
  outboxMigrations,
  RECONNECT_BACKOFF,
  type Consumer,
  type ConsumerModule,
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
  readAppVersion,
  REDIS_SOCKET_TIMEOUT_MS,
  redisConnectionOf,
  startHealthServer,
} from '@petcover/service-kit';
import { EXIT_USAGE, parseCli, USAGE, UsageError, type StartOptions } from './cli';
import { envSchema, type ConsumerEnv } from './env';
import { loadConsumerModule } from './load-module';

function exitWith(code: number, message: string): never {
  console.error(`events-consumer: ${message}`);
  process.exit(code);
}

/** Reconnect quickly at first, then every two seconds at most, with jitter so replicas spread out. */
function redisRetryDelay(times: number): number {
  return backoffDelay(times, RECONNECT_BACKOFF);
}

async function start(options: StartOptions, env: ConsumerEnv): Promise<void> {
  const logger = createLogger({ name: 'events-consumer', level: options.logLevel ?? env.LOG_LEVEL, format: env.LOG_FORMAT });
  installLastResortHandlers(logger);
  let module: ConsumerModule;
  const registry = createHandlerRegistry();
  try {
    module = loadConsumerModule(options.module);
    module.register(registry);
  } catch (error) {
    exitWith(EXIT_CONFIG, (error as Error).message);
  }

  const group = options.group ?? env.CONSUMER_GROUP;
  const partitions = { ...(env.STREAM_PARTITIONS ?? {}), ...(options.partitions ?? {}) };
  const database = connectDatabase(env.DATABASE_URL, {
    // One connection per partition in flight, plus lease renewal and the node heartbeat.
    max: (options.concurrency ?? 4) + 5,
    applicationName: `events-consumer:${group}`,
  });
  // A blocking read is silent for up to its BLOCK time: the socket timeout starts after it.
  const socketTimeoutMs = (options.blockMs ?? CONSUMER_DEFAULTS.blockMs) + REDIS_SOCKET_TIMEOUT_MS;
  const redis = createRedisClient(redisConnectionOf(env), { maxRetriesPerRequest: 3, retryStrategy: redisRetryDelay, socketTimeoutMs });
  // Connection errors are reported once per state change by the consumer; ioredis would print each one.
  redis.on('error', () => undefined);

  const metricsRegistry = new Registry();
  collectDefaultMetrics({ register: metricsRegistry });
  let consumer: Consumer;
  try {
    consumer = createConsumer({
      db: database.db,
      sql: database.sql,
      redis,
      registry,
      streams: module.streams,
      partitions,
      group,
      keyPrefix: env.REDIS_KEY_PREFIX,
      concurrency: options.concurrency,
      batchSize: options.batchSize,
      blockMs: options.blockMs,
      leaseTtlMs: options.leaseTtlMs,
      maxAttempts: options.maxAttempts,
      retryBaseDelayMs: options.retryBaseDelayMs,
      onExhausted: options.onExhausted,
      handlerTimeoutMs: options.handlerTimeoutMs ?? (env.HANDLER_TIMEOUT_S === undefined ? undefined : Math.round(env.HANDLER_TIMEOUT_S * 1000)),
      readMaxBytes: options.readMaxBytes ?? env.READ_MAX_BYTES,
      inboxRetentionMs: env.INBOX_RETENTION_DAYS === undefined ? undefined : Math.round(env.INBOX_RETENTION_DAYS * 24 * 3_600_000),
      logger,
      metricsRegistry,
      version: readAppVersion(__dirname),
    });
  } catch (error) {
    exitWith(EXIT_CONFIG, (error as Error).message);
  }
  // /readyz on its own connections: handlers that hold every pooled connection must not make the consumer look dead.
  const readiness = connectReadiness({
    name: 'events-consumer',
    databaseUrl: env.DATABASE_URL,
    redis: redisConnectionOf(env),
    migrations: [outboxMigrations, ...(module.migrations ?? [])],
  });
  const health = await startHealthServer({
    port: env.HEALTH_PORT,
    registry: metricsRegistry,
    checks: readiness.checks,
  });
  consumer.start();
  logger.info(
    {
      group,
      ownerId: consumer.ownerId,
      streams: consumer.status().partitions,
      handlers: registry.eventTypes(),
      healthPort: health.port,
      // Which database and Redis, so a split configuration shows in the first line (passwords masked).
      database: maskUrlPassword(env.DATABASE_URL),
      redis: maskUrlPassword(env.REDIS_URL),
      redisCluster: env.REDIS_CLUSTER,
    },
    'events-consumer started',
  );

  // Last resort: every promise the consumer starts is awaited or handled; if one ever
  // slips through, say so loudly and keep running (a dead process heals nothing).
  process.on('unhandledRejection', (reason) => {
    logger.error({ err: reason }, 'BUG: unhandled promise rejection (the consumer keeps running)');
  });

  const shutdown = createShutdown(
    logger,
    [
      { name: 'consumer', run: () => consumer.stop() },
      { name: 'health server', run: () => health.close() },
      { name: 'readiness connections', run: () => readiness.close() },
      // disconnect, not QUIT: QUIT would wait for a Redis that may be down.
      { name: 'redis', run: () => redis.disconnect() },
      { name: 'postgres', run: () => database.close() },
      { name: 'tracing', run: () => tracing.shutdown() },
    ],
    30_000,
  );
  // `on`, not `once`: a second Ctrl-C must not kill the process mid-batch; shutdown is memoised.
  const onSignal = (signal: NodeJS.Signals) => {
    void shutdown({ signal, note: 'finishing the batch in hand, then releasing leases' }).then((clean) => process.exit(clean ? 0 : 1));
  };
  process.on('SIGTERM', onSignal);
  process.on('SIGINT', onSignal);
}

function main(argv: readonly string[]): void {
  let command;
  try {
    command = parseCli(argv);
  } catch (error) {
    if (error instanceof UsageError) exitWith(EXIT_USAGE, `${error.message}\n${USAGE}`);
    throw error;
  }
  if (command.command === 'help') {
    console.log(USAGE);
    return;
  }
  let env: ConsumerEnv;
  try {
    env = parseEnv(envSchema, process.env);
  } catch (error) {
    if (error instanceof ConfigError) exitWith(EXIT_CONFIG, error.message);
    throw error;
  }
  start(command.options, env).catch((error: unknown) => exitWith(1, `failed to start: ${(error as Error).message}`));
}

main(process.argv.slice(2));
