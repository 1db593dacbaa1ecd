/**
 * Waiting in the publisher's loops: abortable sleeps, wake-ups, exponential
 * backoff with jitter, and "log once per state change" for transient failures.
 */
import type { Logger } from 'pino';

/** Sleeps `ms`; resolves early (to false) when `signal` aborts. Never rejects. */
export function sleep(ms: number, signal: AbortSignal): Promise<boolean> {
  if (signal.aborted) return Promise.resolve(false);
  return new Promise((resolve) => {
    const onAbort = () => {
      clearTimeout(timer);
      resolve(false);
    };
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve(true);
    }, ms);
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

/** First retry after ~100 ms, doubling up to 5 s, each with ±50 % jitter so replicas do not retry in step. */
export function backoffDelayMs(attempt: number, baseMs = 100, maxMs = 5_000): number {
  const ceiling = Math.min(maxMs, baseMs * 2 ** Math.min(attempt, 16));
  return Math.round(ceiling * (0.5 + Math.random()));
}

/**
 * A doorbell: `ring()` wakes the current or next `wait()`. Rings while nobody
 * waits are remembered, so a NOTIFY that arrives mid-batch is not lost.
 */
export class Wakeup {
  private rung = false;
  private waiter: (() => void) | undefined;

  ring(): void {
    this.rung = true;
    this.waiter?.();
  }

  /** Resolves on a ring, after `ms`, or when `signal` aborts. */
  async wait(ms: number, signal: AbortSignal): Promise<void> {
    if (this.rung || signal.aborted) {
      this.rung = false;
      return;
    }
    const controller = new AbortController();
    const onAbort = () => controller.abort();
    signal.addEventListener('abort', onAbort, { once: true });
    this.waiter = () => controller.abort();
    try {
      await sleep(ms, controller.signal);
    } finally {
      this.waiter = undefined;
      this.rung = false;
      signal.removeEventListener('abort', onAbort);
    }
  }
}

/**
 * Tracks one loop's health so a failure that repeats on every retry is logged
 * once (and again only when its message changes), and recovery once.
 */
export class FailureLog {
  private failingWith: string | undefined;
  attempt = 0;

  constructor(
    private readonly logger: Logger,
    private readonly context: Record<string, unknown>,
  ) {}

  get failing(): boolean {
    return this.failingWith !== undefined;
  }

  /** Records a failure; logs it when the loop was healthy or the reason changed. Returns the backoff to wait. */
  failed(error: unknown, what: string): number {
    const message = (error as Error)?.message ?? String(error);
    if (this.failingWith !== message) {
      this.logger.warn({ ...this.context, err: error, attempt: this.attempt + 1 }, `${what} failed; retrying with backoff until it recovers`);
      this.failingWith = message;
    }
    this.attempt += 1;
    return backoffDelayMs(this.attempt);
  }

  /** Records a success; logs the recovery when the loop was failing. */
  succeeded(what: string): void {
    if (this.failingWith !== undefined) {
      this.logger.info({ ...this.context, failedAttempts: this.attempt }, `${what} recovered`);
    }
    this.failingWith = undefined;
    this.attempt = 0;
  }
}
