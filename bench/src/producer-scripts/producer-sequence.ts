/**
 * The per-transaction sequence number of pgbench producers, and the domain
 * row every producer transaction writes last.
 *
 * pgbench has no per-client counter, so the number comes from a sequence:
 * the event's statement takes `nextval` (its first use), the domain row
 * `currval` (same session, same value). The domain row is the last statement
 * before COMMIT and records `clock_timestamp()`: the commit time as closely as
 * a row can hold it (track_commit_timestamp is off on a stock server), so
 * commit → handler latency includes the commit's own flush and is never less
 * than the true figure.
 */

/** Created with the bench schema (bench-environment.ts) and restarted by each reset. */
export const PRODUCER_SEQUENCE = 'bench.producer_seq';

/** SQL for the transaction's sequence number, first use (in the event's statement). */
export const NEXT_SEQ = `nextval('${PRODUCER_SEQUENCE}')`;
/** SQL for the same number, after NEXT_SEQ ran in this transaction. */
export const CURRENT_SEQ = `currval('${PRODUCER_SEQUENCE}')`;

/** Last statement of every producer transaction. */
export const DOMAIN_ROW_STATEMENT = `INSERT INTO bench.domain_row (seq, written_at) VALUES (${CURRENT_SEQ}, clock_timestamp());`;

/** One producer transaction around `emit` (the event's statement(s), each ending with `;`). */
export function producerTransactionScript(emit: string): string {
  return `BEGIN;\n${emit}\n${DOMAIN_ROW_STATEMENT}\nCOMMIT;\n`;
}
