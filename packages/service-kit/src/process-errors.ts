/**
 * The last resort of each app's main.ts: errors nothing else caught.
 *
 * Every promise the apps start is awaited or has a handler; these hooks are
 * there for the one that slips through. An unhandled rejection is a bug to
 * fix, but a lost event loop is worse: since Node 15 it ends the process, and
 * with it a publisher's drain of every other stream (issue 12: a Postgres
 * restart mid-drain did that). So it is logged at `error`, with the promise's
 * reason, and the process goes on; its loops recover as from any other
 * failure. An uncaught exception leaves the process in an unknown state
 * (Node's own advice): it is logged at `fatal` and the process exits 1, so
 * its supervisor restarts it and its leases expire to another replica.
 */
import type { Logger } from 'pino';

/** A rejection repeating with the same message is logged once per this window, with how often it recurred. */
const REPEAT_WINDOW_MS = 60_000;

export interface LastResortOptions {
  /** Called after an uncaught exception is logged; default `process.exit`. Tests pass their own. */
  exit?: (code: number) => void;
}

/**
 * Installs `unhandledRejection` and `uncaughtException` handlers that log via
 * `logger`. Returns a function that removes them (tests). Call once, early in
 * main(), right after the logger exists.
 */
export function installLastResortHandlers(logger: Logger, options: LastResortOptions = {}): () => void {
  const exit = options.exit ?? ((code: number) => process.exit(code));
  const lastLogged = new Map<string, { at: number; suppressed: number }>();

  const onRejection = (reason: unknown) => {
    const message = reason instanceof Error ? reason.message : String(reason);
    const now = Date.now();
    const seen = lastLogged.get(message);
    if (seen && now - seen.at < REPEAT_WINDOW_MS) {
      seen.suppressed += 1;
      return;
    }
    if (lastLogged.size > 100) lastLogged.clear(); // bounded: messages may carry ids
    lastLogged.set(message, { at: now, suppressed: 0 });
    logger.error(
      { err: reason, repeatedSinceLastLog: seen?.suppressed ?? 0 },
      'unhandled promise rejection (a bug: every promise must be awaited or handled); the process goes on',
    );
  };
  const onException = (error: Error, origin: string) => {
    logger.fatal({ err: error, origin }, 'uncaught exception; exiting so the process restarts in a known state');
    exit(1);
  };

  process.on('unhandledRejection', onRejection);
  process.on('uncaughtException', onException);
  return () => {
    process.off('unhandledRejection', onRejection);
    process.off('uncaughtException', onException);
  };
}
