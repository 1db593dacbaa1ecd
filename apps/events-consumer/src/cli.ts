/**
 * Command line of events-consumer: `events-consumer start [flags]`.
 * Flags override the environment; parsing never touches process state.
 */
import { parseArgs } from 'node:util';
import { LOG_LEVELS, type LogLevel } from '@petcover/service-kit';
import { CONSUMER_DEFAULTS, EXHAUSTED_POLICIES, parseStreamPartitions, type ExhaustedPolicy } from '@petcover/outbox';

/** Exit code for a command-line usage error (EX_USAGE of sysexits.h). */
export const EXIT_USAGE = 64;

export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

export const USAGE = `Usage: events-consumer start [options]

Reads Redis Streams with a consumer group and runs the handler registry.

Options:
  --group <name>          consumer group (env CONSUMER_GROUP, default ${'events-consumer'})
  --concurrency <n>       partitions handled at the same time (default ${CONSUMER_DEFAULTS.concurrency})
  --module <path>         handler module ({ streams, register }); default: @petcover/domain's domainConsumerModule
  --partitions <list>     partition counts, e.g. stream:a:b=4,stream:c:d=2 (env STREAM_PARTITIONS)
  --batch-size <n>        entries per read and per transaction (default ${CONSUMER_DEFAULTS.batchSize})
  --lease-ttl <seconds>   partition lease time to live (default ${CONSUMER_DEFAULTS.leaseTtlMs / 1000})
  --max-attempts <n>      attempts before an event is dead-lettered or its key halted (default ${CONSUMER_DEFAULTS.maxAttempts});
                          a failing event is parked with its key meanwhile: only that key waits, the partition goes on
  --retry-delay <ms>      first retry delay, doubling each attempt up to 60 s (default ${CONSUMER_DEFAULTS.retryBaseDelayMs})
  --on-exhausted <policy> ${EXHAUSTED_POLICIES.join('|')}: when an event runs out of attempts (default ${CONSUMER_DEFAULTS.onExhausted});
                          halt keeps its key's later events parked until events key release|discard
  --block <ms>            XREADGROUP BLOCK bound (default ${CONSUMER_DEFAULTS.blockMs})
  --handler-timeout <s>   deadline of one handler call, in seconds (env HANDLER_TIMEOUT_S, default ${CONSUMER_DEFAULTS.handlerTimeoutMs / 1000})
  --read-max-bytes <n>    bytes per read, at least one entry (env READ_MAX_BYTES, default ${CONSUMER_DEFAULTS.readMaxBytes})
  --log-level <level>     ${LOG_LEVELS.join('|')} (env LOG_LEVEL, default info)
  -h, --help              show this help

Environment: DATABASE_URL, REDIS_URL, CONSUMER_GROUP, HEALTH_PORT (9102), REDIS_KEY_PREFIX, STREAM_PARTITIONS, LOG_LEVEL,
HANDLER_TIMEOUT_S, READ_MAX_BYTES, INBOX_RETENTION_DAYS (default 8: longer than the outbox's 7).
Memory: concurrency × read-max-bytes × ~4 + ~80 MB must fit the pod's limit (README, "Memory").
SIGTERM/SIGINT: finish the batch in hand, acknowledge it, release leases, exit 0.`;

export interface StartOptions {
  group?: string;
  concurrency?: number;
  module?: string;
  partitions?: Record<string, number>;
  batchSize?: number;
  leaseTtlMs?: number;
  maxAttempts?: number;
  retryBaseDelayMs?: number;
  onExhausted?: ExhaustedPolicy;
  blockMs?: number;
  handlerTimeoutMs?: number;
  readMaxBytes?: number;
  logLevel?: LogLevel;
}

export type Command = { command: 'help' } | { command: 'start'; options: StartOptions };

function positiveInteger(flag: string, value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  if (!/^[1-9][0-9]*$/.test(value)) throw new UsageError(`--${flag} must be a positive integer (got ${JSON.stringify(value)})`);
  return Number(value);
}

/** Parses `argv` (without node and script). Throws UsageError with a one-line reason. */
export function parseCli(argv: readonly string[]): Command {
  let parsed;
  try {
    parsed = parseArgs({
      args: [...argv],
      allowPositionals: true,
      strict: true,
      options: {
        group: { type: 'string' },
        concurrency: { type: 'string' },
        module: { type: 'string' },
        partitions: { type: 'string' },
        'batch-size': { type: 'string' },
        'lease-ttl': { type: 'string' },
        'max-attempts': { type: 'string' },
        'retry-delay': { type: 'string' },
        'on-exhausted': { type: 'string' },
        block: { type: 'string' },
        'handler-timeout': { type: 'string' },
        'read-max-bytes': { type: 'string' },
        'log-level': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    });
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  const { values, positionals } = parsed;
  if (values.help) return { command: 'help' };
  if (positionals.length === 0) throw new UsageError('missing command: events-consumer start [options]');
  if (positionals[0] !== 'start' || positionals.length > 1) throw new UsageError(`unknown command ${JSON.stringify(positionals.join(' '))}; the only command is start`);

  const logLevel = values['log-level'];
  if (logLevel !== undefined && !(LOG_LEVELS as readonly string[]).includes(logLevel)) {
    throw new UsageError(`--log-level must be one of ${LOG_LEVELS.join(', ')} (got ${JSON.stringify(logLevel)})`);
  }
  if (values.group !== undefined && !/^[A-Za-z0-9_.-]+$/.test(values.group)) {
    throw new UsageError(`--group may hold only letters, digits and _.- (got ${JSON.stringify(values.group)})`);
  }
  if (values.module !== undefined && values.module.trim() === '') throw new UsageError('--module needs a path');
  let partitions: Record<string, number> | undefined;
  if (values.partitions !== undefined) {
    try {
      partitions = parseStreamPartitions(values.partitions);
    } catch (error) {
      throw new UsageError(`--partitions: ${(error as Error).message}`);
    }
  }
  const leaseTtlSeconds = positiveInteger('lease-ttl', values['lease-ttl']);
  let handlerTimeoutMs: number | undefined;
  if (values['handler-timeout'] !== undefined) {
    const seconds = Number(values['handler-timeout']);
    if (values['handler-timeout'].trim() === '' || !Number.isFinite(seconds) || seconds < 0.01 || seconds > 3_600) {
      throw new UsageError(`--handler-timeout must be a number of seconds from 0.01 to 3600 (got ${JSON.stringify(values['handler-timeout'])})`);
    }
    handlerTimeoutMs = Math.round(seconds * 1000);
  }
  const onExhausted = values['on-exhausted'];
  if (onExhausted !== undefined && !(EXHAUSTED_POLICIES as readonly string[]).includes(onExhausted)) {
    throw new UsageError(`--on-exhausted must be one of ${EXHAUSTED_POLICIES.join(', ')} (got ${JSON.stringify(onExhausted)})`);
  }
  const readMaxBytes = positiveInteger('read-max-bytes', values['read-max-bytes']);
  if (readMaxBytes !== undefined && readMaxBytes < 1024) throw new UsageError(`--read-max-bytes must be at least 1024 (got ${readMaxBytes})`);
  return {
    command: 'start',
    options: {
      group: values.group,
      concurrency: positiveInteger('concurrency', values.concurrency),
      module: values.module,
      partitions,
      batchSize: positiveInteger('batch-size', values['batch-size']),
      leaseTtlMs: leaseTtlSeconds === undefined ? undefined : leaseTtlSeconds * 1000,
      maxAttempts: positiveInteger('max-attempts', values['max-attempts']),
      retryBaseDelayMs: positiveInteger('retry-delay', values['retry-delay']),
      onExhausted: onExhausted as ExhaustedPolicy | undefined,
      blockMs: positiveInteger('block', values.block),
      handlerTimeoutMs,
      readMaxBytes,
      logLevel: logLevel as LogLevel | undefined,
    },
  };
}
