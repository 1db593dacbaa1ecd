/**
 * Retry delays and abortable sleeps shared by the consumer's loops.
 */
import { setTimeout as sleepTimer } from 'node:timers/promises';

export interface BackoffPolicy {
  /** Delay before the 2nd attempt; doubles each attempt. */
  baseDelayMs: number;
  /** Upper bound of a single delay. */
  maxDelayMs: number;
}

/**
 * Exponential backoff with "equal jitter": half the delay is fixed, half is
 * random, so replicas failing together spread out without ever retrying at once.
 * `failures` is how many attempts have failed so far (1 → base delay).
 */
export function backoffDelay(policy: BackoffPolicy, failures: number): number {
  const exponential = Math.min(policy.maxDelayMs, policy.baseDelayMs * 2 ** Math.max(0, failures - 1));
  return Math.round(exponential / 2 + Math.random() * (exponential / 2));
}

/** Resolves after `ms`, or early (without throwing) when `signal` aborts. Returns false when aborted. */
export async function sleepUnlessAborted(ms: number, signal: AbortSignal): Promise<boolean> {
  if (signal.aborted) return false;
  try {
    await sleepTimer(ms, undefined, { signal });
    return true;
  } catch {
    return false;
  }
}
