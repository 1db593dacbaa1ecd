/**
 * The "slow/hung handler" fault of a chaos run (issue 14): on a seeded
 * fraction of events the handler's first call sleeps past the handler
 * deadline (`--handler-timeout` of the consumers, kept short in chaos), and
 * on another fraction it never returns at all, ignoring its AbortSignal. The
 * consumer must abandon both at the deadline, roll back, retry (the retry
 * behaves) and still lose, double and reorder nothing.
 *
 * Like transient failures, these are not scheduled in the fault plan: they
 * happen all along the run, identically in every consumer process (the
 * choice is a function of seed and event id).
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { seededFraction } from './seeded-random';

export interface SlowHandlerOptions {
  seed: number;
  /** Fraction of events whose first call sleeps past the deadline (then ends when aborted). */
  slowFraction: number;
  /** Fraction of events whose first call never returns and ignores the abort. */
  hangFraction: number;
  /** The consumers' handler deadline; a slow call sleeps well past it. */
  handlerTimeoutMs: number;
}

/** What the first call of this event does; `null` for a call that behaves. Same answer in every process. */
export function slowHandlerBehaviour(eventId: string, options: SlowHandlerOptions): 'slow' | 'hung' | null {
  // A different text than the transient failure's, so the two choices are independent.
  const draw = seededFraction(options.seed, `slow-or-hung:${eventId}`);
  if (draw < options.hangFraction) return 'hung';
  if (draw < options.hangFraction + options.slowFraction) return 'slow';
  return null;
}

/**
 * Delays or hangs the first call of a chosen event, before it writes
 * anything. A slow call listens to `signal` (it rejects when the consumer
 * aborts it at the deadline); a hung one does not, and never settles.
 */
export async function misbehaveOnFirstCall(eventId: string, attempt: number, signal: AbortSignal, options: SlowHandlerOptions): Promise<void> {
  if (attempt !== 1) return;
  const behaviour = slowHandlerBehaviour(eventId, options);
  if (behaviour === 'hung') await new Promise<never>(() => undefined);
  if (behaviour === 'slow') await sleep(options.handlerTimeoutMs * 2 + 500, undefined, { signal });
}

export function slowHandlerOptionsFromEnv(env: NodeJS.ProcessEnv, seed: number): SlowHandlerOptions {
  const fraction = (name: string, fallback: number) => {
    const value = Number(env[name] ?? fallback);
    if (!(value >= 0 && value <= 1)) throw new Error(`${name} must be between 0 and 1 (got ${JSON.stringify(env[name])})`);
    return value;
  };
  const handlerTimeoutMs = Number(env.CHAOS_HANDLER_TIMEOUT_MS ?? 30_000);
  if (!(handlerTimeoutMs > 0)) throw new Error(`CHAOS_HANDLER_TIMEOUT_MS must be a positive number (got ${JSON.stringify(env.CHAOS_HANDLER_TIMEOUT_MS)})`);
  return { seed, slowFraction: fraction('CHAOS_SLOW_FRACTION', 0), hangFraction: fraction('CHAOS_HANG_FRACTION', 0), handlerTimeoutMs };
}
