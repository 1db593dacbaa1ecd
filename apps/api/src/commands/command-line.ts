/**
 * Flag parsing of the api's commands: `--name value` or `--name=value`,
 * booleans as bare `--name`. Unknown flags are errors, so a typo never
 * silently runs with a default.
 */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

/** Exit code for bad usage or an unknown pet (EX_USAGE of sysexits.h). */
export const EXIT_USAGE = 64;

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/**
 * `spec.usage`: with `--help` or `-h` anywhere, printed to stdout and the
 * command exits 0 at once (before any configuration is read).
 */
export function parseFlags(argv: readonly string[], spec: { values: readonly string[]; booleans?: readonly string[]; usage: string }): Map<string, string | true> {
  if (argv.includes('--help') || argv.includes('-h')) {
    process.stdout.write(`${spec.usage}\n`);
    process.exit(0);
  }
  const flags = new Map<string, string | true>();
  for (let i = 0; i < argv.length; i += 1) {
    const arg = argv[i] as string;
    if (arg === '--') continue;
    const match = /^--([a-z][a-z0-9-]*)(?:=(.*))?$/.exec(arg);
    if (!match) throw new UsageError(`unexpected argument ${JSON.stringify(arg)}`);
    const [, name, inline] = match as unknown as [string, string, string | undefined];
    if (spec.booleans?.includes(name)) {
      flags.set(name, true);
    } else if (spec.values.includes(name)) {
      const value = inline ?? argv[i + 1];
      if (value === undefined || (inline === undefined && value.startsWith('--'))) throw new UsageError(`--${name} needs a value`);
      if (inline === undefined) i += 1;
      flags.set(name, value);
    } else {
      throw new UsageError(`unknown flag --${name}`);
    }
  }
  return flags;
}

export function requireUuid(flags: Map<string, string | true>, name: string): string {
  const value = flags.get(name);
  if (typeof value !== 'string') throw new UsageError(`--${name} <uuid> is required`);
  if (!UUID.test(value)) throw new UsageError(`--${name} must be a UUID (got ${JSON.stringify(value)})`);
  return value.toLowerCase();
}

export function secondsFlag(flags: Map<string, string | true>, name: string, fallback: number): number {
  const value = flags.get(name);
  if (value === undefined) return fallback;
  if (typeof value !== 'string' || !/^\d+(\.\d+)?$/.test(value)) throw new UsageError(`--${name} must be a number of seconds (got ${JSON.stringify(value)})`);
  return Number(value);
}
