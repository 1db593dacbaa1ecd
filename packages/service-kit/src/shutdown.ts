/**
 * Ordered, complete cleanup: every step runs even when an earlier one fails,
 * and the whole is memoised so a second SIGTERM does not run it twice. Logs
 * one "stopping" line (with the reason, e.g. the signal) and one "stopped".
 */
import type { Logger } from 'pino';

export interface CleanupStep {
  name: string;
  run: () => Promise<unknown> | unknown;
}

export interface ShutdownReason {
  /** What started the stop, e.g. `SIGTERM`. */
  signal?: string;
  /** What the component does while stopping, appended to the "stopping" line. */
  note?: string;
}

export function createShutdown(logger: Logger, steps: CleanupStep[], timeoutMs = 10_000): (reason?: ShutdownReason) => Promise<boolean> {
  let running: Promise<boolean> | undefined;
  return (reason = {}) => {
    running ??= (async () => {
      logger.info(reason.signal ? { signal: reason.signal } : {}, reason.note ? `stopping: ${reason.note}` : 'stopping');
      let clean = true;
      const deadline = setTimeout(() => {
        logger.error({ timeoutMs }, 'shutdown did not finish in time; exiting anyway');
        process.exit(1);
      }, timeoutMs);
      deadline.unref();
      for (const step of steps) {
        try {
          await step.run();
        } catch (error) {
          clean = false;
          logger.error({ err: error, step: step.name }, 'shutdown step failed; continuing with the next');
        }
      }
      clearTimeout(deadline);
      logger.info({ clean }, 'stopped');
      return clean;
    })();
    return running;
  };
}
