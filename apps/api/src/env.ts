/**
 * The api's configuration, parsed once at start (zod). The api and its
 * commands read the environment only here.
 */
import os from 'node:os';
import path from 'node:path';
import { baseEnvSchema, isStrict, parseEnv, ConfigError, redisClusterEnvFields, type Env } from '@petcover/service-kit';
import { DEFAULT_DROPBOX_SIGN_BASE_URL } from '@petcover/domain';
import { keyPrefixSchema } from '@petcover/outbox';
import { z } from 'zod';

/** Development defaults; strict mode (NODE_ENV=production, CI_STRICT=1) refuses them. */
export const DEV_AUTH_SECRET = 'petcover-dev-auth-secret-not-for-production';
export const DEV_SIGNATURE_API_KEY = 'petcover-dev-signature-api-key';

function flag(defaultValue: '0' | '1') {
  return z
    .enum(['0', '1', 'true', 'false'])
    .default(defaultValue)
    .transform((v) => v === '1' || v === 'true');
}

export const envSchema = baseEnvSchema({ healthPort: 3000 }).extend({
  ...redisClusterEnvFields,
  /** Prefix of the pipeline's Redis keys (must match the publisher's), for the admin status. */
  REDIS_KEY_PREFIX: keyPrefixSchema,
  PORT: z.coerce.number().int().min(0).max(65535).default(3000),
  /** HS256 key of owner bearer tokens. */
  AUTH_SECRET: z.string().min(16, 'must be at least 16 characters').default(DEV_AUTH_SECRET),
  /** 1: confirmation approves inline and enrolls synchronously (manual provider). */
  DEV_AUTO_ENROLL_PET: flag('0'),
  SIGNATURE_PROVIDER: z.enum(['manual', 'dropbox_sign']).default('manual'),
  /** Dropbox Sign API key: authenticates dispatches and keys the callback event_hash. */
  SIGNATURE_API_KEY: z.string().min(1).default(DEV_SIGNATURE_API_KEY),
  DROPBOX_SIGN_BASE_URL: z.string().url().default(DEFAULT_DROPBOX_SIGN_BASE_URL),
  DROPBOX_SIGN_TEST_MODE: flag('1'),
  DOCUMENT_STORE_DIR: z.string().min(1).default(path.join(os.tmpdir(), 'petcover-documents')),
  /** Key of the admin routes (`X-Admin-Key`); unset turns them off (503). */
  ADMIN_API_KEY: z.string().min(16, 'must be at least 16 characters').optional(),
  /** A second key that signs in to the console read-only. */
  ADMIN_READ_ONLY_KEY: z.string().min(16, 'must be at least 16 characters').optional(),
  /** 1: the console hides and refuses every action, whatever the key. */
  CONSOLE_READ_ONLY: flag('0'),
  /** Largest JSON body accepted (express/bytes syntax); larger → 413. */
  /** Health ports `petcover-dev` gives the publisher and consumer it starts. */
  DEV_PUBLISHER_HEALTH_PORT: z.coerce.number().int().min(1).max(65535).default(9101),
  DEV_CONSUMER_HEALTH_PORT: z.coerce.number().int().min(1).max(65535).default(9102),
  BODY_LIMIT: z.string().regex(/^\d+(b|kb|mb)?$/i, 'like 100kb').default('100kb'),
});

export type ApiEnv = z.output<typeof envSchema>;

/** Parses `env` (default: the process environment). Throws ConfigError with a one-line reason. */
export function readApiEnv(env: Env = process.env): ApiEnv {
  const parsed = parseEnv(envSchema, env);
  if (isStrict(env)) {
    if (!env.AUTH_SECRET) throw new ConfigError('AUTH_SECRET must be set when NODE_ENV=production or CI_STRICT=1');
    if (parsed.SIGNATURE_PROVIDER === 'dropbox_sign' && !env.SIGNATURE_API_KEY) {
      throw new ConfigError('SIGNATURE_API_KEY must be set for SIGNATURE_PROVIDER=dropbox_sign when NODE_ENV=production or CI_STRICT=1');
    }
  }
  return parsed;
}

/** The environment handed to child processes by `petcover-dev` (a copy; children parse it themselves). */
export function inheritedEnvironment(): NodeJS.ProcessEnv {
  return { ...process.env };
}
