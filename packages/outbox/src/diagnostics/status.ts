/**
 * `events status`: one snapshot of the pipeline from Postgres and Redis, per
 * stream, plus the likely cause when something is wrong (see diagnosis.ts).
 * The CLI prints it; the api serves the same object at
 * `GET /v1/admin/events/status`.
 */
import type { RedisClient } from '@petcover/service-kit';
import type { Sql } from '../db';
import { maskUrlPassword } from '@petcover/service-kit';
import { parsePartitionStreamName, partitionStreamNames, redisStreamKey, type StreamPartitions } from '../streams';
import { diagnose, resolveDiagnosisThresholds, type DiagnosisThresholds, type StatusProblem } from './diagnosis';
import {
  eventsSchemaExists,
  selectDatabaseNow,
  selectDeadLetterCounts,
  selectLeases,
  selectOutboxStreams,
  selectParkingSummaries,
  selectRedisPositions,
  type LeaseRow,
  type ParkingSummaryRow,
  type RedisPositionRow,
} from './queries';
import { listNodes, relayNodeTableExists, type NodeStatus } from '../liveness/nodes';
import { listParkedKeys, type ParkedKeyRow } from '../consumer/parked-keys';
import { impossibleLeaseReason } from '../lease/lease';
import { readPartitionFaults, readStuckPartitions } from '../consumer/stuck-partitions';
import { inspectStream, redisNowMs, scanConsumerRecordGroups, scanStreamKeys, type RedisConsumerInfo } from './redis-inspect';

export interface LeaseStatus {
  ownerId: string;
  fencingToken: string;
  leaseUntil: string;
  renewedAt: string;
  expired: boolean;
  /** Seconds until lease_until on the database clock; negative: expired that long ago. */
  expiresInSeconds: number;
  secondsSinceRenewal: number;
  /**
   * Whether the owner still renews: the lease is alive and was renewed within
   * the first three quarters of the TTL it asked for (owners renew well before
   * expiry, so a lease past that point belongs to a stopped or stuck process).
   */
  ownerRenewing: boolean;
  /**
   * The owner's node in events.relay_node: `alive`, `dead` (stopped
   * heartbeating or its process was killed), `unregistered` (no node row: a
   * lease inserted by hand, or an owner from before liveness existed), or
   * `unknown` (the schema has no relay_node table yet).
   */
  owner: 'alive' | 'dead' | 'unregistered' | 'unknown';
  /** Why the row is in a state no owner writes (edited by hand), or null; see impossibleLeaseReason. */
  impossible: string | null;
}

/** One row of events.stream_lease with its owner's liveness. */
export interface LeaseEntry extends LeaseStatus {
  /** Stream or partition stream. */
  stream: string;
  role: string;
}

export interface GroupPartitionStatus {
  /** Partition stream name (the stream itself when it has one partition). */
  partition: string;
  lag: number | null;
  pending: number;
  oldestPendingIdleSeconds: number | null;
  oldestUndeliveredAgeSeconds: number | null;
  lastDeliveredId: string;
  consumers: RedisConsumerInfo[];
  /** The group's lease on this partition in this database (role `consumer:<group>`). */
  lease: LeaseStatus | null;
  /** The entry this partition is stuck on (its dead letter refused even in minimal form), as the consumer recorded it. */
  stuck: { entryId: string; cause: string; ownerId: string; since: string } | null;
}

/** A partition the group cannot use at all (the consumer could not create the group on its key), as the consumer recorded it. */
export interface GroupPartitionFault {
  partition: string;
  redisKey: string;
  cause: string;
  message: string;
  ownerId: string;
  since: string;
}

export interface GroupStatus {
  group: string;
  /** Sum over partitions; null when any partition's lag is unknown. */
  lag: number | null;
  pending: number;
  oldestPendingIdleSeconds: number | null;
  partitions: GroupPartitionStatus[];
  /** Partitions whose key the group cannot use (WRONGTYPE...); they are not consumed. */
  faults: GroupPartitionFault[];
}

export interface PartitionStreamStatus {
  partition: string;
  redisKey: string;
  exists: boolean;
  length: number;
  lastId: string | null;
  /** `outbox_id` of the newest entry in the stream: compare with outbox.lastPublishedId. */
  lastOutboxId: string | null;
  /** The last entry id the publisher recorded in Postgres for this key: Redis's lastId must not be older. */
  recordedEntryId: string | null;
  /** The Redis error the publisher fails with on this key now (WRONGTYPE, script error), and since when. */
  publisherFault: { message: string; since: string } | null;
}

/** Parked keys of one group on one partition stream, counted in full (StreamStatus.parkedKeys lists at most 50). */
export interface PartitionParkingStatus {
  group: string;
  partition: string;
  keys: number;
  halted: number;
  /** Events parked behind the keys, their heads included. */
  parkedEvents: number;
  /**
   * How long ago the earliest retry of a retrying key fell due (database
   * clock); negative: the next retry is due in that many seconds; null: every
   * key is halted.
   */
  mostOverdueSeconds: number | null;
}

export interface DeadLetterCount {
  group: string;
  stream: string;
  type: string | null;
  count: number;
  oldestDeadLetteredAt: string;
}

function publisherFaultOf(row: RedisPositionRow | undefined): PartitionStreamStatus['publisherFault'] {
  if (!row?.fault) return null;
  return { message: row.fault, since: new Date(Number(row.fault_since_ms ?? 0)).toISOString() };
}

export interface StreamStatus {
  stream: string;
  partitionCount: number;
  outbox: {
    unpublished: number;
    oldestUnpublishedAgeSeconds: number | null;
    lastPublishedAt: string | null;
    /** Seconds since lastPublishedAt, on the database clock. */
    lastPublishedAgeSeconds: number | null;
    /** Highest outbox id marked published: Redis must hold an entry at least this new. */
    lastPublishedId: string | null;
  };
  publisherLease: LeaseStatus | null;
  /** Null when Redis could not be reached. */
  redis: PartitionStreamStatus[] | null;
  groups: GroupStatus[];
  deadLetters: DeadLetterCount[];
  /** Keys parked on this stream's partitions (retrying or halted), halted first, then the most overdue; at most 50 per status. */
  parkedKeys: ParkedKeyRow[];
  /** Per group and partition stream with parked keys: how many, and how overdue their retries are. */
  parking: PartitionParkingStatus[];
}

export interface EventsStatus {
  /** Database clock at collection time. */
  checkedAt: string;
  healthy: boolean;
  problems: StatusProblem[];
  database: { ok: boolean; name: string | null; error?: string };
  redis: { ok: boolean; keyPrefix: string; error?: string };
  streams: StreamStatus[];
  /** Every lease (publisher, maintenance, consumer partitions), with its owner's liveness. */
  leases: LeaseEntry[];
  /** Registered processes; null when the schema predates liveness. */
  nodes: NodeStatus[] | null;
}

export interface CollectStatusOptions {
  sql: Sql;
  redis: RedisClient;
  /** Prefix of every Redis stream key (REDIS_KEY_PREFIX); default ''. */
  keyPrefix?: string;
  /** Configured partitions per stream (STREAM_PARTITIONS); more are inferred from leases and Redis keys. */
  partitions?: StreamPartitions;
  /** Only this logical stream. */
  stream?: string;
  /** Overrides of DEFAULT_DIAGNOSIS_THRESHOLDS; an invalid one throws InvalidDiagnosisThresholdsError. */
  thresholds?: Partial<DiagnosisThresholds>;
}

function leaseStatus(row: LeaseRow, nodes: NodeStatus[] | null): LeaseStatus {
  const node = nodes?.find((n) => n.ownerId === row.owner_id);
  const sinceRenewal = Number(row.seconds_since_renewal);
  const grantedTtl = Number(row.granted_ttl_s);
  return {
    ownerId: row.owner_id,
    fencingToken: row.fencing_token,
    leaseUntil: new Date(Number(row.lease_until_ms)).toISOString(),
    renewedAt: new Date(Number(row.renewed_at_ms)).toISOString(),
    expired: row.expired,
    expiresInSeconds: round(Number(row.expires_in_s)),
    secondsSinceRenewal: round(sinceRenewal),
    ownerRenewing: !row.expired && sinceRenewal <= grantedTtl * 0.75,
    owner: nodes === null ? 'unknown' : !node ? 'unregistered' : node.alive ? 'alive' : 'dead',
    impossible: impossibleLeaseReason({ ownerId: row.owner_id, fencingToken: row.fencing_token }),
  };
}

async function selectNodesIfPresent(sql: Sql): Promise<NodeStatus[] | null> {
  return (await relayNodeTableExists(sql)) ? listNodes(sql) : null;
}

function leaseEntries(rows: LeaseRow[], nodes: NodeStatus[] | null): LeaseEntry[] {
  return rows.map((row) => ({ stream: row.stream_name, role: row.role, ...leaseStatus(row, nodes) }));
}

/**
 * Parked keys (halted first, then the most overdue) and their counts per
 * partition, or none before the migration that added parking.
 */
async function selectParkingIfPresent(sql: Sql, stream: string | undefined): Promise<{ keys: ParkedKeyRow[]; summaries: ParkingSummaryRow[] }> {
  const [table] = await sql<{ present: boolean }[]>`SELECT to_regclass('events.parked_key') IS NOT NULL AS present`;
  if (!table?.present) return { keys: [], summaries: [] };
  const [keys, summaries] = await Promise.all([listParkedKeys(sql, { stream, limit: 50 }), selectParkingSummaries(sql, stream)]);
  return { keys, summaries };
}

/**
 * Nodes and every lease with its owner's liveness, from Postgres alone
 * (`events nodes`, the console's Nodes page). Read-only.
 */
export async function collectNodesAndLeases(sql: Sql): Promise<{ nodes: NodeStatus[] | null; leases: LeaseEntry[] }> {
  const [rows, nodes] = await Promise.all([selectLeases(sql), selectNodesIfPresent(sql)]);
  return { nodes, leases: leaseEntries(rows, nodes) };
}

function round(value: number): number {
  return Math.round(value * 10) / 10;
}

function describeError(error: unknown): string {
  return maskUrlPassword((error as Error)?.message || String(error));
}

/**
 * Collects the status. Never throws for an unreachable database or Redis:
 * that is reported as a problem, since it is what the on-call person needs
 * to read. Throws InvalidDiagnosisThresholdsError, before any query, for an
 * invalid `thresholds` option. Read-only.
 */
export async function collectEventsStatus(options: CollectStatusOptions): Promise<EventsStatus> {
  const keyPrefix = options.keyPrefix ?? '';
  const thresholds = resolveDiagnosisThresholds(options.thresholds);
  const status: EventsStatus = {
    checkedAt: new Date().toISOString(),
    healthy: false,
    problems: [],
    database: { ok: false, name: null },
    redis: { ok: false, keyPrefix },
    streams: [],
    leases: [],
    nodes: null,
  };

  const { sql } = options;
  try {
    const clock = await selectDatabaseNow(sql);
    status.checkedAt = clock.now;
    status.database = { ok: true, name: clock.database };
  } catch (error) {
    status.database.error = describeError(error);
    status.problems = diagnose(status, thresholds);
    return status;
  }
  if (!(await eventsSchemaExists(sql))) {
    status.database = { ...status.database, ok: false, error: `database ${status.database.name} has no events schema` };
    status.problems = diagnose(status, thresholds);
    return status;
  }

  const [outboxRows, leaseRows, deadLetterRows, nodes, positionRows, parking] = await Promise.all([
    selectOutboxStreams(sql, options.stream),
    selectLeases(sql),
    selectDeadLetterCounts(sql),
    selectNodesIfPresent(sql),
    selectRedisPositions(sql),
    selectParkingIfPresent(sql, options.stream),
  ]);
  const parkedKeyRows = parking.keys;
  const positions = new Map(positionRows.map((r) => [r.redis_key, r]));
  status.nodes = nodes;
  status.leases = leaseEntries(leaseRows, nodes).filter(
    (lease) => options.stream === undefined || parsePartitionStreamName(lease.stream)?.stream === options.stream,
  );

  let redisKeys: string[] = [];
  let redisNow = 0;
  // What consumers recorded for status, per group: faulty partitions (no group on the key) and stuck entries.
  const faultsByGroup = new Map<string, GroupPartitionFault[]>();
  const stuckByGroup = new Map<string, Map<string, GroupPartitionStatus['stuck']>>();
  try {
    redisNow = await redisNowMs(options.redis);
    redisKeys = await scanStreamKeys(options.redis, keyPrefix);
    for (const group of await scanConsumerRecordGroups(options.redis, keyPrefix)) {
      const faults = await readPartitionFaults(options.redis, keyPrefix, group);
      if (faults.length > 0) faultsByGroup.set(group, faults.map(({ partitionStream, ...f }) => ({ partition: partitionStream, ...f })));
      const stuck = await readStuckPartitions(options.redis, keyPrefix, group);
      if (stuck.length > 0) stuckByGroup.set(group, new Map(stuck.map(({ partitionStream, ...rest }) => [partitionStream, rest])));
    }
    status.redis.ok = true;
  } catch (error) {
    status.redis.error = describeError(error);
  }

  // Which logical streams exist, and how many partitions each has: configured,
  // or the highest partition index seen in a lease or a Redis key.
  const partitionCounts = new Map<string, number>();
  const noteStream = (name: string) => {
    const parsed = parsePartitionStreamName(name);
    if (!parsed) return;
    const seen = parsed.partition === null ? 1 : parsed.partition + 1;
    partitionCounts.set(parsed.stream, Math.max(partitionCounts.get(parsed.stream) ?? 1, seen));
  };
  for (const row of outboxRows) noteStream(row.stream_name);
  // A maintenance lease (outbox prune, inbox retention) names a job, not a stream.
  for (const row of leaseRows) if (row.role !== 'maintenance') noteStream(row.stream_name);
  for (const row of deadLetterRows) noteStream(row.stream_name);
  for (const row of parking.summaries) noteStream(row.stream_name);
  for (const key of redisKeys) noteStream(key);
  // A partition only a consumer's record names (its key is not a stream, so SCAN TYPE stream misses it).
  for (const faults of faultsByGroup.values()) for (const f of faults) noteStream(f.partition);
  for (const stuck of stuckByGroup.values()) for (const partition of stuck.keys()) noteStream(partition);
  for (const [stream, count] of Object.entries(options.partitions ?? {})) {
    if (partitionCounts.has(stream)) partitionCounts.set(stream, Math.max(partitionCounts.get(stream)!, count));
  }
  if (options.stream !== undefined) {
    const count = partitionCounts.get(options.stream) ?? options.partitions?.[options.stream] ?? 1;
    partitionCounts.clear();
    partitionCounts.set(options.stream, count);
  }

  for (const [stream, count] of [...partitionCounts.entries()].sort(([a], [b]) => a.localeCompare(b))) {
    const outboxRow = outboxRows.find((r) => r.stream_name === stream);
    const publisherRow = leaseRows.find((r) => r.stream_name === stream && r.role === 'publisher');
    const partitionNames = partitionStreamNames(stream, count);
    const streamStatus: StreamStatus = {
      stream,
      partitionCount: count,
      outbox: {
        unpublished: Number(outboxRow?.unpublished ?? 0),
        oldestUnpublishedAgeSeconds:
          outboxRow?.oldest_unpublished_age_s == null ? null : round(Number(outboxRow.oldest_unpublished_age_s)),
        lastPublishedAt: outboxRow?.last_published_ms == null ? null : new Date(Number(outboxRow.last_published_ms)).toISOString(),
        lastPublishedAgeSeconds: outboxRow?.last_published_age_s == null ? null : round(Number(outboxRow.last_published_age_s)),
        lastPublishedId: outboxRow?.last_published_id ?? null,
      },
      publisherLease: publisherRow ? leaseStatus(publisherRow, nodes) : null,
      redis: null,
      groups: [],
      deadLetters: deadLetterRows
        .filter((r) => parsePartitionStreamName(r.stream_name)?.stream === stream)
        .map((r) => ({
          group: r.group_name,
          stream: r.stream_name,
          type: r.event_type,
          count: Number(r.count),
          oldestDeadLetteredAt: new Date(Number(r.oldest_dead_lettered_ms)).toISOString(),
        })),
      parkedKeys: parkedKeyRows.filter((r) => parsePartitionStreamName(r.stream)?.stream === stream),
      parking: parking.summaries
        .filter((r) => parsePartitionStreamName(r.stream_name)?.stream === stream)
        .map((r) => ({
          group: r.group_name,
          partition: r.stream_name,
          keys: r.keys,
          halted: r.halted,
          parkedEvents: r.parked_events,
          mostOverdueSeconds: r.most_overdue_s === null ? null : round(r.most_overdue_s),
        })),
    };

    const groups = new Map<string, GroupStatus>();
    const groupFor = (name: string): GroupStatus => {
      let group = groups.get(name);
      if (!group) {
        group = { group: name, lag: 0, pending: 0, oldestPendingIdleSeconds: null, partitions: [], faults: [] };
        groups.set(name, group);
      }
      return group;
    };
    const consumerLease = (group: string, partition: string) => {
      const row = leaseRows.find((r) => r.stream_name === partition && r.role === `consumer:${group}`);
      return row ? leaseStatus(row, nodes) : null;
    };

    if (status.redis.ok) {
      streamStatus.redis = [];
      for (const partition of partitionNames) {
        const key = redisStreamKey(partition, keyPrefix);
        try {
          const info = await inspectStream(options.redis, key, redisNow);
          streamStatus.redis.push({
            partition,
            redisKey: key,
            exists: info.exists,
            length: info.length,
            lastId: info.lastGeneratedId,
            lastOutboxId: info.lastOutboxId,
            recordedEntryId: positions.get(key)?.last_entry_id ?? null,
            publisherFault: publisherFaultOf(positions.get(key)),
          });
          for (const g of info.groups) {
            const group = groupFor(g.name);
            group.partitions.push({
              partition,
              lag: g.lag,
              pending: g.pending,
              oldestPendingIdleSeconds: g.oldestPendingIdleSeconds === null ? null : round(g.oldestPendingIdleSeconds),
              oldestUndeliveredAgeSeconds: g.oldestUndeliveredAgeSeconds === null ? null : round(g.oldestUndeliveredAgeSeconds),
              lastDeliveredId: g.lastDeliveredId,
              consumers: g.consumers.map((c) => ({ ...c, idleSeconds: round(c.idleSeconds) })),
              lease: consumerLease(g.name, partition),
              stuck: stuckByGroup.get(g.name)?.get(partition) ?? null,
            });
          }
        } catch (error) {
          if (/^WRONGTYPE/.test((error as Error).message ?? '')) {
            // Something else owns this key: this partition's problem, not Redis being unreachable.
            const type = await options.redis.type(key).catch(() => 'unknown');
            streamStatus.redis.push({
              partition,
              redisKey: key,
              exists: true,
              length: 0,
              lastId: null,
              lastOutboxId: null,
              recordedEntryId: positions.get(key)?.last_entry_id ?? null,
              publisherFault: publisherFaultOf(positions.get(key)) ?? { message: `WRONGTYPE: ${key} holds a ${type}, not a stream`, since: status.checkedAt },
            });
            continue;
          }
          status.redis = { ...status.redis, ok: false, error: describeError(error) };
          streamStatus.redis = null;
          break;
        }
      }
    }
    // Groups known only from their leases in this database (their Redis side is missing).
    for (const row of leaseRows) {
      if (!row.role.startsWith('consumer:') || !partitionNames.includes(row.stream_name)) continue;
      const group = groupFor(row.role.slice('consumer:'.length));
      if (group.partitions.some((p) => p.partition === row.stream_name)) continue;
      group.partitions.push({
        partition: row.stream_name,
        lag: null,
        pending: 0,
        oldestPendingIdleSeconds: null,
        oldestUndeliveredAgeSeconds: null,
        lastDeliveredId: '',
        consumers: [],
        lease: leaseStatus(row, nodes),
        stuck: stuckByGroup.get(row.role.slice('consumer:'.length))?.get(row.stream_name) ?? null,
      });
    }
    // Partitions a group could not be created on (it has no Redis side there to inspect).
    for (const [name, faults] of faultsByGroup) {
      const own = faults.filter((f) => partitionNames.includes(f.partition));
      if (own.length > 0) groupFor(name).faults.push(...own);
    }
    for (const group of groups.values()) {
      group.partitions.sort((a, b) => a.partition.localeCompare(b.partition, undefined, { numeric: true }));
      group.lag = group.partitions.some((p) => p.lag === null) ? null : group.partitions.reduce((n, p) => n + (p.lag ?? 0), 0);
      group.pending = group.partitions.reduce((n, p) => n + p.pending, 0);
      const idles = group.partitions.map((p) => p.oldestPendingIdleSeconds).filter((v): v is number => v !== null);
      group.oldestPendingIdleSeconds = idles.length > 0 ? Math.max(...idles) : null;
    }
    streamStatus.groups = [...groups.values()].sort((a, b) => a.group.localeCompare(b.group));
    status.streams.push(streamStatus);
  }

  status.problems = diagnose(status, thresholds);
  status.healthy = status.problems.length === 0;
  return status;
}
