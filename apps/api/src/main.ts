#!/usr/bin/env node
/**
 * `api [--port <n>] [--log-level <level>]`: the HTTP API. Env: see env.ts.
 * SIGINT/SIGTERM: stop accepting, finish requests in flight, close pools.
 */
// First: tracing patches modules as they load.
import { tracing } from './instrument';
import type { AddressInfo } from 'node:net';
import { collectDefaultMetrics, Registry } from 'prom-client';
import { createLocalDocumentStore, domainMigrations } from '@petcover/domain';
import { connectDatabase, connectReadiness, outboxMigrations } from '@petcover/outbox';
import { ConfigError, createLogger, createRedisClient, createShutdown, EXIT_CONFIG, installLastResortHandlers, LOG_LEVELS, maskUrlPassword, redisConnectionOf, type LogLevel } from '@petcover/service-kit';
import { createAdminRouter } from './admin/router';
import { createConsoleRouter } from './console/router';
import { createApp } from './app';
import { ownerTokenConfigOf, readApiEnv, type ApiEnv } from './env';
import { listenHttp } from './http/http-server';
import { signatureProviderFromEnv } from './signature-provider';

const USAGE = 'usage: api [--port <n>] [--log-level <level>]';

function applyFlags(env: ApiEnv, argv: string[]): ApiEnv {
  const result = { ...env };
  for (let i = 0; i < argv.length; i += 1) {
    const flag = argv[i];
    const value = argv[i + 1];
    if (flag === 'start') continue;
    if (flag === '--help' || flag === '-h') {
      console.log(USAGE);
      process.exit(0);
    }
    if (flag === '--port' && value && /^\d+$/.test(value) && Number(value) <= 65535) {
      result.PORT = Number(value);
      i += 1;
    } else if (flag === '--log-level' && value && (LOG_LEVELS as readonly string[]).includes(value)) {
      result.LOG_LEVEL = value as LogLevel;
      i += 1;
    } else {
      throw new ConfigError(`bad argument ${JSON.stringify(flag)}${value !== undefined ? ` ${JSON.stringify(value)}` : ''}; ${USAGE}`);
    }
  }
  return result;
}

async function main(): Promise<void> {
  let env: ApiEnv;
  try {
    env = applyFlags(readApiEnv(), process.argv.slice(2));
  } catch (error) {
    if (error instanceof ConfigError) {
      console.error(`api: ${error.message}`);
      process.exit(EXIT_CONFIG);
    }
    throw error;
  }
  const logger = createLogger({ name: 'api', level: env.LOG_LEVEL, format: env.LOG_FORMAT });
  installLastResortHandlers(logger);
  const database = connectDatabase(env.DATABASE_URL, { applicationName: 'petcover-api' });
  // Readiness has its own connections: a busy request pool must not make the
  // api look dead, and a probe must not queue behind owners' requests.
  const readiness = connectReadiness({ name: 'petcover-api', databaseUrl: env.DATABASE_URL, redis: redisConnectionOf(env), migrations: [outboxMigrations, domainMigrations] });
  // Redis serves the rate limiter (which falls back to memory), the admin
  // routes and /readyz; fail fast instead of queueing commands while it is down.
  const redis = createRedisClient(redisConnectionOf(env), { maxRetriesPerRequest: 1, enableOfflineQueue: false, lazyConnect: false });
  let redisDown = false;
  redis.on('error', (error) => {
    if (!redisDown) logger.warn({ err: error }, 'redis unreachable; owners are still served, /readyz reports it');
    redisDown = true;
  });
  redis.on('ready', () => {
    if (redisDown) logger.info('redis reachable again');
    redisDown = false;
  });

  const metricsRegistry = new Registry();
  collectDefaultMetrics({ register: metricsRegistry });
  const signatureProvider = signatureProviderFromEnv(env);
  const app = createApp({
    logger,
    wizard: {
      db: database.db,
      documentStore: createLocalDocumentStore(env.DOCUMENT_STORE_DIR),
      signatureProvider,
      autoEnroll: env.DEV_AUTO_ENROLL_PET,
      logger,
    },
    ownerTokens: ownerTokenConfigOf(env),
    signatureApiKey: env.SIGNATURE_API_KEY,
    callbackFreshness: { maxAgeSeconds: env.CALLBACK_MAX_AGE_SECONDS, maxFutureSkewSeconds: env.CALLBACK_MAX_FUTURE_SKEW_SECONDS },
    bodyLimit: env.BODY_LIMIT,
    devSignIn: !env.strict,
    readinessChecks: {
      db: readiness.checks.db,
      migrations: readiness.checks.migrations,
    },
    nonBlockingReadinessChecks: { redis: readiness.checks.redis },
    rateLimitRedis: redis,
    ownerWritesPerMinute: env.RATE_LIMIT_OWNER_WRITES_PER_MINUTE,
    metricsRegistry,
    extraRouters: {
      '/v1/admin': createAdminRouter({ adminKey: env.ADMIN_API_KEY, db: database.db, sql: database.sql, redis, keyPrefix: env.REDIS_KEY_PREFIX, logger }),
      '/console': createConsoleRouter({
        adminKey: env.ADMIN_API_KEY,
        readOnlyKey: env.ADMIN_READ_ONLY_KEY,
        readOnly: env.CONSOLE_READ_ONLY,
        db: database.db,
        sql: database.sql,
        redis,
        keyPrefix: env.REDIS_KEY_PREFIX,
        logger,
      }),
    },
  });

  const server = await listenHttp(app, {
    port: env.PORT,
    timeouts: { requestTimeoutMs: env.REQUEST_TIMEOUT_MS, headersTimeoutMs: env.HEADERS_TIMEOUT_MS },
  });
  logger.info(
    {
      port: (server.address() as AddressInfo).port,
      database: maskUrlPassword(env.DATABASE_URL),
      signatureProvider: signatureProvider.name,
      autoEnroll: env.DEV_AUTO_ENROLL_PET,
    },
    'api listening',
  );

  const shutdown = createShutdown(logger, [
    { name: 'http server', run: () => new Promise<void>((resolve) => server.close(() => resolve())) },
    { name: 'postgres', run: () => database.close() },
    { name: 'readiness connections', run: () => readiness.close() },
    { name: 'redis', run: () => redis.quit().catch(() => redis.disconnect()) },
    { name: 'tracing', run: () => tracing.shutdown() },
  ]);
  // `on`, not `once`: a second Ctrl-C must not cut requests in flight; shutdown is memoised.
  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    process.on(signal, () => {
      // Idle keep-alive connections would hold server.close() open.
      server.closeIdleConnections();
      void shutdown({ signal, note: 'finishing requests in flight' }).then((clean) => process.exit(clean ? 0 : 1));
    });
  }
}

main().catch((error: Error) => {
  console.error(`api: failed to start: ${error.message}`);
  process.exit(1);
});
