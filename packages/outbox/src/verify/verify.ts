/**
 * `verifyPipeline`: reconciles the outbox with the consumer side.
 *
 * For every outbox event in the window and every consumer group that
 * subscribes to its stream AND handles its type, the event must be either
 * handled exactly once (`events.processed_event`) or accounted for as a dead
 * letter. A group acknowledges events of types it has no handler for without
 * recording them; those are counted as skipped, never as missing. Which types
 * a group handles it is told (`subscriptions[].eventTypes`, `handledTypes`,
 * `events verify --handles`), or verify infers them from what the group
 * processed in the window or dead-lettered.
 *
 * When the handled-order log (`chaos.handled`, see handled-log.ts) is present,
 * it also checks that no effect was applied twice and that the events of one
 * stream and partition key were handled in OUTBOX-ID order. That is the order
 * the pipeline keeps when producers serialise the writes of one entity (lock
 * its row before `enqueue`, as every domain service does): then a key's id
 * order is its commit order. A producer that does not, and commits a lower id
 * after a higher one was published, gets that event delivered after the
 * higher one, and verify reports it as out of order: the producer broke
 * `enqueue`'s ordering contract.
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
  /** Event types of the stream the group handles, sorted; null: every type. */
  eventTypes: string[] | null;
  /** How `eventTypes` was learnt: told by the caller, inferred from what the group handled, or none (every type). */
  eventTypesSource: 'told' | 'inferred' | 'all';
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
  subscriptions?: ReadonlyArray<{ group: string; stream: string; eventTypes?: readonly string[] }>;
  /**
   * Event types each group handles (e.g. its handler registry's types), for
   * every stream it reads. Events of other types are skipped, not missing.
   * Groups not listed: a subscription's own `eventTypes`; else, for
   * discovered subscriptions, the types the group processed in the window or
   * dead-lettered (every type when it handled none); else every type.
   */
  handledTypes?: Readonly<Record<string, readonly string[]>>;
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
  /** Events of its streams whose type the group does not handle (acknowledged, not handled, not missing). */
  skipped: number;
  /** Skipped events per type, most first. */
  skippedTypes: Array<{ type: string; events: number }>;
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
  /** Sum over groups of events of types the group does not handle. */
  skipped: number;
  processed: number;
  /** Neither processed nor dead-lettered by a subscribing group. */
  missing: number;
  /** Effects applied more than once (extra applications; needs the handled log). */
  doubled: number;
  /** Events handled before an earlier event of the same partition key (needs the handled log). */
  outOfOrder: number;
  deadLettered: number;
  discarded: number;
  /** Events applied (in the handled log) and yet left as a `dead` dead letter by the same group: an inconsistency to look at. */
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

  let subscriptions: Subscription[] = options.subscriptions
    ? options.subscriptions.map((s) => ({
        group: s.group,
        stream: s.stream,
        source: 'option' as const,
        eventTypes: s.eventTypes ? [...new Set(s.eventTypes)].sort() : null,
        eventTypesSource: s.eventTypes ? ('told' as const) : ('all' as const),
      }))
    : await discoverSubscriptions(sql, redis ?? null, windowStreams, options.keyPrefix ?? '', { since: options.since, until: options.until });
  if (options.group !== undefined) subscriptions = subscriptions.filter((s) => s.group === options.group);
  subscriptions = await withHandledTypes(sql, subscriptions, options.handledTypes ?? {}, !options.subscriptions, { since, until });

  // One row per (group, stream, handled type); '' stands for "every type".
  const typeRows = subscriptions.flatMap((s) => (s.eventTypes ?? ['']).map((type) => ({ group: s.group, stream: s.stream, type })));
  const groupsArray = sql.array(typeRows.map((r) => r.group));
  const streamsArray = sql.array(typeRows.map((r) => r.stream));
  const typesArray = sql.array(typeRows.map((r) => r.type));
  const subsCte = sql`
    subs AS (
      SELECT DISTINCT group_name, stream_name, NULLIF(event_type, '') AS event_type
      FROM unnest(${groupsArray}::text[], ${streamsArray}::text[], ${typesArray}::text[]) AS s(group_name, stream_name, event_type)
    )`;

  const [totals] = await sql<{ events: string; unpublished: string; unsubscribed: string }[]>`
    SELECT count(*) AS events,
           count(*) FILTER (WHERE o.published_at IS NULL) AS unpublished,
           count(*) FILTER (WHERE NOT (o.stream_name = ANY(${streamsArray}::text[]))) AS unsubscribed
    FROM events.outbox_event o
    WHERE (${since}::timestamptz IS NULL OR o.created_at >= ${since}::timestamptz)
      AND (${until}::timestamptz IS NULL OR o.created_at <= ${until}::timestamptz)`;

  // One row per (subscribing group, in-window event of a type it handles) with what became of it.
  const expectedCte = sql`
    WITH ${subsCte}, expected AS (
      SELECT s.group_name, o.id, o.event_id, o.stream_name, o.partition_key, o.event_type, o.published_at,
             -- The inbox row is also written when an event is parked (it has not run yet) and with its
             -- dead letter (exactly once around dead letters): neither is processed.
             EXISTS (SELECT 1 FROM events.processed_event p WHERE p.group_name = s.group_name AND p.event_id = o.event_id)
               AND NOT EXISTS (SELECT 1 FROM events.parked_event pe WHERE pe.group_name = s.group_name AND pe.event_id = o.event_id)
               AND NOT EXISTS (SELECT 1 FROM events.dead_letter d WHERE d.group_name = s.group_name AND d.event_id = o.event_id
                                                              AND d.status IN ('dead', 'discarded')) AS processed,
             EXISTS (SELECT 1 FROM events.dead_letter d WHERE d.group_name = s.group_name AND d.event_id = o.event_id AND d.status = 'dead') AS dead,
             EXISTS (SELECT 1 FROM events.dead_letter d WHERE d.group_name = s.group_name AND d.event_id = o.event_id AND d.status = 'discarded') AS discarded
      FROM events.outbox_event o
      JOIN subs s ON s.stream_name = o.stream_name AND (s.event_type IS NULL OR s.event_type = o.event_type)
      WHERE (${since}::timestamptz IS NULL OR o.created_at >= ${since}::timestamptz)
        AND (${until}::timestamptz IS NULL OR o.created_at <= ${until}::timestamptz)
    )`;

  // In-window events of a group's streams whose type it does not handle.
  const skippedRows = await sql<{ group_name: string; event_type: string; events: number }[]>`
    WITH ${subsCte}, subscribed AS (SELECT DISTINCT group_name, stream_name FROM subs)
    SELECT st.group_name, o.event_type, count(*)::int AS events
    FROM events.outbox_event o JOIN subscribed st ON st.stream_name = o.stream_name
    WHERE (${since}::timestamptz IS NULL OR o.created_at >= ${since}::timestamptz)
      AND (${until}::timestamptz IS NULL OR o.created_at <= ${until}::timestamptz)
      AND NOT EXISTS (SELECT 1 FROM subs s WHERE s.group_name = st.group_name AND s.stream_name = o.stream_name
                                              AND (s.event_type IS NULL OR s.event_type = o.event_type))
    GROUP BY st.group_name, o.event_type
    ORDER BY st.group_name, count(*) DESC, o.event_type`;
  const skippedByGroup = new Map<string, Array<{ type: string; events: number }>>();
  for (const r of skippedRows) {
    const list = skippedByGroup.get(r.group_name) ?? [];
    list.push({ type: r.event_type, events: r.events });
    skippedByGroup.set(r.group_name, list);
  }

  const handledLogPresent = await handledLogExists(sql);
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
           -- Applied (in the handled log) and yet left as a dead letter: an inconsistency to look at.
           ${handledLogPresent ? sql`count(*) FILTER (WHERE dead AND EXISTS (SELECT 1 FROM chaos.handled h WHERE h.group_name = expected.group_name AND h.event_id = expected.event_id))` : sql`0`} AS dead_and_processed
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

  const handledLogChecked = handledLogPresent;
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
      skipped: (skippedByGroup.get(group) ?? []).reduce((acc, s) => acc + s.events, 0),
      skippedTypes: skippedByGroup.get(group) ?? [],
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
    skipped: sum((g) => g.skipped),
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
 * Fills in the event types each subscription's group handles: `handledTypes`
 * of its group when given; else its own told types; else, when `infer` (the
 * subscriptions were discovered), the types the group processed in the window
 * or ever dead-lettered, on any stream (a group has one handler registry for
 * all its streams). A group that handled nothing keeps "every type", so a
 * group that is stuck shows its events as missing, not as skipped. (Inference
 * cannot tell a type the group handles but lost every event of from a type it
 * does not handle: tell verify when that matters.)
 */
async function withHandledTypes(
  sql: Sql,
  subscriptions: Subscription[],
  handledTypes: Readonly<Record<string, readonly string[]>>,
  infer: boolean,
  window: { since: string | null; until: string | null },
): Promise<Subscription[]> {
  const inferred = new Map<string, Set<string>>();
  const toInfer = infer ? subscriptions.filter((s) => handledTypes[s.group] === undefined && s.eventTypesSource === 'all') : [];
  if (toInfer.length > 0) {
    const groups = sql.array([...new Set(toInfer.map((s) => s.group))]);
    const note = (group: string, type: string | null) => {
      if (!type) return;
      const set = inferred.get(group) ?? new Set<string>();
      set.add(type);
      inferred.set(group, set);
    };
    const processed = await sql<{ group_name: string; event_type: string }[]>`
      SELECT DISTINCT p.group_name, o.event_type
      FROM events.processed_event p JOIN events.outbox_event o ON o.event_id = p.event_id
      WHERE p.group_name = ANY(${groups}::text[])
        AND (${window.since}::timestamptz IS NULL OR o.created_at >= ${window.since}::timestamptz)
        AND (${window.until}::timestamptz IS NULL OR o.created_at <= ${window.until}::timestamptz)`;
    for (const r of processed) note(r.group_name, r.event_type);
    const dead = await sql<{ group_name: string; event_type: string | null }[]>`
      SELECT DISTINCT group_name, event_type FROM events.dead_letter WHERE group_name = ANY(${groups}::text[])`;
    for (const r of dead) note(r.group_name, r.event_type);
  }
  return subscriptions.map((s): Subscription => {
    const told = handledTypes[s.group];
    if (told !== undefined) return { ...s, eventTypes: [...new Set(told)].sort(), eventTypesSource: 'told' };
    const seen = inferred.get(s.group);
    if (s.eventTypesSource === 'all' && seen && seen.size > 0) return { ...s, eventTypes: [...seen].sort(), eventTypesSource: 'inferred' };
    return s;
  });
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
    if (!found.has(key)) found.set(key, { group, stream, source, eventTypes: null, eventTypesSource: 'all' });
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
