/** Command line of `pnpm chaos`: `[--duration <s>] [--seed <n>] [--rate <events/s>] [--fail-fraction <0..1>] [--redis single|cluster] [--faults <kind,...>]`. */
import { randomInt } from 'node:crypto';
import { FAULT_KINDS, PROOF_FAULT_KINDS, type FaultKind } from './fault-plan';
import { DEFAULT_CHAOS_OPTIONS } from './run';

export const CHAOS_USAGE =
  'usage: pnpm chaos [--duration <seconds>] [--seed <integer>] [--rate <events/s>] [--fail-fraction <0..1>] [--drain-timeout <seconds>] [--keep-logs <dir>] [--redis single|cluster] [--faults <kind,...>]';

export class ChaosUsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ChaosUsageError';
  }
}

export interface ChaosArgs {
  durationSec: number;
  seed: number;
  rate: number;
  failFraction: number;
  drainTimeoutSec: number;
  keepLogsDir?: string;
  /** `cluster`: a local 3-master Redis Cluster, with master kills instead of Redis restarts. */
  redis: 'single' | 'cluster';
  /** Only these fault kinds (`planted-loss` makes the run FAIL on purpose); default every kind. */
  faultKinds?: FaultKind[];
}

function numberArg(flag: string, value: string | undefined, check: (n: number) => boolean, expected: string): number {
  if (value === undefined || value.startsWith('--')) throw new ChaosUsageError(`${flag} needs a value`);
  const n = Number(value);
  if (!Number.isFinite(n) || !check(n)) throw new ChaosUsageError(`${flag} must be ${expected} (got ${JSON.stringify(value)})`);
  return n;
}

/** Parses argv (after the script name); a missing --seed is drawn at random and printed so the run can be repeated. */
export function parseChaosArgs(argv: readonly string[]): ChaosArgs {
  const args: ChaosArgs = {
    durationSec: DEFAULT_CHAOS_OPTIONS.durationSec,
    seed: randomInt(1, 2 ** 31 - 1),
    rate: DEFAULT_CHAOS_OPTIONS.rate,
    failFraction: DEFAULT_CHAOS_OPTIONS.failFraction,
    drainTimeoutSec: DEFAULT_CHAOS_OPTIONS.drainTimeoutSec,
    redis: 'single',
  };
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i] as string;
    const value = argv[i + 1];
    switch (flag) {
      case '--':
        continue; // pnpm may pass the separator through
      case '--duration':
        args.durationSec = numberArg(flag, value, (n) => n >= 20 && n <= 86_400, 'a number of seconds between 20 and 86400');
        break;
      case '--seed':
        args.seed = numberArg(flag, value, (n) => Number.isInteger(n) && n >= 0 && n < 2 ** 32, 'an integer between 0 and 2^32-1');
        break;
      case '--rate':
        args.rate = numberArg(flag, value, (n) => n > 0 && n <= 10_000, 'events per second between 1 and 10000');
        break;
      case '--fail-fraction':
        args.failFraction = numberArg(flag, value, (n) => n >= 0 && n <= 0.5, 'a fraction between 0 and 0.5');
        break;
      case '--drain-timeout':
        args.drainTimeoutSec = numberArg(flag, value, (n) => n >= 5, 'at least 5 seconds');
        break;
      case '--redis':
        if (value !== 'single' && value !== 'cluster') throw new ChaosUsageError(`--redis must be single or cluster (got ${JSON.stringify(value ?? '')})`);
        args.redis = value;
        break;
      case '--faults': {
        if (value === undefined || value.startsWith('--')) throw new ChaosUsageError(`${flag} needs a comma-separated list of fault kinds`);
        const known: readonly string[] = [...FAULT_KINDS, ...PROOF_FAULT_KINDS];
        const kinds = value.split(',').map((k) => k.trim());
        const unknown = kinds.filter((k) => !known.includes(k));
        if (unknown.length > 0 || kinds.length === 0) throw new ChaosUsageError(`--faults: unknown kind(s) ${unknown.join(', ') || '(none given)'}; known: ${known.join(', ')}`);
        args.faultKinds = kinds as FaultKind[];
        break;
      }
      case '--keep-logs':
        if (value === undefined || value.startsWith('--')) throw new ChaosUsageError(`${flag} needs a directory`);
        args.keepLogsDir = value;
        break;
      default:
        throw new ChaosUsageError(`unknown argument ${JSON.stringify(flag)}`);
    }
    i++;
  }
  return args;
}
