/**
 * Waiting in the pipeline's loops, publisher and consumer alike: abortable
 * sleeps, a doorbell that wakes a sleeping loop, exponential backoff with
 * jitter, and "log once per state change" for failures that repeat.
 */
import { setTimeout as sleepTimer } from 'node:timers/promises';
import type { Logger } from 'pino';

/** Sleeps `ms`; resolves early, to false, when `signal` aborts (true when the time passed). Never rejects. */
export async function sleep(ms: number, signal: AbortSignal): Promise<boolean> {
  if (signal.aborted) return false;
  try {
    await sleepTimer(ms, undefined, { signal });
    return true;
  } catch {
    return false;
  }
}

/**
 * A call that did not answer within its deadline. The call itself may still
 * complete later (a command already sent is executed by the server): the
 * caller treats its outcome as unknown, like a lost connection.
 */
export class NoAnswerError extends Error {
  constructor(
    readonly what: string,
    readonly waitedMs: number,
  ) {
    super(`${what}: no answer within ${waitedMs} ms`);
    this.name = 'NoAnswerError';
  }
}

/**
 * `call`, or NoAnswerError after `ms`. For a client that can wait forever on
 * its own: an ioredis connection to a frozen server (SIGSTOP, a VM paused, a
 * network partition that drops packets) never fails, and a cluster client
 * queues commands while it reconnects with no bound at all.
 */
export function answeredWithin<T>(call: Promise<T>, ms: number, what: string): Promise<T> {
  return settleBy(call, ms, () => new NoAnswerError(what, ms));
}

/**
 * `call`, or a rejection with `expired()` after `ms` (called once, at the
 * deadline: it may also abort what the call listens to). The call may still
 * settle later, or never; nobody awaits it then (never an unhandled rejection).
 */
export function settleBy<T>(call: Promise<T>, ms: number, expired: () => Error): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(expired()), ms);
  });
  call.catch(() => undefined);
  return Promise.race([call, deadline]).finally(() => clearTimeout(timer));
}

export interface BackoffPolicy {
  /** Delay after the first failure; doubles with each further failure. */
  baseDelayMs: number;
  /** Upper bound of a single delay. */
  maxDelayMs: number;
}

/**
 * Retrying against Postgres or Redis: the first retry comes quickly (a blip is
 * the common case) and the cap keeps recovery within seconds of the outage's end.
 */
export const DEFAULT_BACKOFF: BackoffPolicy = { baseDelayMs: 100, maxDelayMs: 5_000 };

/**
 * Reconnecting a client (ioredis `retryStrategy`): quick at first, capped at
 * 2 s so a restarted Redis is back in use within about two seconds.
 */
export const RECONNECT_BACKOFF: BackoffPolicy = { baseDelayMs: 100, maxDelayMs: 2_000 };

/**
 * Exponential backoff with "equal jitter": half the delay is fixed, half is
 * random, so replicas failing together spread out without ever retrying at once.
 * `failures` is how many attempts have failed so far (1 → about the base delay).
 */
export function backoffDelay(failures: number, policy: BackoffPolicy = DEFAULT_BACKOFF): number {
  const exponential = Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** Math.min(Math.max(0, failures - 1), 30));
  return Math.round(exponential / 2 + Math.random() * (exponential / 2));
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
    private readonly policy: BackoffPolicy = DEFAULT_BACKOFF,
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
    return backoffDelay(this.attempt, this.policy);
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
