/**
 * Structured logs (pino) that never carry secrets: known secret keys are
 * redacted, and any `scheme://user:password@` inside any string is masked.
 */
import pino, { type Logger, type LoggerOptions } from 'pino';
import { maskUrlPassword } from './connection-urls';

export type { Logger } from 'pino';

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

const REDACTED_KEYS = ['password', 'secret', 'authorization', 'apiKey', 'api_key', 'adminKey', 'token', 'cookie'];

function maskDeep(value: unknown, depth = 0): unknown {
  if (typeof value === 'string') return maskUrlPassword(value);
  if (depth > 6 || value === null || typeof value !== 'object') return value;
  if (value instanceof Error) {
    return { type: value.name, message: maskUrlPassword(value.message), stack: value.stack && maskUrlPassword(value.stack) };
  }
  if (Array.isArray(value)) return value.map((v) => maskDeep(v, depth + 1));
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(value)) out[k] = maskDeep(v, depth + 1);
  return out;
}

export interface LoggerConfig {
  name: string;
  level?: LogLevel;
  /** Where to write; default stdout. Tests pass a stream to read lines back. */
  destination?: pino.DestinationStream;
}

export function createLogger(config: LoggerConfig): Logger {
  const options: LoggerOptions = {
    name: config.name,
    level: config.level ?? 'info',
    redact: {
      paths: [...REDACTED_KEYS, ...REDACTED_KEYS.map((k) => `*.${k}`), 'req.headers.authorization', 'req.headers["x-admin-key"]'],
      censor: '[redacted]',
    },
    formatters: {
      log: (object) => maskDeep(object) as Record<string, unknown>,
    },
    hooks: {
      // Message strings are not passed through `formatters.log`; mask them here.
      logMethod(args, method) {
        method.apply(this, args.map((a) => (typeof a === 'string' ? maskUrlPassword(a) : a)) as Parameters<typeof method>);
      },
    },
    serializers: { err: (err: Error) => maskDeep(err), error: (err: unknown) => maskDeep(err) },
  };
  return config.destination ? pino(options, config.destination) : pino(options);
}
