/**
 * `events group list` and `events group delete` (issue 14): the consumer
 * groups an operator can see and clean. A one-off `events-consumer --group x`
 * leaves a Redis consumer group behind (and lease rows while it ran); status
 * then reports it abandoned, and this is the command that removes it.
 *
 * Both read the same snapshot as `events status` (collectEventsStatus), so a
 * group looks the same in both.
 */
import type { RedisClient } from '@petcover/service-kit';
import type { Sql } from '../db';
import { consumerRole } from '../lease/lease';
import { membersKey } from '../consumer/membership';
import { partitionFaultsKey, stuckPartitionsKey } from '../consumer/stuck-partitions';
import { redisStreamKey } from '../streams';
import { DEFAULT_DIAGNOSIS_THRESHOLDS } from './diagnosis';
import type { EventsStatus, LeaseStatus } from './status';

export interface ConsumerGroupLease {
  partition: string;
  ownerId: string;
  /** Unexpired and its owner a live node (or liveness unknown): a running consumer. */
  live: boolean;
}

export interface ConsumerGroupSummary {
  group: string;
  /** Logical streams the group exists on (in Redis or by a lease). */
  streams: string[];
  /** Partition streams where the Redis consumer group exists. */
  partitions: string[];
  /** Lease owners that are running consumers, and Redis consumers that read lately. */
  liveConsumers: string[];
  leases: ConsumerGroupLease[];
  pending: number;
  /** Null when any partition's lag is unknown. */
  lag: number | null;
  /** Dead letters still `dead`. */
  deadLetters: number;
  /** Keys parked in this group (a failing event parks its key; see `events key list`), from the status snapshot. */
  parkedKeys: number;
  /** Seconds since any Redis consumer of the group last read; null when none ever did. */
  lastReadSecondsAgo: number | null;
}

function isLive(lease: LeaseStatus): boolean {
  return !lease.expired && !lease.impossible && (lease.owner === 'alive' || lease.owner === 'unknown');
}

/** Every consumer group of a status snapshot, by name. Pure. */
export function summarizeConsumerGroups(status: EventsStatus, consumerActiveSeconds = DEFAULT_DIAGNOSIS_THRESHOLDS.consumerActiveSeconds): ConsumerGroupSummary[] {
  const byName = new Map<string, ConsumerGroupSummary>();
  for (const stream of status.streams) {
    for (const g of stream.groups) {
      let summary = byName.get(g.group);
      if (!summary) {
        summary = { group: g.group, streams: [], partitions: [], liveConsumers: [], leases: [], pending: 0, lag: 0, deadLetters: 0, parkedKeys: 0, lastReadSecondsAgo: null };
        byName.set(g.group, summary);
      }
      summary.streams.push(stream.stream);
      summary.pending += g.pending;
      summary.lag = summary.lag === null || g.lag === null ? null : summary.lag + g.lag;
      summary.deadLetters += stream.deadLetters.filter((d) => d.group === g.group).reduce((n, d) => n + d.count, 0);
      summary.parkedKeys += stream.parkedKeys.filter((k) => k.group === g.group).length;
      for (const p of g.partitions) {
        if (p.lag !== null) summary.partitions.push(p.partition);
        if (p.lease) {
          const live = isLive(p.lease);
          summary.leases.push({ partition: p.partition, ownerId: p.lease.ownerId, live });
          if (live && !summary.liveConsumers.includes(p.lease.ownerId)) summary.liveConsumers.push(p.lease.ownerId);
        }
        for (const c of p.consumers) {
          if (summary.lastReadSecondsAgo === null || c.idleSeconds < summary.lastReadSecondsAgo) summary.lastReadSecondsAgo = c.idleSeconds;
          if (c.idleSeconds <= consumerActiveSeconds && !summary.liveConsumers.includes(c.name)) summary.liveConsumers.push(c.name);
        }
      }
    }
  }
  return [...byName.values()].sort((a, b) => a.group.localeCompare(b.group));
}

/** `events group delete` refused: a running consumer holds leases of the group (and would recreate it). */
export class GroupInUseError extends Error {
  constructor(
    readonly group: string,
    readonly leases: ConsumerGroupLease[],
  ) {
    const held = leases.map((l) => `${l.partition} by ${l.ownerId}`).join(', ');
    super(
      `group ${group} is in use: a live consumer holds its lease on ${held}. Stop that consumer first (it would recreate the group), ` +
        'or pass --force to delete it anyway',
    );
    this.name = 'GroupInUseError';
  }
}

/** `events group delete` of a group that exists neither in Redis nor as a lease in this database. */
export class UnknownGroupError extends Error {
  constructor(readonly group: string) {
    super(`group ${group} does not exist: no Redis consumer group of that name on any stream, and no lease of role consumer:${group} (events group list shows the groups)`);
    this.name = 'UnknownGroupError';
  }
}

export interface DeletedGroup {
  group: string;
  /** Redis keys the consumer group was destroyed on. */
  destroyedOn: string[];
  leasesDeleted: number;
  /** Live leases deleted under --force. */
  forcedLeases: ConsumerGroupLease[];
  /** Keys of the group still parked (kept; nobody retries them once the group is gone). */
  parkedKeys: number;
}

/**
 * Deletes consumer group `group`: XGROUP DESTROY on every partition stream
 * it exists on, its lease rows, and what consumers recorded for it in Redis
 * (membership, stuck and faulty partitions). Its dead letters, parked keys
 * and processed_event rows stay (history, and what an operator may still
 * replay or release; the inbox is pruned by retention).
 * Refuses (GroupInUseError, nothing changed) while a live consumer holds a
 * lease of the group, unless `force`. Throws UnknownGroupError when there is
 * nothing to delete. Idempotent in effect.
 */
export async function deleteConsumerGroup(
  input: { sql: Sql; redis: RedisClient; keyPrefix: string; status: EventsStatus },
  group: string,
  options: { force?: boolean } = {},
): Promise<DeletedGroup> {
  const summary = summarizeConsumerGroups(input.status).find((g) => g.group === group);
  if (!summary) throw new UnknownGroupError(group);
  const live = summary.leases.filter((l) => l.live);
  if (live.length > 0 && !options.force) throw new GroupInUseError(group, live);
  const destroyedOn: string[] = [];
  for (const partition of summary.partitions) {
    const key = redisStreamKey(partition, input.keyPrefix);
    if (Number(await input.redis.xgroup('DESTROY', key, group)) === 1) destroyedOn.push(key);
  }
  const deleted = await input.sql`DELETE FROM events.stream_lease WHERE role = ${consumerRole(group)} RETURNING 1`;
  await input.redis.del(membersKey(input.keyPrefix, group));
  await input.redis.del(stuckPartitionsKey(input.keyPrefix, group));
  await input.redis.del(partitionFaultsKey(input.keyPrefix, group));
  return { group, destroyedOn, leasesDeleted: deleted.length, forcedLeases: live, parkedKeys: summary.parkedKeys };
}
