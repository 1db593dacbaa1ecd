/**
 * Deadlines of the chaos runner: whatever hangs (a driver, a server that does
 * not come back, a Redis that accepts and never answers), the run, its
 * evidence and its teardown end within their budgets.
 */

/** Resolves or rejects with `work`, or rejects when `ms` pass or `signal` aborts — whichever comes first. */
export function settleWithin<T>(work: Promise<T>, ms: number, signal?: AbortSignal, what = 'chaos run'): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${what} exceeded its ${Math.round(ms / 1000)} s budget`)), ms);
    const onAbort = () => reject(new Error(`${what} aborted`));
    signal?.addEventListener('abort', onAbort, { once: true });
    work.then(resolve, reject).finally(() => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
    });
  });
}
