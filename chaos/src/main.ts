#!/usr/bin/env node
/**
 * `pnpm chaos [--duration <s>] [--seed <n>] [--redis single|cluster] [--faults <kind,...>]`: exit 0 only when nothing was
 * lost, doubled or reordered and exactly the poison events were dead-lettered.
 * Exit 1 on a failed verdict or a run that could not complete, 64 on bad usage.
 */
import { CHAOS_USAGE, ChaosUsageError, parseChaosArgs, type ChaosArgs } from './options';
import { DEFAULT_CHAOS_OPTIONS, runChaos } from './run';
import { formatChaosSummary } from './summary';

function isPostgresNullSocketWrite(error: Error): boolean {
  return error instanceof TypeError && /reading 'write'/.test(error.message) && /postgres[\\/].*connection\.js/.test(error.stack ?? '');
}

async function main(): Promise<number> {
  let args: ChaosArgs;
  try {
    args = parseChaosArgs(process.argv.slice(2));
  } catch (error) {
    if (!(error instanceof ChaosUsageError)) throw error;
    console.error(`chaos: ${error.message}\n${CHAOS_USAGE}`);
    return 64;
  }
  const controller = new AbortController();
  const onSignal = (signal: NodeJS.Signals) => {
    console.error(`chaos: ${signal} received; stopping and cleaning up`);
    controller.abort();
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  process.on('uncaughtException', (error) => {
    if (isPostgresNullSocketWrite(error)) {
      // postgres.js 3.4.x throws this from a setImmediate when Postgres closes a
      // connection with a write pending (porsager/postgres#1066, #1208): the
      // query itself was already rejected with CONNECTION_CLOSED and retried.
      return;
    }
    console.error(`chaos: unexpected error, stopping and cleaning up: ${error.stack ?? error.message}`);
    process.exitCode = 1;
    controller.abort();
  });

  const log = (line: string) => console.log(`[${new Date().toISOString().slice(11, 23)}] ${line}`);
  log(
    `chaos: seed ${args.seed} (repeat with --seed ${args.seed}), duration ${args.durationSec} s, ${args.rate} events/s, Redis ${args.redis}` +
      (args.faultKinds ? `, faults ${args.faultKinds.join(',')} only` : ''),
  );
  const summary = await runChaos({
    ...DEFAULT_CHAOS_OPTIONS,
    durationSec: args.durationSec,
    seed: args.seed,
    rate: args.rate,
    failFraction: args.failFraction,
    drainTimeoutSec: args.drainTimeoutSec,
    keepLogsDir: args.keepLogsDir,
    redis: args.redis,
    faultKinds: args.faultKinds,
    log,
    signal: controller.signal,
  });
  console.log(formatChaosSummary(summary, DEFAULT_CHAOS_OPTIONS.replicas));
  return summary.passed ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (error: Error) => {
    console.error(`chaos: run could not complete: ${error.stack ?? error.message}`);
    process.exit(1);
  },
);
