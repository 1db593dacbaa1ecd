/**
 * Polls `condition` until it returns a truthy value or `timeoutMs` passes,
 * then throws with `description`. Tests wait on conditions, never on time.
 */
export async function waitFor<T>(
  condition: () => T | Promise<T>,
  options: { timeoutMs?: number; intervalMs?: number; description?: string } = {},
): Promise<NonNullable<T>> {
  const deadline = Date.now() + (options.timeoutMs ?? 10_000);
  let lastError: unknown;
  for (;;) {
    try {
      const value = await condition();
      if (value) return value as NonNullable<T>;
    } catch (error) {
      lastError = error;
    }
    if (Date.now() > deadline) {
      const why = lastError ? ` (last error: ${(lastError as Error).message})` : '';
      throw new Error(`timed out after ${options.timeoutMs ?? 10_000} ms waiting for ${options.description ?? 'condition'}${why}`);
    }
    await new Promise((resolve) => setTimeout(resolve, options.intervalMs ?? 25));
  }
}

/** A boot deadline for a loaded machine (load 30 on 2 cores took over 30 s), not a speed check. */
export const APP_READY_TIMEOUT_MS = 90_000;

/**
 * Waits until a spawned app answers 200 on `GET /readyz` at `port`. Throws at
 * once when `exited()` returns a text (the process ended; e.g. its output),
 * and after `timeoutMs` otherwise. Tests wait for this before timing anything
 * the app must do, so a slow start never eats a deadline meant for the work.
 */
export async function waitForReady(
  port: number,
  options: { name: string; exited?: () => string | undefined; timeoutMs?: number },
): Promise<void> {
  const timeoutMs = options.timeoutMs ?? APP_READY_TIMEOUT_MS;
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const exit = options.exited?.();
    if (exit !== undefined) throw new Error(`${options.name} exited before it was ready: ${exit}`);
    if ((await fetch(`http://127.0.0.1:${port}/readyz`).catch(() => undefined))?.ok) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${options.name} ready on :${port}`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}
