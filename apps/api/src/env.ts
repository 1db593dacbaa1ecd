/**
 * The api's configuration, parsed once at start (zod). The api and its
 * commands read the environment only here.
 */
import os from 'node:os';
import path from 'node:path';
import { baseEnvSchema, isStrict, parseEnv, ConfigError, redisClusterEnvFields, type Env } from '@petcover/service-kit';
import { DEFAULT_CALLBACK_FRESHNESS, DEFAULT_DROPBOX_SIGN_BASE_URL } from '@petcover/domain';
import { keyPrefixSchema } from '@petcover/outbox';
import { DEFAULT_OWNER_TOKEN_MAX_LIFETIME_SECONDS, type OwnerTokenConfig } from './auth/owner-token';
import { DEFAULT_HTTP_TIMEOUTS } from './http/http-server';
import { DEFAULT_OWNER_WRITES_PER_MINUTE } from './http/owner-rate-limit';
import { z } from 'zod';

/** Development defaults; strict mode (NODE_ENV=production, CI_STRICT=1) refuses them. */
export const DEV_AUTH_SECRET = 'petcover-dev-auth-secret-not-for-production';
export const DEV_SIGNATURE_API_KEY = 'petcover-dev-signature-api-key';
/**
 * Words that mark a value published in this repository (docker-compose.yml,
 * the k8s placeholders, the defaults above): a secret containing one is
 * known to everybody, so strict mode refuses it.
 */
const PUBLISHED_SECRET_MARKER = /dev[-_]?only|not[-_]for[-_]production|replace[-_]?me|change[-_]?me|petcover-dev-/i;

function flag(defaultValue: '0' | '1') {
  return z
    .enum(['0', '1', 'true', 'false'])
    .default(defaultValue)
    .transform((v) => v === '1' || v === 'true');
}

const seconds = (fallback: number, max: number) => z.coerce.number().int().min(1).max(max).default(fallback);

export const envSchema = baseEnvSchema({ healthPort: 3000 }).extend({
  ...redisClusterEnvFields,
  /** Prefix of the pipeline's Redis keys (must match the publisher's), for the admin status. */
  REDIS_KEY_PREFIX: keyPrefixSchema,
  PORT: z.coerce.number().int().min(0).max(65535).default(3000),
  /** HS256 key of owner bearer tokens. */
  AUTH_SECRET: z.string().min(16, 'must be at least 16 characters').default(DEV_AUTH_SECRET),
  /** When set, owner tokens must carry this `iss` / `aud`. */
  AUTH_TOKEN_ISSUER: z.string().min(1).optional(),
  AUTH_TOKEN_AUDIENCE: z.string().min(1).optional(),
  /** Longest accepted owner-token lifetime. */
  AUTH_TOKEN_MAX_LIFETIME_SECONDS: seconds(DEFAULT_OWNER_TOKEN_MAX_LIFETIME_SECONDS, 30 * 24 * 3600),
  /** 1: confirmation approves inline and enrolls synchronously (manual provider). Refused in strict mode. */
  DEV_AUTO_ENROLL_PET: flag('0'),
  /** `manual` is for development only; strict mode refuses it. */
  SIGNATURE_PROVIDER: z.enum(['manual', 'dropbox_sign']).default('manual'),
  /** Dropbox Sign API key: authenticates dispatches and keys the callback event_hash. */
  SIGNATURE_API_KEY: z.string().min(1).default(DEV_SIGNATURE_API_KEY),
  DROPBOX_SIGN_BASE_URL: z.string().url().default(DEFAULT_DROPBOX_SIGN_BASE_URL),
  DROPBOX_SIGN_TEST_MODE: flag('1'),
  /** Callbacks whose event_time is older than this (or further ahead than the skew) answer 401. */
  CALLBACK_MAX_AGE_SECONDS: seconds(DEFAULT_CALLBACK_FRESHNESS.maxAgeSeconds, 7 * 24 * 3600),
  CALLBACK_MAX_FUTURE_SKEW_SECONDS: seconds(DEFAULT_CALLBACK_FRESHNESS.maxFutureSkewSeconds, 3600),
  DOCUMENT_STORE_DIR: z.string().min(1).default(path.join(os.tmpdir(), 'petcover-documents')),
  /** Key of the admin routes (`X-Admin-Key`); unset turns them off (503). */
  ADMIN_API_KEY: z.string().min(16, 'must be at least 16 characters').optional(),
  /** A second key that signs in to the console read-only. */
  ADMIN_READ_ONLY_KEY: z.string().min(16, 'must be at least 16 characters').optional(),
  /** 1: the console hides and refuses every action, whatever the key. */
  CONSOLE_READ_ONLY: flag('0'),
  /** Health ports `petcover-dev` gives the publisher and consumer it starts. */
  DEV_PUBLISHER_HEALTH_PORT: z.coerce.number().int().min(1).max(65535).default(9101),
  DEV_CONSUMER_HEALTH_PORT: z.coerce.number().int().min(1).max(65535).default(9102),
  /** Largest JSON body accepted (express/bytes syntax); larger → 413. */
  BODY_LIMIT: z.string().regex(/^\d+(b|kb|mb)?$/i, 'like 100kb').default('100kb'),
  /** Owner writes (add pet, choose plan, confirm) per owner per minute, shared by replicas through Redis; more → 429. */
  RATE_LIMIT_OWNER_WRITES_PER_MINUTE: z.coerce.number().int().min(1).max(100_000).default(DEFAULT_OWNER_WRITES_PER_MINUTE),
  /** A request (headers and body) must arrive within this; slow senders are cut off (408). */
  REQUEST_TIMEOUT_MS: z.coerce.number().int().min(100).max(600_000).default(DEFAULT_HTTP_TIMEOUTS.requestTimeoutMs),
  HEADERS_TIMEOUT_MS: z.coerce.number().int().min(100).max(600_000).default(DEFAULT_HTTP_TIMEOUTS.headersTimeoutMs),
});

export type ApiEnv = z.output<typeof envSchema> & {
  /** NODE_ENV=production or CI_STRICT=1: development conveniences (dev sign-in) are off. */
  strict: boolean;
};

function passwordOf(url: string): string {
  try {
    return decodeURIComponent(new URL(url).password);
  } catch {
    return '';
  }
}

/**
 * Strict mode refuses what would let anybody forge a signature or an owner:
 * the manual provider (its callbacks are keyed by a published key), inline
 * enrollment, and any secret whose value is published in this repository.
 * Returns every reason, so one line names them all.
 */
function unsafeInStrictMode(env: Env, parsed: ApiEnv): string[] {
  const reasons: string[] = [];
  if (parsed.SIGNATURE_PROVIDER === 'manual') {
    reasons.push(`SIGNATURE_PROVIDER is manual${env.SIGNATURE_PROVIDER ? '' : ' (the default)'}; set SIGNATURE_PROVIDER=dropbox_sign and SIGNATURE_API_KEY`);
  } else if (!env.SIGNATURE_API_KEY) {
    reasons.push('SIGNATURE_API_KEY must be set for SIGNATURE_PROVIDER=dropbox_sign');
  }
  if (parsed.DEV_AUTO_ENROLL_PET) reasons.push('DEV_AUTO_ENROLL_PET enrolls without any signature');
  if (!env.AUTH_SECRET) reasons.push('AUTH_SECRET must be set');
  const secrets: Array<[string, string | undefined]> = [
    ['AUTH_SECRET', env.AUTH_SECRET],
    ['SIGNATURE_API_KEY', env.SIGNATURE_API_KEY],
    ['ADMIN_API_KEY', parsed.ADMIN_API_KEY],
    ['ADMIN_READ_ONLY_KEY', parsed.ADMIN_READ_ONLY_KEY],
    ['the DATABASE_URL password', passwordOf(parsed.DATABASE_URL)],
    ['the REDIS_URL password', passwordOf(parsed.REDIS_URL)],
  ];
  const published = secrets.filter(([, value]) => value && (value === DEV_AUTH_SECRET || value === DEV_SIGNATURE_API_KEY || PUBLISHED_SECRET_MARKER.test(value)));
  if (published.length > 0) reasons.push(`${published.map(([name]) => name).join(', ')} ${published.length === 1 ? 'is a development value' : 'are development values'} published in the repository`);
  return reasons;
}

/** Parses `env` (default: the process environment). Throws ConfigError with a one-line reason. */
export function readApiEnv(env: Env = process.env): ApiEnv {
  const parsed = { ...parseEnv(envSchema, env), strict: isStrict(env) };
  if (parsed.strict) {
    const reasons = unsafeInStrictMode(env, parsed);
    if (reasons.length > 0) throw new ConfigError(`refusing to start in strict mode (NODE_ENV=production or CI_STRICT=1): ${reasons.join('; ')}`);
  }
  return parsed;
}

/** The owner-token settings of the api. */
export function ownerTokenConfigOf(env: ApiEnv): OwnerTokenConfig {
  return { secret: env.AUTH_SECRET, issuer: env.AUTH_TOKEN_ISSUER, audience: env.AUTH_TOKEN_AUDIENCE, maxLifetimeSeconds: env.AUTH_TOKEN_MAX_LIFETIME_SECONDS };
}

/** The environment handed to child processes by `petcover-dev` (a copy; children parse it themselves). */
export function inheritedEnvironment(): NodeJS.ProcessEnv {
  return { ...process.env };
}
