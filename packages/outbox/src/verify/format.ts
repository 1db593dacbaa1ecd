/**
 * Human-readable rendering of a VerifyReport, as `events verify` and the
 * chaos run print it: the verdict first, then per-group counts, then examples
 * an on-call engineer can paste into psql.
 */
import type { VerifyReport } from './verify';

/** Renders the report as lines of plain text (no trailing newline). */
export function formatVerifyReport(report: VerifyReport): string {
  const lines: string[] = [];
  const window = [
    report.since ? `since ${report.since.toISOString()}` : 'since the oldest outbox row',
    report.until ? `until ${report.until.toISOString()}` : null,
  ]
    .filter(Boolean)
    .join(' ');
  lines.push(`verify: ${report.ok ? 'OK' : 'FAILED'} (${window})`);
  lines.push(
    `  events ${report.events} (unpublished ${report.unpublished}, on streams no group reads ${report.unsubscribed})` +
      ` | expected deliveries ${report.expected}, processed ${report.processed}, skipped (type not handled) ${report.skipped}`,
  );
  lines.push(
    `  missing ${report.missing} | doubled ${report.doubled} | out-of-order ${report.outOfOrder}` +
      ` | dead-lettered ${report.deadLettered} | discarded ${report.discarded}`,
  );
  if (!report.handledLogChecked) {
    lines.push('  note: no handled-order log (chaos.handled) in this database; doubled effects and order were not checked');
  }
  if (report.deadLetteredButProcessed > 0) {
    lines.push(`  warning: ${report.deadLetteredButProcessed} event(s) are both processed and left as dead letters`);
  }
  if (report.groups.length === 0) lines.push('  no consumer group found: nothing to reconcile (pass --group with a group that ran)');
  for (const g of report.groups) {
    lines.push(
      `  group ${g.group} [${g.streams.join(', ')}]: expected ${g.expected}, processed ${g.processed}, missing ${g.missing},` +
        ` doubled ${g.doubled}, out-of-order ${g.outOfOrder}, dead-lettered ${g.deadLettered}, discarded ${g.discarded}, skipped ${g.skipped}`,
    );
    if (g.skippedTypes.length > 0) {
      const how = report.subscriptions.some((s) => s.group === g.group && s.eventTypesSource === 'inferred')
        ? 'types it never handled in this window (pass --handles to say which it does)'
        : 'types it does not handle';
      lines.push(`    skipped, ${how}: ${g.skippedTypes.map((s) => `${s.type} ${s.events}`).join(', ')}`);
    }
  }
  for (const m of report.examples.missing) {
    lines.push(
      `  missing: group ${m.group} event ${m.eventId} (outbox id ${m.outboxId}, ${m.stream}, key ${m.partitionKey}, ${m.eventType}, ` +
        `${m.published ? 'published' : 'NOT published yet'})`,
    );
  }
  for (const d of report.examples.doubled) lines.push(`  doubled: group ${d.group} event ${d.eventId} applied ${d.times} times`);
  for (const o of report.examples.outOfOrder) {
    lines.push(
      `  out-of-order: group ${o.group} event ${o.eventId} (outbox id ${o.outboxId}, ${o.stream}, key ${o.partitionKey})` +
        ` handled after outbox id ${o.handledAfterOutboxId}`,
    );
  }
  for (const d of report.examples.deadLettered) {
    lines.push(
      `  dead letter (${d.status}): group ${d.group} event ${d.eventId} (${d.eventType}, key ${d.partitionKey}) after ${d.attempts} attempt(s): ${d.errorMessage}`,
    );
  }
  return lines.join('\n');
}
