/**
 * `events verify [--since <time>] [--until <time>] [--group <g>] [--json]`:
 * reconciles the outbox with what consumer groups handled (verifyPipeline)
 * and exits 0 only when nothing is missing, doubled or out of order.
 *
 * Env: DATABASE_URL; REDIS_URL (optional: also discovers groups from the
 * Redis streams); REDIS_KEY_PREFIX.
 */
import Redis from 'ioredis';
import { connectDatabase, DEFAULT_DATABASE_URL } from '../db';
import { formatVerifyReport } from '../verify/format';
import { verifyPipeline, type VerifyReport } from '../verify/verify';

export const VERIFY_USAGE = 'usage: events verify [--since <ISO time | 15m | 2h | 1d>] [--until <time>] [--group <group>] [--json]';

/** Exit codes: 0 reconciled, 1 defects found, 64 bad usage (EX_USAGE), 69 a service is unreachable. */
export const VERIFY_EXIT = { ok: 0, defects: 1, usage: 64, unavailable: 69 } as const;

export class VerifyUsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'VerifyUsageError';
  }
}

export interface VerifyArgs {
  since?: Date;
  until?: Date;
  group?: string;
  json: boolean;
}

const RELATIVE_TIME = /^(\d+)(s|m|h|d)$/;
const UNIT_MS = { s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;

/** `2026-11-22T10:00:00Z`, or a duration ago (`90s`, `15m`, `2h`, `7d`) relative to `now`. */
export function parseTimeArg(flag: string, value: string | undefined, now = new Date()): Date {
  if (value === undefined || value.startsWith('--')) throw new VerifyUsageError(`${flag} needs a value`);
  const relative = RELATIVE_TIME.exec(value);
  if (relative) return new Date(now.getTime() - Number(relative[1]) * UNIT_MS[relative[2] as keyof typeof UNIT_MS]);
  const parsed = new Date(value);
  if (Number.isNaN(parsed.getTime())) {
    throw new VerifyUsageError(`${flag} must be an ISO time or a duration like 15m (got ${JSON.stringify(value)})`);
  }
  return parsed;
}

/** Parses the arguments after `verify`; throws VerifyUsageError naming the bad one. */
export function parseVerifyArgs(argv: readonly string[], now = new Date()): VerifyArgs {
  const args: VerifyArgs = { json: false };
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i] as string;
    switch (flag) {
      case '--since':
        args.since = parseTimeArg(flag, argv[++i], now);
        break;
      case '--until':
        args.until = parseTimeArg(flag, argv[++i], now);
        break;
      case '--group': {
        const value = argv[++i];
        if (!value || value.startsWith('--')) throw new VerifyUsageError('--group needs a value');
        args.group = value;
        break;
      }
      case '--json':
        args.json = true;
        break;
      default:
        throw new VerifyUsageError(`unknown argument ${JSON.stringify(flag)}`);
    }
  }
  if (args.since && args.until && args.since > args.until) throw new VerifyUsageError('--since is after --until');
  return args;
}

export interface VerifyCommandIo {
  env: NodeJS.ProcessEnv;
  out: (line: string) => void;
  err: (line: string) => void;
}

/** Runs `events verify`; returns the exit code (never calls process.exit). */
export async function runVerifyCommand(
  argv: readonly string[],
  io: VerifyCommandIo = { env: process.env, out: (l) => console.log(l), err: (l) => console.error(l) },
): Promise<number> {
  let args: VerifyArgs;
  try {
    args = parseVerifyArgs(argv);
  } catch (error) {
    if (!(error instanceof VerifyUsageError)) throw error;
    io.err(`events verify: ${error.message}`);
    io.err(VERIFY_USAGE);
    return VERIFY_EXIT.usage;
  }
  const database = connectDatabase(io.env.DATABASE_URL || DEFAULT_DATABASE_URL, { max: 2, applicationName: 'events-verify' });
  const redis = io.env.REDIS_URL
    ? new Redis(io.env.REDIS_URL, { lazyConnect: true, maxRetriesPerRequest: 1, retryStrategy: () => null })
    : null;
  try {
    let redisForDiscovery: Redis | null = null;
    if (redis) {
      try {
        await redis.connect();
        redisForDiscovery = redis;
      } catch (error) {
        io.err(`events verify: Redis unreachable (${(error as Error).message}); discovering groups from Postgres only`);
      }
    }
    let report: VerifyReport;
    try {
      report = await verifyPipeline(database.sql, redisForDiscovery, {
        since: args.since,
        until: args.until,
        group: args.group,
        keyPrefix: io.env.REDIS_KEY_PREFIX ?? '',
      });
    } catch (error) {
      io.err(`events verify: cannot read the events schema: ${(error as Error).message}`);
      return VERIFY_EXIT.unavailable;
    }
    io.out(args.json ? JSON.stringify(report, null, 2) : formatVerifyReport(report));
    return report.ok ? VERIFY_EXIT.ok : VERIFY_EXIT.defects;
  } finally {
    redis?.disconnect();
    await database.close();
  }
}
