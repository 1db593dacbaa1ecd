/**
 * @petcover/service-kit — process plumbing shared by the three apps.
 */
export { createLogger, LOG_FORMATS, LOG_LEVELS } from './logger';
export type { Logger, LoggerConfig, LogFormat, LogLevel } from './logger';
export { listenOn, PortInUseError } from './listen';
export { DEFAULT_DATABASE_URL, DEFAULT_REDIS_URL, maskUrlPassword } from './connection-urls';
export { baseEnvSchema, ConfigError, EXIT_CONFIG, isStrict, parseEnv } from './config';
export type { Env } from './config';
export { DEFAULT_CHECK_TIMEOUT_MS, runReadinessChecks, startHealthServer } from './health';
export type { CheckResult, HealthServer, HealthServerOptions, ReadinessCheck, ReadinessReport } from './health';
export { installLastResortHandlers } from './process-errors';
export type { LastResortOptions } from './process-errors';
export { createShutdown } from './shutdown';
export type { CleanupStep, ShutdownReason } from './shutdown';
export { readAppVersion } from './app-version';
export {
  assertRedisReady,
  createRedisClient,
  isCluster,
  masterNodes,
  parseClusterSeeds,
  readRedisConnection,
  redisClusterEnvFields,
  redisConnectionEnv,
  redisConnectionOf,
  RedisConnectionError,
  REDIS_SOCKET_TIMEOUT_MS,
  scanKeys,
} from './redis-connection';
export type { RedisClient, RedisClientOptions, RedisConnection } from './redis-connection';
