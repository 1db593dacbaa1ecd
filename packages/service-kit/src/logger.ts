/**
 * Structured logs (pino) that never carry secrets: known secret keys are
 * redacted, and any `scheme://user:password@` inside any string is masked.
 * JSON lines, except on a terminal, where pino-pretty makes them readable
 * (LOG_FORMAT=json keeps JSON there too).
 */
import { context, trace } from '@opentelemetry/api';
import pino, { type Logger, type LoggerOptions } from 'pino';
import pinoPretty from 'pino-pretty';
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

export const LOG_FORMATS = ['json', 'pretty'] as const;
export type LogFormat = (typeof LOG_FORMATS)[number];

export interface LoggerConfig {
  name: string;
  level?: LogLevel;
  /** Where to write; default stdout. Tests pass a stream to read lines back. */
  destination?: pino.DestinationStream;
  /** Default: `pretty` when writing to stdout and stdout is a terminal, else `json`. */
  format?: LogFormat;
}

/**
 * The fields of `object` a child logger already binds with the same value
 * are dropped: pino would write the key twice (`{"group":"g",...,"group":"g"}`),
 * which is invalid for many JSON tools. A field whose value differs is kept.
 */
function withoutBoundFields(logger: Logger, object: Record<string, unknown>): Record<string, unknown> {
  const bound = logger.bindings();
  let result: Record<string, unknown> | undefined;
  for (const key of Object.keys(object)) {
    if (key in bound && bound[key] === object[key]) {
      result ??= { ...object };
      delete result[key];
    }
  }
  return result ?? object;
}

/**
 * `trace_id` / `span_id` of the span active where the line is written (an
 * HTTP request, a handler call, a publish), so logs and traces join. Without
 * a tracing SDK there is never an active span and nothing is added. A new
 * object each time: pino merges the line's fields into it.
 */
function traceFields(): Record<string, string> {
  const spanContext = trace.getSpan(context.active())?.spanContext();
  if (!spanContext || !trace.isSpanContextValid(spanContext)) return {};
  return { trace_id: spanContext.traceId, span_id: spanContext.spanId };
}

export function createLogger(config: LoggerConfig): Logger {
  const options: LoggerOptions = {
    name: config.name,
    level: config.level ?? 'info',
    mixin: traceFields,
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
        const masked = args.map((a) => (typeof a === 'string' ? maskUrlPassword(a) : a));
        const [first] = masked;
        if (first !== null && typeof first === 'object' && !(first instanceof Error)) {
          masked[0] = withoutBoundFields(this, first as Record<string, unknown>);
        }
        method.apply(this, masked as Parameters<typeof method>);
      },
    },
    serializers: { err: (err: Error) => maskDeep(err), error: (err: unknown) => maskDeep(err) },
  };
  if (config.destination) return pino(options, config.destination);
  const format = config.format ?? (process.stdout.isTTY ? 'pretty' : 'json');
  // Synchronous pretty stream (no worker thread): a log line is on the terminal before the process exits.
  return format === 'pretty' ? pino(options, pinoPretty({ sync: true, translateTime: 'SYS:HH:MM:ss', ignore: 'pid,hostname' })) : pino(options);
}
