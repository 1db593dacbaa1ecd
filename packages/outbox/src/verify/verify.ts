/**
 * `verifyPipeline`: reconciles the outbox with the consumer side.
 *
 * For every outbox event in the window and every consumer group that
 * subscribes to its stream, the event must be either handled exactly once
 * (`events.processed_event`) or accounted for as a dead letter. When the
 * handled-order log (`chaos.handled`, see handled-log.ts) is present, it also
 * checks that no effect was applied twice and that the events of one
 * partition key were handled in outbox order.
 *
 * Read-only: it never writes. Outbox rows pruned by the publisher's retention
 * are invisible to it, so keep the window inside the retention period.
 */
import { scanKeys, type RedisClient } from '@petcover/service-kit';
import type { Sql } from '../db';
import { escapeRedisGlob, parsePartitionStreamName, partitionStreamOfKey, redisStreamKey } from '../streams';
import { handledLogExists } from './handled-log';

/** One consumer group reading one logical stream, and how we learnt it. */
export interface Subscription {
  group: string;
  stream: string;
  source: SubscriptionSource;
}

export type SubscriptionSource = 'option' | 'consumer-lease' | 'redis-group' | 'processed-event' | 'dead-letter';

export interface VerifyOptions {
  /** Only outbox events created at or after this instant. */
  since?: Date;
  /** Only outbox events created at or before this instant. */
  until?: Date;
  /** Only this consumer group. */
  group?: string;
  /**
   * Known subscriptions. When given they are the whole truth (nothing is
   * discovered); otherwise they are discovered from consumer lease rows, the
   * groups of the Redis streams (when `redis` is passed), processed events
   * and dead letters.
   */
  subscriptions?: ReadonlyArray<{ group: string; stream: string }>;
  /** Redis key prefix of the streams (for discovery of groups in Redis). */
  keyPrefix?: string;
  /** How many examples of each defect to return; default 10. */
  exampleLimit?: number;
}

export interface EventRef {
  group: string;
  eventId: string;
  outboxId: string;
  stream: string;
  partitionKey: string;
  eventType: string;
}

export interface MissingExample extends EventRef {
  /** Whether the publisher marked it published (false: still in the outbox queue). */
  published: boolean;
}

export interface DoubledExample {
  group: string;
  eventId: string;
  /** How many times its effect was recorded. */
  times: number;
}

export interface OutOfOrderExample extends EventRef {
  /** A later outbox event of the same partition key that was handled before this one. */
  handledAfterOutboxId: string;
}

export interface DeadLetterExample extends EventRef {
  status: 'dead' | 'discarded';
  errorMessage: string;
  attempts: number;
}

export interface GroupTally {
  group: string;
  streams: string[];
  /** Events this group should have handled (in-window events of its streams). */
  expected: number;
  processed: number;
  missing: number;
  doubled: number;
  outOfOrder: number;
  /** Distinct events with a dead letter in status `dead` and no processed row. */
  deadLettered: number;
  /** Distinct events whose dead letter was discarded by an operator. */
  discarded: number;
}

export interface VerifyReport {
  since: Date | null;
  until: Date | null;
  subscriptions: Subscription[];
  /** Outbox events in the window (every stream). */
  events: number;
  /** Of those, not yet published to Redis. */
  unpublished: number;
  /** Of those, on streams no known group subscribes to. */
  unsubscribed: number;
  /** Sum over groups of events to handle. */
  expected: number;
  processed: number;
  /** Neither processed nor dead-lettered by a subscribing group. */
  missing: number;
  /** Effects applied more than once (extra applications; needs the handled log). */
  doubled: number;
  /** Events handled before an earlier event of the same partition key (needs the handled log). */
  outOfOrder: number;
  deadLettered: number;
  discarded: number;
  /** Events both processed and left as a `dead` dead letter by the same group: an inconsistency to look at. */
  deadLetteredButProcessed: number;
  /** Whether the handled-order log was found; without it doubled and out-of-order are not checked. */
  handledLogChecked: boolean;
  groups: GroupTally[];
  examples: {
    missing: MissingExample[];
    doubled: DoubledExample[];
    outOfOrder: OutOfOrderExample[];
    deadLettered: DeadLetterExample[];
  };
  /** True only when missing = doubled = out-of-order = 0. */
  ok: boolean;
}

const DEFAULT_EXAMPLE_LIMIT = 10;

/**
 * Reconciles outbox and consumers; see the file header. Read-only; runs a
 * handful of queries over the window, each bounded by the window's size.
 */
export async function verifyPipeline(sql: Sql, redis: RedisClient | null | undefined, options: VerifyOptions = {}): Promise<VerifyReport> {
  const since = options.since ? options.since.toISOString() : null;
  const until = options.until ? options.until.toISOString() : null;
  const limit = options.exampleLimit ?? DEFAULT_EXAMPLE_LIMIT;

  const windowStreams = (
    await sql<{ stream_name: string }[]>`
      SELECT DISTINCT stream_name FROM events.outbox_event
      WHERE (${since}::timestamptz IS NULL OR created_at >= ${since}::timestamptz)
        AND (${until}::timestamptz IS NULL OR created_at <= ${until}::timestamptz)`
  ).map((r) => r.stream_name);

  let subscriptions = options.subscriptions
    ? options.subscriptions.map((s) => ({ group: s.group, stream: s.stream, source: 'option' as const }))
    : await discoverSubscriptions(sql, redis ?? null, windowStreams, options.keyPrefix ?? '', { since: options.since, until: options.until });
  if (options.group !== undefined) subscriptions = subscriptions.filter((s) => s.group === options.group);

  const groupsArray = sql.array(subscriptions.map((s) => s.group));
  const streamsArray = sql.array(subscriptions.map((s) => s.stream));

  const [totals] = await sql<{ events: string; unpublished: string; unsubscribed: string }[]>`
    SELECT count(*) AS events,
           count(*) FILTER (WHERE o.published_at IS NULL) AS unpublished,
           count(*) FILTER (WHERE NOT (o.stream_name = ANY(${streamsArray}::text[]))) AS unsubscribed
    FROM events.outbox_event o
    WHERE (${since}::timestamptz IS NULL OR o.created_at >= ${since}::timestamptz)
      AND (${until}::timestamptz IS NULL OR o.created_at <= ${until}::timestamptz)`;

  // One row per (subscribing group, in-window event) with what became of it.
  const expectedCte = sql`
    WITH subs AS (
      SELECT DISTINCT group_name, stream_name FROM unnest(${groupsArray}::text[], ${streamsArray}::text[]) AS s(group_name, stream_name)
    ), expected AS (
      SELECT s.group_name, o.id, o.event_id, o.stream_name, o.partition_key, o.event_type, o.published_at,
             EXISTS (SELECT 1 FROM events.processed_event p WHERE p.group_name = s.group_name AND p.event_id = o.event_id) AS processed,
             EXISTS (SELECT 1 FROM events.dead_letter d WHERE d.group_name = s.group_name AND d.event_id = o.event_id AND d.status = 'dead') AS dead,
             EXISTS (SELECT 1 FROM events.dead_letter d WHERE d.group_name = s.group_name AND d.event_id = o.event_id AND d.status = 'discarded') AS discarded
      FROM events.outbox_event o JOIN subs s ON s.stream_name = o.stream_name
      WHERE (${since}::timestamptz IS NULL OR o.created_at >= ${since}::timestamptz)
        AND (${until}::timestamptz IS NULL OR o.created_at <= ${until}::timestamptz)
    )`;

  const tallies = await sql<
    { group_name: string; expected: string; processed: string; missing: string; dead: string; discarded: string; dead_and_processed: string }[]
  >`
    ${expectedCte}
    SELECT group_name,
           count(*) AS expected,
           count(*) FILTER (WHERE processed) AS processed,
           count(*) FILTER (WHERE NOT processed AND NOT dead AND NOT discarded) AS missing,
           count(*) FILTER (WHERE dead AND NOT processed) AS dead,
           count(*) FILTER (WHERE discarded AND NOT dead AND NOT processed) AS discarded,
           count(*) FILTER (WHERE dead AND processed) AS dead_and_processed
    FROM expected GROUP BY group_name`;

  const missingRows = await sql<
    { group_name: string; id: string; event_id: string; stream_name: string; partition_key: string; event_type: string; published: boolean }[]
  >`
    ${expectedCte}
    SELECT group_name, id::text AS id, event_id, stream_name, partition_key, event_type, published_at IS NOT NULL AS published
    FROM expected WHERE NOT processed AND NOT dead AND NOT discarded
    ORDER BY id, group_name LIMIT ${limit}`;

  const deadRows = await sql<
    {
      group_name: string;
      id: string;
      event_id: string;
      stream_name: string;
      partition_key: string;
      event_type: string;
      status: 'dead' | 'discarded';
      error_message: string;
      attempts: number;
    }[]
  >`
    ${expectedCte}
    SELECT DISTINCT ON (e.id, e.group_name) e.group_name, e.id::text AS id, e.event_id, e.stream_name, e.partition_key, e.event_type,
           d.status, d.error_message, d.attempts
    FROM expected e JOIN events.dead_letter d ON d.group_name = e.group_name AND d.event_id = e.event_id AND d.status IN ('dead', 'discarded')
    WHERE NOT e.processed
    ORDER BY e.id, e.group_name, d.dead_lettered_at DESC LIMIT ${limit}`;

  const handledLogChecked = await handledLogExists(sql);
  const doubledByGroup = new Map<string, number>();
  const outOfOrderByGroup = new Map<string, number>();
  const doubledExamples: DoubledExample[] = [];
  const outOfOrderExamples: OutOfOrderExample[] = [];
  if (handledLogChecked) {
    const doubled = await sql<{ group_name: string; event_id: string; times: number }[]>`
      ${expectedCte}
      SELECT h.group_name, h.event_id, count(*)::int AS times
      FROM chaos.handled h
      JOIN expected e ON e.group_name = h.group_name AND e.event_id = h.event_id
      GROUP BY h.group_name, h.event_id HAVING count(*) > 1
      ORDER BY min(h.id)`;
    for (const row of doubled) {
      doubledByGroup.set(row.group_name, (doubledByGroup.get(row.group_name) ?? 0) + row.times - 1);
      if (doubledExamples.length < limit) doubledExamples.push({ group: row.group_name, eventId: row.event_id, times: row.times });
    }

    // First handling of each event (a repeat is a doubled effect, not an order
    // violation); an event is out of order when a later outbox event of the
    // same stream and partition key was handled before it.
    const outOfOrder = await sql<
      { group_name: string; id: string; event_id: string; stream_name: string; partition_key: string; event_type: string; max_before: string }[]
    >`
      ${expectedCte},
      firsts AS (
        SELECT DISTINCT ON (h.group_name, h.event_id)
               h.id AS handled_id, h.group_name, h.event_id, e.id, e.stream_name, e.partition_key, e.event_type
        FROM chaos.handled h
        JOIN expected e ON e.group_name = h.group_name AND e.event_id = h.event_id
        ORDER BY h.group_name, h.event_id, h.id
      ), ranked AS (
        SELECT *, max(id) OVER (PARTITION BY group_name, stream_name, partition_key ORDER BY handled_id
                                ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING) AS max_before
        FROM firsts
      )
      SELECT group_name, id::text AS id, event_id, stream_name, partition_key, event_type, max_before::text AS max_before
      FROM ranked WHERE id < max_before ORDER BY handled_id`;
    for (const row of outOfOrder) {
      outOfOrderByGroup.set(row.group_name, (outOfOrderByGroup.get(row.group_name) ?? 0) + 1);
      if (outOfOrderExamples.length < limit) {
        outOfOrderExamples.push({
          group: row.group_name,
          eventId: row.event_id,
          outboxId: row.id,
          stream: row.stream_name,
          partitionKey: row.partition_key,
          eventType: row.event_type,
          handledAfterOutboxId: row.max_before,
        });
      }
    }
  }

  const streamsByGroup = new Map<string, Set<string>>();
  for (const s of subscriptions) {
    const set = streamsByGroup.get(s.group) ?? new Set<string>();
    set.add(s.stream);
    streamsByGroup.set(s.group, set);
  }
  const tallyByGroup = new Map(tallies.map((t) => [t.group_name, t]));
  const groups: GroupTally[] = [...streamsByGroup.keys()].sort().map((group) => {
    const t = tallyByGroup.get(group);
    return {
      group,
      streams: [...(streamsByGroup.get(group) ?? [])].sort(),
      expected: Number(t?.expected ?? 0),
      processed: Number(t?.processed ?? 0),
      missing: Number(t?.missing ?? 0),
      doubled: doubledByGroup.get(group) ?? 0,
      outOfOrder: outOfOrderByGroup.get(group) ?? 0,
      deadLettered: Number(t?.dead ?? 0),
      discarded: Number(t?.discarded ?? 0),
    };
  });
  const sum = (pick: (g: GroupTally) => number) => groups.reduce((acc, g) => acc + pick(g), 0);
  const missing = sum((g) => g.missing);
  const doubled = sum((g) => g.doubled);
  const outOfOrder = sum((g) => g.outOfOrder);

  return {
    since: options.since ?? null,
    until: options.until ?? null,
    subscriptions,
    events: Number(totals?.events ?? 0),
    unpublished: Number(totals?.unpublished ?? 0),
    unsubscribed: Number(totals?.unsubscribed ?? 0),
    expected: sum((g) => g.expected),
    processed: sum((g) => g.processed),
    missing,
    doubled,
    outOfOrder,
    deadLettered: sum((g) => g.deadLettered),
    discarded: sum((g) => g.discarded),
    deadLetteredButProcessed: tallies.reduce((acc, t) => acc + Number(t.dead_and_processed), 0),
    handledLogChecked,
    groups,
    examples: {
      missing: missingRows.map((r) => ({
        group: r.group_name,
        eventId: r.event_id,
        outboxId: r.id,
        stream: r.stream_name,
        partitionKey: r.partition_key,
        eventType: r.event_type,
        published: r.published,
      })),
      doubled: doubledExamples,
      outOfOrder: outOfOrderExamples,
      deadLettered: deadRows.map((r) => ({
        group: r.group_name,
        eventId: r.event_id,
        outboxId: r.id,
        stream: r.stream_name,
        partitionKey: r.partition_key,
        eventType: r.event_type,
        status: r.status,
        errorMessage: r.error_message,
        attempts: r.attempts,
      })),
    },
    ok: missing === 0 && doubled === 0 && outOfOrder === 0,
  };
}

/**
 * Which groups read which streams, from every trace a group leaves: its
 * partition leases, its Redis consumer groups, its processed events and its
 * dead letters (processed events only within the window, so the join stays
 * the window's size). A group that never ran leaves no trace; pass
 * `subscriptions` when the expected set is known.
 */
export async function discoverSubscriptions(
  sql: Sql,
  redis: RedisClient | null,
  streams: readonly string[],
  keyPrefix: string,
  window: { since?: Date; until?: Date } = {},
): Promise<Subscription[]> {
  const since = window.since ? window.since.toISOString() : null;
  const until = window.until ? window.until.toISOString() : null;
  const found = new Map<string, Subscription>();
  const add = (group: string, stream: string | undefined, source: SubscriptionSource) => {
    if (stream === undefined) return; // a hand-edited lease or dead-letter row naming no stream
    const key = `${group}\u0000${stream}`;
    if (!found.has(key)) found.set(key, { group, stream, source });
  };

  const leases = await sql<{ group_name: string; stream_name: string }[]>`
    SELECT DISTINCT substr(role, length('consumer:') + 1) AS group_name, stream_name
    FROM events.stream_lease WHERE role LIKE 'consumer:%'`;
  for (const r of leases) add(r.group_name, parsePartitionStreamName(r.stream_name)?.stream, 'consumer-lease');

  if (redis) {
    for (const stream of streams) {
      for (const key of await streamKeys(redis, stream, keyPrefix)) {
        let groups: unknown[];
        try {
          groups = (await redis.xinfo('GROUPS', key)) as unknown[];
        } catch {
          continue; // not a stream (or gone since SCAN)
        }
        for (const g of groups) {
          const fields = g as unknown[];
          const nameIndex = fields.indexOf('name');
          if (nameIndex >= 0) add(String(fields[nameIndex + 1]), stream, 'redis-group');
        }
      }
    }
  }

  const processed = await sql<{ group_name: string; stream_name: string }[]>`
    SELECT DISTINCT p.group_name, o.stream_name
    FROM events.processed_event p JOIN events.outbox_event o ON o.event_id = p.event_id
    WHERE (${since}::timestamptz IS NULL OR o.created_at >= ${since}::timestamptz)
      AND (${until}::timestamptz IS NULL OR o.created_at <= ${until}::timestamptz)`;
  for (const r of processed) add(r.group_name, r.stream_name, 'processed-event');

  const dead = await sql<{ group_name: string; stream_name: string }[]>`
    SELECT DISTINCT group_name, stream_name FROM events.dead_letter`;
  for (const r of dead) add(r.group_name, parsePartitionStreamName(r.stream_name)?.stream, 'dead-letter');

  return [...found.values()].sort((a, b) => a.group.localeCompare(b.group) || a.stream.localeCompare(b.stream));
}

/**
 * Redis keys of a logical stream and its partitions (`<prefix><stream>`,
 * `<prefix><stream>:p<N>`), on every master of a cluster; verify does not
 * know the partition counts.
 */
async function streamKeys(redis: RedisClient, stream: string, keyPrefix: string): Promise<string[]> {
  const base = redisStreamKey(stream, keyPrefix);
  const keys = new Set<string>();
  if ((await redis.exists(base)) === 1) keys.add(base);
  for await (const { keys: batch } of scanKeys(redis, `${escapeRedisGlob(base)}:p*`)) {
    for (const key of batch) {
      const name = partitionStreamOfKey(key, keyPrefix);
      if (name !== null && parsePartitionStreamName(name)?.stream === stream) keys.add(key);
    }
  }
  return [...keys];
}
