/**
 * Config is parsed once, at the edge, with zod. In strict mode
 * (NODE_ENV=production or CI_STRICT=1) required URLs must be set explicitly;
 * otherwise local-development defaults apply.
 */
import { z } from 'zod';
import { DEFAULT_DATABASE_URL, DEFAULT_REDIS_URL } from './connection-urls';
import { LOG_FORMATS, LOG_LEVELS } from './logger';

/** Exit code for a configuration error (EX_CONFIG of sysexits.h). */
export const EXIT_CONFIG = 78;

export class ConfigError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ConfigError';
  }
}

export type Env = Readonly<Record<string, string | undefined>>;

export function isStrict(env: Env): boolean {
  return env.NODE_ENV === 'production' || env.CI_STRICT === '1' || env.CI_STRICT === 'true';
}

const DATABASE_URL_SCHEMES = ['postgres:', 'postgresql:'] as const;
const REDIS_URL_SCHEMES = ['redis:', 'rediss:'] as const;

/**
 * A URL whose scheme is one of `schemes`. Checked in every mode: a
 * `sqlite:///x.db` would otherwise be retried forever as if Postgres were down.
 */
function urlWithScheme(schemes: readonly string[]) {
  return z
    .string()
    .url()
    .refine((value) => schemes.includes(new URL(value).protocol), {
      message: `must start with ${schemes.map((s) => `${s}//`).join(' or ')}`,
    });
}

/** The settings every app reads: database, Redis, logging, health port. */
export function baseEnvSchema(defaults: { healthPort: number }) {
  return z.object({
    DATABASE_URL: urlWithScheme(DATABASE_URL_SCHEMES).default(DEFAULT_DATABASE_URL),
    REDIS_URL: urlWithScheme(REDIS_URL_SCHEMES).default(DEFAULT_REDIS_URL),
    LOG_LEVEL: z.enum(LOG_LEVELS).default('info'),
    /** Default: pretty on a terminal, JSON otherwise. */
    LOG_FORMAT: z.enum(LOG_FORMATS).optional(),
    HEALTH_PORT: z.coerce.number().int().min(0).max(65535).default(defaults.healthPort),
    NODE_ENV: z.string().optional(),
  });
}

/**
 * Parses `env` with `schema`. Throws ConfigError with a one-line reason when a
 * value is invalid, or (strict mode) when one of `requiredInStrict` is unset.
 */
export function parseEnv<S extends z.ZodType>(schema: S, env: Env, requiredInStrict: readonly string[] = ['DATABASE_URL', 'REDIS_URL']): z.output<S> {
  if (isStrict(env)) {
    const missing = requiredInStrict.filter((name) => !env[name]);
    if (missing.length > 0) {
      throw new ConfigError(`${missing.join(' and ')} must be set when NODE_ENV=production or CI_STRICT=1`);
    }
  }
  // Empty strings mean "unset" so `FOO= cmd` falls back to the default.
  const cleaned = Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined && v !== ''));
  const parsed = schema.safeParse(cleaned);
  if (!parsed.success) {
    const reasons = parsed.error.issues.map((i) => `${i.path.join('.') || 'env'}: ${i.message}`);
    throw new ConfigError(`invalid configuration: ${reasons.join('; ')}`);
  }
  return parsed.data;
}
