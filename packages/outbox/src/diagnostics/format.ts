/**
 * Human rendering of `events status` (the default; `--json` prints the
 * EventsStatus object itself). Plain text, one block per stream, problems
 * last so they are what stays on screen.
 */
import type { NodeStatus } from '../liveness/nodes';
import type { ConsumerGroupSummary } from './consumer-groups';
import type { LookupResult } from './event-journey';
import type { EventsStatus, LeaseStatus, PartitionParkingStatus } from './status';

function lease(l: LeaseStatus | null): string {
  if (!l) return 'none';
  const state = l.impossible
    ? `IMPOSSIBLE ROW (${l.impossible})`
    : l.owner === 'dead' ? 'OWNER DEAD' : l.owner === 'unregistered' ? 'OWNER NEVER REGISTERED' : l.expired ? 'EXPIRED' : l.ownerRenewing ? 'alive' : 'NOT RENEWED';
  const expiry = l.expiresInSeconds >= 0 ? `in ${l.expiresInSeconds}s` : `${-l.expiresInSeconds}s ago`;
  return `${l.ownerId} ${state}, until ${l.leaseUntil} (${expiry}), renewed ${l.secondsSinceRenewal}s ago, token ${l.fencingToken}`;
}

/** `parked keys 2 (0 halted, 612 events), most overdue 130s` of one partition, or '' when nothing is parked there. */
function parking(p: PartitionParkingStatus | undefined): string {
  if (!p) return '';
  const due =
    p.mostOverdueSeconds === null ? 'all halted' : p.mostOverdueSeconds >= 0 ? `most overdue ${p.mostOverdueSeconds}s` : `next retry in ${-p.mostOverdueSeconds}s`;
  return `; parked keys ${p.keys} (${p.halted} halted, ${p.parkedEvents} events), ${due}`;
}

function seconds(value: number | null): string {
  return value === null ? '-' : `${value}s`;
}

export function formatEventsStatus(status: EventsStatus): string {
  const lines: string[] = [];
  lines.push(`events status at ${status.checkedAt}`);
  lines.push(`  database: ${status.database.ok ? status.database.name : `FAIL ${status.database.error ?? ''}`}`);
  lines.push(`  redis:    ${status.redis.ok ? 'ok' : `FAIL ${status.redis.error ?? ''}`}${status.redis.keyPrefix ? ` (key prefix ${status.redis.keyPrefix})` : ''}`);
  if (status.database.ok && status.streams.length === 0) lines.push('  no streams found (no outbox rows, leases or Redis streams)');
  for (const s of status.streams) {
    lines.push('');
    lines.push(`${s.stream}${s.partitionCount > 1 ? ` (${s.partitionCount} partitions)` : ''}`);
    lines.push(
      `  outbox:    ${s.outbox.unpublished} unpublished, oldest ${seconds(s.outbox.oldestUnpublishedAgeSeconds)}; ` +
        `last published ${s.outbox.lastPublishedAt ?? 'never'} (outbox id ${s.outbox.lastPublishedId ?? '-'})`,
    );
    lines.push(`  publisher: ${lease(s.publisherLease)}`);
    if (s.redis === null) {
      lines.push('  redis:     unknown (Redis unreachable)');
    } else {
      for (const p of s.redis) {
        lines.push(
          `  redis:     ${p.redisKey}: ` +
            (p.exists ? `length ${p.length}, last id ${p.lastId}, last outbox id ${p.lastOutboxId ?? '-'}` : 'MISSING'),
        );
      }
    }
    for (const g of s.groups) {
      lines.push(`  group ${g.group}: lag ${g.lag ?? '?'}, pending ${g.pending}, oldest pending idle ${seconds(g.oldestPendingIdleSeconds)}`);
      for (const p of g.partitions) {
        const consumers = p.consumers.map((c) => `${c.name} (pending ${c.pending}, idle ${c.idleSeconds}s)`).join(', ') || 'none';
        const parked = s.parking.find((k) => k.group === g.group && k.partition === p.partition);
        lines.push(
          `    ${p.partition}: lag ${p.lag ?? '?'}, pending ${p.pending}, oldest waiting ${seconds(p.oldestUndeliveredAgeSeconds)}; ` +
            `lease ${lease(p.lease)}; consumers ${consumers}${parking(parked)}`,
        );
      }
    }
    // Parked keys of a group or partition Redis does not show (its group missing there).
    for (const k of s.parking) {
      if (!s.groups.some((g) => g.group === k.group && g.partitions.some((p) => p.partition === k.partition))) {
        lines.push(`  group ${k.group} on ${k.partition}: ${s.redis === null ? 'Redis unreadable' : 'no consumer group there in Redis'}${parking(k)}`);
      }
    }
    for (const d of s.deadLetters) {
      lines.push(`  dead letters: ${d.count} x ${d.type ?? '(undecodable)'} in group ${d.group} (${d.stream}), oldest ${d.oldestDeadLetteredAt}`);
    }
    for (const k of s.parkedKeys) {
      const overdue = k.overdueSeconds !== null ? ` (due ${k.overdueSeconds}s ago)` : '';
      const when = k.state === 'halted' ? `HALTED since ${k.haltedAt}` : `retrying, next attempt ${k.nextAttemptAt}${overdue}`;
      const head = k.head ? `head ${k.head.eventType} ${k.head.eventId}` : 'no head';
      lines.push(
        `  parked key ${k.key} in group ${k.group} (${k.stream}): ${when}, ${k.attempts} failed attempt(s), ${head}, ${k.parkedEvents} event(s) parked; ` +
          `error: ${(k.lastError ?? '-').split('\n')[0]?.slice(0, 120)}`,
      );
    }
  }
  if (status.nodes !== null) {
    lines.push('');
    lines.push(`nodes: ${status.nodes.filter((n) => n.alive).length} alive, ${status.nodes.filter((n) => !n.alive).length} dead (events nodes lists them)`);
  }
  lines.push('');
  if (status.problems.length === 0) {
    lines.push('HEALTHY: no problem found');
  } else {
    lines.push(`PROBLEMS (${status.problems.length}):`);
    for (const p of status.problems) {
      lines.push(`  [${p.kind}] ${p.message}`);
      lines.push(`      likely fix: ${p.fix}`);
    }
  }
  return lines.join('\n');
}

/** `events nodes`: one line per registered process, alive first. */
export function formatNodes(nodes: readonly NodeStatus[], leases: ReadonlyArray<{ stream: string; role: string; ownerId: string }>): string {
  if (nodes.length === 0) return 'no registered nodes (no publisher or consumer runs against this database)';
  const lines = ['state\trole\towner\tversion\tstarted\tlast heartbeat\tleases'];
  for (const n of nodes) {
    const state = n.alive ? 'alive' : n.deadReason === 'session_gone' ? 'DEAD (killed)' : 'DEAD (no heartbeat)';
    const held = leases.filter((l) => l.ownerId === n.ownerId).map((l) => `${l.role}@${l.stream}`);
    lines.push([state, n.role, n.ownerId, n.version, n.startedAt, `${n.secondsSinceHeartbeat}s ago`, held.join(', ') || '-'].join('\t'));
  }
  return lines.join('\n');
}

/** `events lookup`: each event's journey, one block per event. */
export function formatLookup(result: LookupResult): string {
  if (result.events.length === 0) return `nothing found for ${JSON.stringify(result.query)} (tried event id, outbox id, Redis entry id, partition key)`;
  const lines = [`${result.events.length} event(s) matching ${result.matchedAs} ${result.query}${result.redisError ? ` (Redis unreadable: ${result.redisError})` : ''}`];
  for (const e of result.events) {
    lines.push('');
    lines.push(`${e.type} ${e.eventId} (outbox id ${e.outboxId}, ${e.stream}, key ${e.partitionKey})`);
    lines.push(`  outbox:  created ${e.createdAt}, ${e.publishedAt ? `published ${e.publishedAt}` : 'NOT PUBLISHED'}`);
    lines.push(`  redis:   ${e.redisEntryId ? `${e.partitionStream} entry ${e.redisEntryId}` : 'no entry found (not published, trimmed, or Redis unreadable)'}`);
    for (const g of e.groups) {
      const detail =
        g.state === 'handled' ? `handled at ${g.handledAt}` : g.state === 'dead' ? `DEAD LETTER ${g.deadLetter!.id} after ${g.deadLetter!.attempts} attempt(s): ${g.deadLetter!.errorMessage.split('\n')[0]}` : g.state;
      lines.push(`  group ${g.group}: ${detail}`);
    }
  }
  return lines.join('\n');
}

/** `events group list`: one line per consumer group. */
export function formatConsumerGroups(groups: readonly ConsumerGroupSummary[]): string {
  if (groups.length === 0) return 'no consumer groups (no Redis consumer group on any stream, no consumer lease)';
  const lines = ['group\tstreams\tlive consumers\tleases\tpending\tlag\tdead letters\tparked keys\tlast read'];
  for (const g of groups) {
    const leases = g.leases.map((l) => `${l.partition}=${l.ownerId}${l.live ? '' : ' (not live)'}`).join(', ') || '-';
    const lastRead = g.lastReadSecondsAgo === null ? 'never' : `${g.lastReadSecondsAgo}s ago`;
    lines.push([g.group, g.streams.join(','), g.liveConsumers.join(',') || 'NONE', leases, g.pending, g.lag ?? '?', g.deadLetters, g.parkedKeys, lastRead].join('\t'));
  }
  return lines.join('\n');
}
