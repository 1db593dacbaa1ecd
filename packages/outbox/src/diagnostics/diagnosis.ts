/**
 * The "likely cause" of `events status`: rules over one snapshot that name
 * what an on-call engineer would conclude from it, and the fix. Each rule
 * matches one row of the runbook's "diagnosing silence" table.
 */
import { compareEntryIds, isEntryId } from '../entry-id';
import { parsePartitionStreamName, redisStreamKey } from '../streams';
import type { EventsStatus, GroupStatus, LeaseEntry, LeaseStatus, PartitionParkingStatus, PartitionStreamStatus, StreamStatus } from './status';

export type ProblemKind =
  | 'database_unreachable'
  | 'events_schema_missing'
  | 'redis_unreachable'
  | 'lease_impossible'
  | 'lease_owner_dead'
  | 'no_publisher_lease'
  | 'publisher_stopped_renewing'
  | 'publisher_not_draining'
  | 'redis_stream_missing'
  | 'redis_behind_outbox'
  | 'publisher_stream_fault'
  | 'consumer_partition_fault'
  | 'partition_stuck'
  | 'group_abandoned'
  | 'group_stuck'
  | 'group_not_consuming'
  | 'group_consuming_elsewhere'
  | 'dead_letters'
  | 'halted_keys'
  | 'parked_key_overdue';

export interface StatusProblem {
  kind: ProblemKind;
  stream?: string;
  group?: string;
  partition?: string;
  /** What is wrong, with the numbers that show it. */
  message: string;
  /** What to do about it. */
  fix: string;
}

export interface DiagnosisThresholds {
  /**
   * Queued rows or undelivered entries younger than this are normal traffic,
   * not a problem. Default 15 s: above the publisher's 5 s poll interval and a
   * lease renewal, so a healthy pipeline under load never trips it.
   */
  stuckAfterSeconds: number;
  /** A Redis consumer that read within this many seconds is alive. Default 15 s (reads block for at most a few seconds). */
  consumerActiveSeconds: number;
  /**
   * A group with no live lease whose consumers last read longer ago than
   * this is abandoned (a one-off `--group x` run, a decommissioned service),
   * not merely down for a restart. Default 300 s: longer than any rolling
   * deploy or crash loop back-off, short enough to be noticed the same shift.
   */
  abandonedAfterSeconds: number;
  /**
   * An entry pending this long under a live lease means the group is stuck
   * on it. Default 60 s: above the default handler deadline (30 s) plus the
   * largest retry backoff (10 s); a retried entry is re-read, which resets
   * its idle time.
   */
  stuckPendingSeconds: number;
  /**
   * A retrying parked key whose next attempt fell due longer ago than this
   * has nobody retrying it: its partition's lease holder looks at due keys
   * about every second (parkingRecheckMs), so a due key waits only while a
   * retry of its partition runs (at most the handler deadline, 30 s by
   * default) or while a dead owner's lease runs out (the lease TTL, 10 s by
   * default). Default 60 s: above both together; raise it with
   * handler deadlines longer than about 45 s.
   */
  parkedKeyOverdueSeconds: number;
}

export const DEFAULT_DIAGNOSIS_THRESHOLDS: DiagnosisThresholds = {
  stuckAfterSeconds: 15,
  consumerActiveSeconds: 15,
  abandonedAfterSeconds: 300,
  stuckPendingSeconds: 60,
  parkedKeyOverdueSeconds: 60,
};

/** A diagnosis threshold that is unknown, or not a number of seconds ≥ 0. `threshold` names it. */
export class InvalidDiagnosisThresholdsError extends Error {
  constructor(
    readonly threshold: string,
    reason: string,
  ) {
    super(`invalid diagnosis threshold ${threshold}: ${reason}`);
    this.name = 'InvalidDiagnosisThresholdsError';
  }
}

/**
 * DEFAULT_DIAGNOSIS_THRESHOLDS with `overrides` applied (undefined values
 * ignored). Throws InvalidDiagnosisThresholdsError for an unknown name or a
 * value that is not a finite number ≥ 0: a NaN from a bad flag would
 * otherwise silence every rule that compares with it.
 */
export function resolveDiagnosisThresholds(overrides: Partial<DiagnosisThresholds> = {}): DiagnosisThresholds {
  const resolved = { ...DEFAULT_DIAGNOSIS_THRESHOLDS };
  for (const [name, value] of Object.entries(overrides) as [string, unknown][]) {
    if (value === undefined) continue;
    if (!Object.hasOwn(DEFAULT_DIAGNOSIS_THRESHOLDS, name)) {
      throw new InvalidDiagnosisThresholdsError(name, `unknown threshold (known: ${Object.keys(DEFAULT_DIAGNOSIS_THRESHOLDS).join(', ')})`);
    }
    if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) {
      throw new InvalidDiagnosisThresholdsError(name, `must be a finite number of seconds, 0 or more (got ${typeof value === 'number' ? value : JSON.stringify(value)})`);
    }
    resolved[name as keyof DiagnosisThresholds] = value;
  }
  return resolved;
}

/** Returns the problems of a snapshot, most fundamental first; empty when healthy. */
export function diagnose(status: EventsStatus, thresholds: DiagnosisThresholds = DEFAULT_DIAGNOSIS_THRESHOLDS): StatusProblem[] {
  const problems: StatusProblem[] = [];
  if (!status.database.ok) {
    if (status.database.name && status.database.error?.includes('no events schema')) {
      problems.push({
        kind: 'events_schema_missing',
        message: `database ${status.database.name} has no events.* tables`,
        fix: 'DATABASE_URL points at the wrong database, or migrations never ran: check the URL, then run pnpm db:migrate',
      });
    } else {
      problems.push({
        kind: 'database_unreachable',
        message: `cannot query Postgres: ${status.database.error ?? 'unknown error'}`,
        fix: 'check DATABASE_URL and that Postgres is up (pg_isready)',
      });
    }
    return problems;
  }
  if (!status.redis.ok) {
    problems.push({
      kind: 'redis_unreachable',
      message: `cannot query Redis: ${status.redis.error ?? 'unknown error'}`,
      fix: 'check REDIS_URL and that Redis is up (redis-cli ping)',
    });
  }
  problems.push(...impossibleLeaseProblems(status), ...deadOwnerProblems(status));
  for (const stream of status.streams) {
    problems.push(...publisherProblems(stream, thresholds));
    if (stream.redis) problems.push(...redisProblems(stream), ...publisherFaultProblems(stream));
    problems.push(...groupFaultProblems(stream, status.redis.keyPrefix));
    problems.push(...groupProblems(stream, thresholds));
    problems.push(...deadLetterProblems(stream));
    problems.push(...haltedKeyProblems(stream));
    problems.push(...overdueParkedKeyProblems(stream, status.leases, thresholds));
  }
  return problems;
}

/** A live lease whose owner is not a live node: it blocks its stream until it expires, however long the TTL. */
function heldByDeadOwner(lease: LeaseStatus | null): boolean {
  return lease !== null && !lease.impossible && !lease.expired && (lease.owner === 'dead' || lease.owner === 'unregistered');
}

/** A lease row edited by hand into a state no owner writes: reported as exactly that, whoever holds it. */
function impossibleLeaseProblems(status: EventsStatus): StatusProblem[] {
  return status.leases
    .filter((lease) => lease.impossible !== null)
    .map((lease) => ({
      kind: 'lease_impossible' as const,
      stream: parsePartitionStreamName(lease.stream)?.stream ?? lease.stream,
      ...(lease.role.startsWith('consumer:') ? { group: lease.role.slice('consumer:'.length), partition: lease.stream } : {}),
      message:
        `the ${lease.role} lease row on ${lease.stream} (owner ${JSON.stringify(lease.ownerId)}, fencing token ${lease.fencingToken}) ` +
        `was edited into an impossible state: ${lease.impossible}; publishers and consumers leave the stream alone until it is dropped`,
      fix: `events lease release --stream ${lease.stream} --role ${lease.role}; a running replica takes it with a fresh token within its poll interval`,
    }));
}

function deadOwnerProblems(status: EventsStatus): StatusProblem[] {
  const problems: StatusProblem[] = [];
  for (const lease of status.leases) {
    if (!heldByDeadOwner(lease)) continue;
    const node = status.nodes?.find((n) => n.ownerId === lease.ownerId);
    const why =
      lease.owner === 'unregistered'
        ? 'which never registered as a node (a lease inserted by hand, or a process from before liveness)'
        : node?.deadReason === 'session_gone'
          ? 'whose process is gone (its Postgres session ended: killed or crashed)'
          : `which stopped heartbeating ${node?.secondsSinceHeartbeat ?? '?'}s ago`;
    const logical = parsePartitionStreamName(lease.stream)?.stream ?? lease.stream; // a hand-edited row is still reported
    problems.push({
      kind: 'lease_owner_dead',
      stream: logical,
      ...(lease.role.startsWith('consumer:') ? { group: lease.role.slice('consumer:'.length), partition: lease.stream } : {}),
      message: `the ${lease.role} lease on ${lease.stream} is held by ${lease.ownerId}, ${why}; it blocks the stream until ${lease.leaseUntil}`,
      fix:
        `events lease release --stream ${lease.stream} --role ${lease.role} (or every dead owner's lease at once: events lease release --all-dead); ` +
        'a running replica takes it over within its poll interval',
    });
  }
  return problems;
}

function publisherProblems(stream: StreamStatus, t: DiagnosisThresholds): StatusProblem[] {
  // Reported as lease_owner_dead / lease_impossible, with the precise fix.
  if (heldByDeadOwner(stream.publisherLease) || stream.publisherLease?.impossible) return [];
  const { unpublished, oldestUnpublishedAgeSeconds: age } = stream.outbox;
  if (unpublished === 0 || age === null || age < t.stuckAfterSeconds) return [];
  const queued = `${unpublished} event(s) queued, oldest ${age}s`;
  const lease = stream.publisherLease;
  if (!lease) {
    return [
      {
        kind: 'no_publisher_lease',
        stream: stream.stream,
        message: `${queued}, and no publisher holds the lease`,
        fix: 'no publisher runs against this database: start events-publisher, with the same DATABASE_URL as the api',
      },
    ];
  }
  if (!lease.ownerRenewing) {
    return [
      {
        kind: 'publisher_stopped_renewing',
        stream: stream.stream,
        message:
          `${queued}; lease held by ${lease.ownerId}, which stopped renewing ${lease.secondsSinceRenewal}s ago` +
          (lease.expired ? ` (expired at ${lease.leaseUntil})` : ` (expires at ${lease.leaseUntil})`),
        fix:
          'the owner died or hangs; a running publisher takes an expired lease over by itself. If none runs, start one; ' +
          `to hand the stream over now: events lease release --stream ${stream.stream} --role publisher`,
      },
    ];
  }
  // Under a large backlog the oldest row is old while the owner drains fine:
  // only a publisher that has published nothing lately is stuck.
  const lastPublishedAge = stream.outbox.lastPublishedAgeSeconds;
  if (lastPublishedAge !== null && lastPublishedAge < t.stuckAfterSeconds) return [];
  return [
    {
      kind: 'publisher_not_draining',
      stream: stream.stream,
      message: `${queued}; ${lease.ownerId} holds and renews the lease but does not drain`,
      fix: 'read that publisher\'s logs: Redis unreachable from it, or its appends are fenced; restart it if it stays stuck',
    },
  ];
}

/**
 * A Redis error the publisher fails with on one partition stream (recorded by
 * its drainer): that stream alone backs off; the others flow.
 */
function publisherFaultProblems(stream: StreamStatus): StatusProblem[] {
  return (stream.redis ?? [])
    .filter((p) => p.publisherFault !== null)
    .map((p) => {
      const { message, since } = p.publisherFault!;
      const wrongType = /WRONGTYPE/.test(message);
      return {
        kind: 'publisher_stream_fault' as const,
        stream: stream.stream,
        partition: p.partition,
        message: `the publisher cannot write ${p.redisKey} since ${since}: ${message}`,
        fix: wrongType
          ? `Redis key ${p.redisKey} is not a stream: something else wrote it. Check what it holds (TYPE / DUMP), then rename it away or delete it and fix that writer; ` +
            'the publisher retries this stream alone with backoff and resumes by itself (other streams are not affected)'
          : 'read the publisher logs for this stream (one line per new error, with the Redis error); an entry too large for Redis needs a smaller payload or a larger ' +
            'proto-max-bulk-len; the publisher retries this stream alone with backoff and resumes by itself',
      };
    });
}

/** Redis ends before what the publisher recorded for this partition (Postgres is the record). */
function behindRecord(p: PartitionStreamStatus): boolean {
  if (p.recordedEntryId === null || !isEntryId(p.recordedEntryId) || p.publisherFault !== null) return false;
  return !p.exists || p.lastId === null || compareEntryIds(p.lastId, p.recordedEntryId) < 0;
}

function redisProblems(stream: StreamStatus): StatusProblem[] {
  const partitions = stream.redis ?? [];
  if (partitions.some((p) => p.recordedEntryId !== null)) return recordedRedisProblems(stream, partitions);
  return unrecordedRedisProblems(stream);
}

/**
 * With recorded entry ids: Redis must end at or after the entry the
 * publisher recorded last for each partition. Replayed rows re-sent after
 * newer ones, trimmed or deleted entries do not move a stream's last id back,
 * so none of them looks like a loss here.
 */
function recordedRedisProblems(stream: StreamStatus, partitions: PartitionStreamStatus[]): StatusProblem[] {
  const behind = partitions.filter(behindRecord);
  if (behind.length === 0) return [];
  const fix =
    'A publisher using this Redis (REDIS_URL, REDIS_KEY_PREFIX) re-appends exactly the missing rows by itself before its next append ' +
    '(log line "Redis is behind what Postgres recorded"). If the publisher writes to another Redis, give it the same REDIS_URL / REDIS_KEY_PREFIX as the consumers: ' +
    'it then re-appends here what went elsewhere. If no publisher runs, start one.';
  const where = behind.map((p) => `${p.redisKey} ends at ${p.exists ? p.lastId : 'nothing (no key)'} but the publisher recorded entry ${p.recordedEntryId}`).join('; ');
  if (behind.length === partitions.length && behind.every((p) => !p.exists)) {
    return [{ kind: 'redis_stream_missing', stream: stream.stream, message: `rows are marked published but Redis has no key: ${where}`, fix }];
  }
  return [{ kind: 'redis_behind_outbox', stream: stream.stream, message: `Redis is behind what Postgres recorded: ${where}`, fix }];
}

/** Rows published before entry ids were recorded: compare outbox ids (a replay can fool this one). */
function unrecordedRedisProblems(stream: StreamStatus): StatusProblem[] {
  const partitions = stream.redis ?? [];
  const { lastPublishedAt, lastPublishedAgeSeconds: publishedAge } = stream.outbox;
  if (!lastPublishedAt || publishedAge === null) return [];
  if (partitions.every((p) => !p.exists)) {
    return [
      {
        kind: 'redis_stream_missing',
        stream: stream.stream,
        message: `rows are marked published (last at ${lastPublishedAt}) but Redis has no key ${partitions.map((p) => p.redisKey).join(', ')}`,
        fix:
          'Redis lost its data (restart without persistence) or the publisher writes to another Redis (REDIS_URL / REDIS_KEY_PREFIX). ' +
          `After fixing the URL, re-publish: events outbox replay --stream ${stream.stream} --since <time of the loss>`,
      },
    ];
  }
  // The newest published row went to some partition, so Redis must hold an
  // outbox id at least as new. Unless retention trimmed a partition empty
  // (entries were appended, none is left): then the newest id is unknown.
  if (partitions.some((p) => p.exists && p.length === 0 && p.lastId !== null && p.lastId !== '0-0')) return [];
  const lastPublishedId = BigInt(stream.outbox.lastPublishedId ?? '0');
  const newestInRedis = partitions.reduce((max, p) => (p.lastOutboxId && BigInt(p.lastOutboxId) > max ? BigInt(p.lastOutboxId) : max), 0n);
  if (newestInRedis < lastPublishedId) {
    return [
      {
        kind: 'redis_behind_outbox',
        stream: stream.stream,
        message:
          `outbox row ${lastPublishedId} was marked published ${publishedAge}s ago but the newest entry in this Redis ` +
          (newestInRedis === 0n ? 'is none (streams empty)' : `carries outbox id ${newestInRedis}`),
        fix:
          'Redis restarted without its data, or the publisher appends to another Redis (REDIS_URL / REDIS_KEY_PREFIX). ' +
          `After fixing the URL, re-publish: events outbox replay --stream ${stream.stream} --since <time of the loss>`,
      },
    ];
  }
  return [];
}

/**
 * What consumers recorded about partitions they cannot move: a key the group
 * cannot be created on (WRONGTYPE...), or an entry whose dead letter
 * Postgres refuses even in minimal form.
 */
function groupFaultProblems(stream: StreamStatus, keyPrefix: string): StatusProblem[] {
  const problems: StatusProblem[] = [];
  for (const group of stream.groups) {
    for (const f of group.faults) {
      const wrongType = /WRONGTYPE/.test(f.message);
      problems.push({
        kind: 'consumer_partition_fault',
        stream: stream.stream,
        group: group.group,
        partition: f.partition,
        message: `group ${group.group} cannot consume ${f.partition} since ${f.since}: ${f.message} (reported by ${f.ownerId}); the group's other partitions go on`,
        fix: wrongType
          ? `Redis key ${f.redisKey} is not a stream: something else wrote it. Check what it holds (TYPE / DUMP), then rename it away or delete it and fix that writer; ` +
            'the consumer retries creating its group there with backoff and resumes by itself'
          : `read the consumer logs of group ${group.group} for ${f.partition} (one line per new cause); the consumer retries with backoff and resumes by itself`,
      });
    }
    for (const p of group.partitions) {
      if (!p.stuck) continue;
      const key = redisStreamKey(p.partition, keyPrefix);
      problems.push({
        kind: 'partition_stuck',
        stream: stream.stream,
        group: group.group,
        partition: p.partition,
        message:
          `group ${group.group} is stuck on entry ${p.stuck.entryId} of ${p.partition} (since ${p.stuck.since}, consumer ${p.stuck.ownerId}): ` +
          `even a minimal dead letter was refused: ${p.stuck.cause}; the entry stays pending and everything after it on this partition waits`,
        fix:
          'make Postgres accept the dead letter (the cause names it: disk full, permissions, a constraint or trigger on events.dead_letter); ' +
          `the consumer retries the entry with backoff and the partition flows again. To give this one entry up instead: XACK ${key} ${group.group} ${p.stuck.entryId} ` +
          '(the event is then neither handled nor dead-lettered for this group)',
      });
    }
  }
  return problems;
}

function liveLease(lease: LeaseStatus | null): boolean {
  return lease !== null && !lease.expired && !lease.impossible && !heldByDeadOwner(lease);
}

/**
 * A group nobody consumes any more: no live lease on any partition and no
 * Redis consumer of it read within `abandonedAfterSeconds` (or, when it has
 * no consumer at all, entries have waited that long).
 */
function abandonedGroupProblem(stream: StreamStatus, group: GroupStatus, t: DiagnosisThresholds): StatusProblem | null {
  if (group.partitions.length === 0 || group.faults.length > 0) return null;
  if (group.partitions.some((p) => liveLease(p.lease) || heldByDeadOwner(p.lease) || p.lease?.impossible)) return null;
  const idles = group.partitions.flatMap((p) => p.consumers.map((c) => c.idleSeconds));
  const waited = group.partitions.map((p) => p.oldestUndeliveredAgeSeconds ?? 0);
  const quietFor = idles.length > 0 ? Math.min(...idles) : Math.max(0, ...waited);
  if (quietFor < t.abandonedAfterSeconds) return null;
  const lastReader = group.partitions.flatMap((p) => p.consumers).sort((a, b) => a.idleSeconds - b.idleSeconds)[0];
  return {
    kind: 'group_abandoned',
    stream: stream.stream,
    group: group.group,
    message:
      `group ${group.group} has had no live consumer for ${Math.round(quietFor)}s (over ${t.abandonedAfterSeconds}s): no lease on any partition, ` +
      (lastReader ? `last read by ${lastReader.name}` : 'no consumer ever read') +
      `; lag ${group.lag ?? 'unknown'}, pending ${group.pending}`,
    fix:
      `if the group is still wanted, start events-consumer with CONSUMER_GROUP=${group.group}; if it was a one-off run or its service is gone, ` +
      `remove it: events group delete --group ${group.group} (events group list shows every group)`,
  };
}

function groupProblems(stream: StreamStatus, t: DiagnosisThresholds): StatusProblem[] {
  const problems: StatusProblem[] = [];
  for (const group of stream.groups) {
    const abandoned = abandonedGroupProblem(stream, group, t);
    if (abandoned) {
      problems.push(abandoned);
      continue;
    }
    for (const p of group.partitions) {
      // Reported as lease_owner_dead / lease_impossible / partition_stuck, each with its own fix.
      if (heldByDeadOwner(p.lease) || p.lease?.impossible || p.stuck) continue;
      const leaseAlive = p.lease !== null && !p.lease.expired;
      const activeConsumer = p.consumers.find((c) => c.idleSeconds <= t.consumerActiveSeconds);
      if (!leaseAlive && activeConsumer) {
        problems.push({
          kind: 'group_consuming_elsewhere',
          stream: stream.stream,
          group: group.group,
          partition: p.partition,
          message:
            `consumer ${activeConsumer.name} of group ${group.group} read ${p.partition} ${activeConsumer.idleSeconds}s ago, ` +
            'but the group holds no lease on it in this database',
          fix: 'that consumer uses another database (split database): give api, publisher and consumer the same DATABASE_URL',
        });
        continue;
      }
      // A consumer that reads under a live lease is working through a backlog, not stuck.
      const working = leaseAlive && activeConsumer !== undefined;
      const waiting = !working && p.lag !== null && p.lag > 0 && (p.oldestUndeliveredAgeSeconds ?? 0) >= t.stuckAfterSeconds;
      const pendingIdle = p.oldestPendingIdleSeconds ?? 0;
      if (leaseAlive && (waiting || (p.pending > 0 && pendingIdle >= t.stuckPendingSeconds))) {
        problems.push({
          kind: 'group_stuck',
          stream: stream.stream,
          group: group.group,
          partition: p.partition,
          message:
            `group ${group.group} holds ${p.partition} (lease of ${p.lease!.ownerId}${p.lease!.ownerRenewing ? ', renewed' : ', not renewed'}) but makes no progress: ` +
            `lag ${p.lag ?? 'unknown'}${p.oldestUndeliveredAgeSeconds !== null ? ` (oldest ${p.oldestUndeliveredAgeSeconds}s)` : ''}, ` +
            `pending ${p.pending}${p.oldestPendingIdleSeconds !== null ? ` (oldest idle ${p.oldestPendingIdleSeconds}s)` : ''}`,
          fix:
            `read the logs of consumer ${p.lease!.ownerId} (a handler hung or timing out, Postgres locks, retries): its watchdog gives the partition up after ` +
            'the handler deadline plus the lease TTL; if it does not, restart that consumer (another replica takes the partition over)',
        });
        continue;
      }
      const stalePending = p.pending > 0 && pendingIdle >= t.stuckAfterSeconds && !leaseAlive;
      if (waiting || stalePending) {
        const leaseText = p.lease
          ? `lease held by ${p.lease.ownerId}${p.lease.expired ? ' (expired)' : p.lease.ownerRenewing ? '' : ' (not renewed)'}`
          : 'no consumer lease';
        problems.push({
          kind: 'group_not_consuming',
          stream: stream.stream,
          group: group.group,
          partition: p.partition,
          message:
            `group ${group.group} is not consuming ${p.partition}: lag ${p.lag ?? 'unknown'}` +
            (p.oldestUndeliveredAgeSeconds !== null ? ` (oldest ${p.oldestUndeliveredAgeSeconds}s)` : '') +
            `, pending ${p.pending}; ${leaseText}`,
          fix:
            `start events-consumer with CONSUMER_GROUP=${group.group} (same DATABASE_URL and REDIS_URL as the publisher); ` +
            'if one runs, read its logs (handler stuck, Postgres unreachable)',
        });
      }
    }
  }
  return problems;
}

function deadLetterProblems(stream: StreamStatus): StatusProblem[] {
  const byGroup = new Map<string, { count: number; types: string[] }>();
  for (const d of stream.deadLetters) {
    const entry = byGroup.get(d.group) ?? { count: 0, types: [] };
    entry.count += d.count;
    entry.types.push(`${d.type ?? '(undecodable)'} x${d.count}`);
    byGroup.set(d.group, entry);
  }
  return [...byGroup.entries()].map(([group, { count, types }]) => ({
    kind: 'dead_letters' as const,
    stream: stream.stream,
    group,
    message: `${count} dead letter(s) in group ${group}: ${types.join(', ')}`,
    fix: `inspect: events dlq list --group ${group}; after fixing the handler: events dlq replay --all --group ${group} (or events dlq discard <id>)`,
  }));
}

/** Halted keys (policy halt, out of attempts): each waits for an operator, its later events parked behind it. */
function haltedKeyProblems(stream: StreamStatus): StatusProblem[] {
  return stream.parkedKeys
    .filter((k) => k.state === 'halted')
    .map((k) => {
      const ref = `--group ${k.group} --stream ${k.stream} --key ${k.key}`;
      const head = k.head ? `head ${k.head.eventType} ${k.head.eventId}` : 'no head';
      return {
        kind: 'halted_keys' as const,
        stream: stream.stream,
        group: k.group,
        partition: k.stream,
        message: `key ${k.key} halted in group ${k.group} since ${k.haltedAt} after ${k.attempts} attempt(s) (${head}, ${k.parkedEvents} event(s) waiting): ${(k.lastError ?? '').split('\n')[0]?.slice(0, 200)}`,
        fix: `after fixing the cause: events key release ${ref} (retries the head now); or events key discard ${ref} (drops the head, the key goes on)`,
      };
    });
}

/** At most this many overdue keys are named in one problem; the rest are counted. */
const OVERDUE_KEYS_NAMED = 5;

/**
 * Retrying parked keys whose retry is overdue by more than
 * `parkedKeyOverdueSeconds`: nobody retries their partition, so the key's
 * events wait for good. One problem per group and partition stream, naming
 * the most overdue keys and who holds the partition's lease, since that
 * decides the fix.
 */
function overdueParkedKeyProblems(stream: StreamStatus, leases: readonly LeaseEntry[], t: DiagnosisThresholds): StatusProblem[] {
  return stream.parking
    .filter((p) => p.mostOverdueSeconds !== null && p.mostOverdueSeconds > t.parkedKeyOverdueSeconds)
    .map((p) => {
      const overdue = stream.parkedKeys.filter(
        (k) => k.group === p.group && k.stream === p.partition && k.overdueSeconds !== null && k.overdueSeconds > t.parkedKeyOverdueSeconds,
      );
      const named = overdue
        .slice(0, OVERDUE_KEYS_NAMED)
        .map((k) => `${k.key} (due ${k.overdueSeconds}s ago, ${k.attempts} failed attempt(s), ${k.parkedEvents} event(s) waiting)`);
      const more = overdue.length > OVERDUE_KEYS_NAMED ? `, and ${overdue.length - OVERDUE_KEYS_NAMED} more` : '';
      // The status lists at most 50 keys: the counts of the partition are exact, the named keys may not be all.
      const keys = named.length > 0 ? `${named.join(', ')}${more}` : `its most overdue key is due ${p.mostOverdueSeconds}s ago (events key list --stream ${p.partition} shows it)`;
      const lease = leases.find((l) => l.stream === p.partition && l.role === `consumer:${p.group}`) ?? null;
      const { holder, fix } = overdueLeaseFinding(p, lease);
      return {
        kind: 'parked_key_overdue' as const,
        stream: stream.stream,
        group: p.group,
        partition: p.partition,
        message:
          `parked keys of group ${p.group} on ${p.partition} are not being retried: ${keys}; ` +
          `${p.keys} key(s) parked there (${p.halted} halted), ${p.parkedEvents} event(s) waiting in all; ${holder}`,
        fix,
      };
    });
}

/** Who holds the partition of overdue keys, and the fix that follows from it. */
function overdueLeaseFinding(p: PartitionParkingStatus, lease: LeaseEntry | null): { holder: string; fix: string } {
  const role = `consumer:${p.group}`;
  // Release and discard only change rows; a due key needs a lease holder that retries it.
  const noRelease = 'events key release does not help: the keys are already due, what is missing is a consumer retrying them';
  if (lease === null || lease.expired) {
    return {
      holder: lease === null ? `no consumer of group ${p.group} holds the partition's lease` : `the partition's lease (last held by ${lease.ownerId}) expired ${-lease.expiresInSeconds}s ago and nobody took it over`,
      fix:
        `start events-consumer with CONSUMER_GROUP=${p.group} for this stream (same DATABASE_URL and REDIS_URL as the publisher): it takes the partition and retries due keys at once. ` +
        `If the group is gone for good (events group delete), drop its keys: events key discard --group ${p.group} --stream ${p.partition} --key <key>, for each key`,
    };
  }
  if (lease.impossible) {
    return { holder: `the partition's lease row is impossible (${lease.impossible})`, fix: `events lease release --stream ${p.partition} --role ${role}; a running replica takes the partition and retries due keys at once` };
  }
  if (lease.owner === 'dead' || lease.owner === 'unregistered') {
    return {
      holder: `the partition's lease is held by ${lease.ownerId}, whose node is ${lease.owner === 'dead' ? 'dead' : 'not registered'} (lease until ${lease.leaseUntil})`,
      fix: `events lease release --stream ${p.partition} --role ${role}; a running replica takes the partition over and retries due keys at once. ${noRelease}`,
    };
  }
  return {
    holder:
      `the partition's lease is held by ${lease.ownerId}` +
      (lease.ownerRenewing ? ', which is alive and renews it, yet does not retry them' : `, which stopped renewing it ${lease.secondsSinceRenewal}s ago`),
    fix:
      `read the logs of consumer ${lease.ownerId} for ${p.partition} ("partition loop failing", a handler past its deadline); restart it: ` +
      `its leases are released and a replica (or the restarted one) retries due keys at once. ${noRelease}`,
  };
}
