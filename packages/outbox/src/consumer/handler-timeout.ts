/**
 * The handler's deadline (issue 14): every handler call gets an AbortSignal
 * that fires at its deadline, and the call is abandoned then, whether or not
 * the handler listens. The batch transaction carries the same bound in
 * Postgres (`SET LOCAL statement_timeout` / `lock_timeout`), so a statement
 * the handler left running is cancelled by the server and the ROLLBACK that
 * follows is not stuck behind it.
 */
import { sql as drizzleSql } from 'drizzle-orm';
import { settleBy } from '../backoff';
import { executePrepared, type Transaction } from '../db';

/** A handler call ran past its deadline: counted as a failed attempt (retried, then dead-lettered). */
export class HandlerTimeoutError extends Error {
  constructor(
    readonly eventType: string,
    readonly timeoutMs: number,
  ) {
    super(`handler of ${eventType} did not finish within its ${timeoutMs} ms deadline`);
    this.name = 'HandlerTimeoutError';
  }
}

/**
 * Runs `call(signal)` and settles with it, or rejects with
 * HandlerTimeoutError after `timeoutMs` (aborting `signal` first). A call
 * abandoned this way may still settle later; its outcome is ignored (never
 * an unhandled rejection).
 */
export async function withDeadline<T>(eventType: string, timeoutMs: number, call: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const controller = new AbortController();
  // async: a handler that throws before returning a promise rejects like one that rejects.
  return settleBy(call(controller.signal), timeoutMs, () => {
    const error = new HandlerTimeoutError(eventType, timeoutMs);
    controller.abort(error);
    return error;
  });
}

/**
 * Bounds the consumer's batch transaction on the server, for this
 * transaction only (`set_config(..., true)` is SET LOCAL):
 * - statement_timeout = the deadline: one statement can never outlive it;
 * - lock_timeout = half of it: a row lock held elsewhere fails the attempt
 *   with an error that names the lock wait, not a generic timeout;
 * - idle_in_transaction_session_timeout = deadline + 5 s: a transaction left
 *   open by a wedged caller is ended by the server, freeing its locks.
 * Returns the transaction's backend pid: the watchdog terminates that
 * backend when it gives the partition up, so a transaction wedged beyond
 * every timeout (a handler that lifted them) does not keep holding the
 * inbox row locks the next owner needs.
 *
 * SQL: SELECT set_config('statement_timeout', $1, true), set_config('lock_timeout', $2, true),
 *             set_config('idle_in_transaction_session_timeout', $3, true), pg_backend_pid()
 */
export async function boundTransaction(tx: Transaction, deadlineMs: number): Promise<number> {
  const rows = await executePrepared<{ pid: number }>(tx, drizzleSql`
    SELECT set_config('statement_timeout', ${String(deadlineMs)}, true),
           set_config('lock_timeout', ${String(Math.max(1, Math.ceil(deadlineMs / 2)))}, true),
           set_config('idle_in_transaction_session_timeout', ${String(deadlineMs + 5_000)}, true),
           pg_backend_pid() AS pid`);
  return Number(rows[0]?.pid);
}
