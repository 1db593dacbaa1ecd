/**
 * Runs the `events` CLI in this process, as the operator would from a shell,
 * with its output collected for assertions. Shared by the outbox's CLI,
 * status, liveness, verify and parked-key tests.
 */
import { runEventsCli } from '../src/cli/events';
import { testRedisUrl } from '../src/testing';

export interface EventsCliRun {
  code: number;
  /** Every line it printed on stdout, each ending in a newline. */
  stdout: string;
  stderr: string;
}

/** The environment `events` reads: the test's database, Redis (default: the test Redis) and key prefix. */
export function eventsCliEnv(databaseUrl: string, keyPrefix = '', redisUrl = testRedisUrl()): Record<string, string> {
  return { DATABASE_URL: databaseUrl, REDIS_URL: redisUrl, REDIS_KEY_PREFIX: keyPrefix };
}

/** `events <argv>` with `env` only (no process.env); resolves with the exit code and what it printed. */
export async function runEventsCliCaptured(argv: string[], env: Record<string, string>): Promise<EventsCliRun> {
  let stdout = '';
  let stderr = '';
  const code = await runEventsCli(argv, {
    env,
    stdout: (t) => (stdout += `${t}\n`),
    stderr: (t) => (stderr += `${t}\n`),
  });
  return { code, stdout, stderr };
}
