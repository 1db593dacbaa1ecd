/**
 * Command line of events-publisher. Parsing only: no side effects, so it is
 * tested without starting anything.
 */
import { parseArgs } from 'node:util';
import { LOG_LEVELS, type LogLevel } from '@petcover/service-kit';
import { parseStreamPartitions, type StreamPartitions } from '@petcover/outbox';

export const USAGE = `Usage: events-publisher start [options]

Relays the transactional outbox (Postgres) to Redis Streams.

Options:
  --log-level <level>      ${LOG_LEVELS.join(' | ')} (default: LOG_LEVEL or info)
  --poll-interval <s>      seconds between polls when no NOTIFY arrives (default 5)
  --batch-size <n>         rows per drain batch, 1..10000 (default 1000)
  --batch-max-bytes <n>    payload+headers bytes per drain batch, at least one row (default 8388608)
  --lease-ttl <s>          publisher lease time to live in seconds (default 30)
  --partitions <list>      stream:a:b=4,stream:c:d=2 (adds to STREAM_PARTITIONS)
  -h, --help               show this help

Environment: DATABASE_URL, REDIS_URL, HEALTH_PORT (9101), REDIS_KEY_PREFIX,
STREAM_PARTITIONS, PUBLISHER_BATCH_MAX_BYTES, OUTBOX_RETENTION_DAYS, LOG_LEVEL.`;

/** A bad command line: the app prints the message and the usage, and exits 64. */
export class CliUsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CliUsageError';
  }
}

export type CliCommand =
  | { command: 'help' }
  | {
      command: 'start';
      logLevel?: LogLevel;
      pollIntervalMs?: number;
      batchSize?: number;
      batchMaxBytes?: number;
      leaseTtlMs?: number;
      partitions?: StreamPartitions;
    };

/** Parses argv (without node and script). Throws CliUsageError naming the bad flag. */
export function parseCli(argv: readonly string[]): CliCommand {
  let parsed;
  try {
    parsed = parseArgs({
      args: [...argv],
      allowPositionals: true,
      strict: true,
      options: {
        'log-level': { type: 'string' },
        'poll-interval': { type: 'string' },
        'batch-size': { type: 'string' },
        'batch-max-bytes': { type: 'string' },
        'lease-ttl': { type: 'string' },
        partitions: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    });
  } catch (error) {
    throw new CliUsageError((error as Error).message);
  }
  const { values, positionals } = parsed;
  if (values.help) return { command: 'help' };
  const [command, ...extra] = positionals;
  if (command !== 'start') throw new CliUsageError(command === undefined ? 'missing command: start' : `unknown command "${command}" (expected start)`);
  if (extra.length > 0) throw new CliUsageError(`unexpected argument "${extra[0]}"`);

  const result: CliCommand = { command: 'start' };
  const logLevel = values['log-level'];
  if (logLevel !== undefined) {
    if (!(LOG_LEVELS as readonly string[]).includes(logLevel)) throw new CliUsageError(`--log-level must be one of ${LOG_LEVELS.join(', ')} (got "${logLevel}")`);
    result.logLevel = logLevel as LogLevel;
  }
  if (values['poll-interval'] !== undefined) result.pollIntervalMs = seconds('--poll-interval', values['poll-interval'], 0.05, 3_600);
  if (values['lease-ttl'] !== undefined) result.leaseTtlMs = seconds('--lease-ttl', values['lease-ttl'], 0.3, 3_600);
  if (values['batch-size'] !== undefined) {
    const text = values['batch-size'];
    const n = Number(text);
    if (!/^\d+$/.test(text) || n < 1 || n > 10_000) throw new CliUsageError(`--batch-size must be an integer from 1 to 10000 (got "${text}")`);
    result.batchSize = n;
  }
  if (values['batch-max-bytes'] !== undefined) {
    const text = values['batch-max-bytes'];
    const n = Number(text);
    if (!/^\d+$/.test(text) || n < 1024 || n > 1024 ** 3) throw new CliUsageError(`--batch-max-bytes must be an integer from 1024 to 1073741824 (got "${text}")`);
    result.batchMaxBytes = n;
  }
  if (values.partitions !== undefined) {
    try {
      result.partitions = parseStreamPartitions(values.partitions);
    } catch (error) {
      throw new CliUsageError(`--partitions ${(error as Error).message}`);
    }
  }
  return result;
}

function seconds(flag: string, text: string, min: number, max: number): number {
  const value = Number(text);
  if (text.trim() === '' || !Number.isFinite(value) || value < min || value > max) {
    throw new CliUsageError(`${flag} must be a number of seconds from ${min} to ${max} (got "${text}")`);
  }
  return Math.round(value * 1000);
}
