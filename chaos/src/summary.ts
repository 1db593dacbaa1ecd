/** The closing summary a chaos run prints: the figures a skeptical reader checks. */
import { formatVerifyReport } from '@petcover/outbox/verify';
import type { ChaosSummary } from './run';

export function formatChaosSummary(summary: ChaosSummary, replicas: number): string {
  const faults = Object.entries(summary.faults)
    .map(([kind, n]) => `${kind} ${n}`)
    .join(', ');
  const plants = summary.wrongTypePlants
    .map((p) => `${p.partitionStream} ${(p.heldMs / 1000).toFixed(1)} s: other streams handled ${p.otherStreamsHandled}${p.overlapped ? ' (overlapped another fault, not judged)' : ''}`)
    .join('; ');
  const exits = Object.entries(summary.unexpectedExits)
    .map(([app, n]) => `${app} ${n}`)
    .join(', ');
  const lines = [
    formatVerifyReport(summary.verify),
    '',
    `chaos summary (seed ${summary.seed}, ${summary.durationSec} s, ${replicas} publishers + ${replicas} consumers)`,
    `  events            ${summary.events} in the outbox (${summary.producedCommitted} seen committed by the producer; ${summary.poison} poison)`,
    `  faults            ${faults || 'none'}${summary.skippedFaults > 0 ? ` (${summary.skippedFaults} skipped: target already down)` : ''}`,
    `  lost              ${summary.lost}`,
    `  doubled           ${summary.doubled}`,
    `  out-of-order      ${summary.outOfOrder}`,
    `  dead-lettered     ${summary.deadLettered} (poison ${summary.poison}; unexpected ${summary.unexpectedDeadLetters}; poison not dead-lettered ${summary.poisonNotDeadLettered})`,
    `  time to drain     ${(summary.drainMs / 1000).toFixed(1)} s${summary.drained ? '' : ' (DEADLINE PASSED, not drained)'}`,
    `  handler timeouts  ${summary.handlerTimeouts} (slow or hung first calls abandoned at the deadline, then retried)`,
    `  Redis recoveries  ${summary.redisRecoveries.recoveries} logged by publishers (${summary.redisRecoveries.republishedRows} rows re-sent, deduplicated by consumers)`,
    `  WRONGTYPE plants  ${plants || 'none'}`,
    `  app crashes       ${exits || 'none'}`,
    `RESULT: ${summary.passed ? 'PASS' : 'FAIL'}`,
  ];
  return lines.join('\n');
}
