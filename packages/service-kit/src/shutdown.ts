/**
 * Ordered, complete cleanup: every step runs even when an earlier one fails,
 * and the whole is memoised so a second SIGTERM does not run it twice.
 */
import type { Logger } from 'pino';

export interface CleanupStep {
  name: string;
  run: () => Promise<unknown> | unknown;
}

export function createShutdown(logger: Logger, steps: CleanupStep[], timeoutMs = 10_000): () => Promise<boolean> {
  let running: Promise<boolean> | undefined;
  return () => {
    running ??= (async () => {
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
      return clean;
    })();
    return running;
  };
}
