/**
 * Tables of the `events` schema. Their names and columns are a user-facing
 * contract: on-call engineers paste queries against them from the runbook.
 * Change them only through a new generated migration (`pnpm db:generate`).
 */
import { sql } from 'drizzle-orm';
import {
  bigint,
  bigserial,
  check,
  foreignKey,
  index,
  integer,
  jsonb,
  pgSchema,
  primaryKey,
  text,
  timestamp,
  uniqueIndex,
  uuid,
} from 'drizzle-orm/pg-core';
import { STREAM_NAME_PATTERN } from './streams';

export const eventsSchema = pgSchema('events');

/** `stream:<context>:<name>`: the stream-name module's pattern, as a Postgres regex (same syntax). */
const STREAM_NAME_SQL = STREAM_NAME_PATTERN.source;
/** A logical stream, or one of its partitions (`stream:<context>:<name>:p<N>`). */
const LEASED_STREAM_SQL = '^stream:[A-Za-z0-9_-]+:[A-Za-z0-9_.-]+(:p[0-9]+)?$';

export const outboxEvent = eventsSchema.table(
  'outbox_event',
  {
    /** Global order of the outbox; the publisher drains each stream by ascending id. */
    id: bigserial('id', { mode: 'bigint' }).primaryKey(),
    /** Idempotency key end to end: Redis entry, consumer inbox, dead letter. */
    eventId: uuid('event_id').notNull(),
    streamName: text('stream_name').notNull(),
    /** The entity the event is about (e.g. the contract id); order is kept per key. */
    partitionKey: text('partition_key').notNull(),
    eventType: text('event_type').notNull(),
    payload: jsonb('payload').notNull(),
    /** Correlation id, causation id, tenant, trace context. */
    headers: jsonb('headers').$type<Record<string, string>>().notNull().default({}),
    createdAt: timestamp('created_at', { withTimezone: true }).notNull().defaultNow(),
    /** Null until the publisher has appended the row to Redis. */
    publishedAt: timestamp('published_at', { withTimezone: true }),
    /**
     * Where the row went: the id of its Redis stream entry (`<ms>-<seq>`),
     * recorded by the same UPDATE that sets `published_at`. What the publisher
     * re-appends when Redis is found behind. Null while unpublished, and for
     * rows published before this column existed.
     */
    redisEntryId: text('redis_entry_id'),
  },
  (t) => [
    uniqueIndex('outbox_event_event_id_key').on(t.eventId),
    // Serves the drain: the next unpublished rows of one stream in id order.
    index('outbox_event_unpublished_idx').on(t.streamName, t.id).where(sql`${t.publishedAt} IS NULL`),
    // No index on published_at (dropped in 0004): it made every mark-published
    // UPDATE non-HOT and cost it one more index insert per row. The prune walks
    // the primary key instead (prunePublishedRows in publisher/maintenance.ts).
    check('outbox_event_stream_name_check', sql.raw(`stream_name ~ '${STREAM_NAME_SQL}'`)),
    check('outbox_event_event_type_check', sql`length(${t.eventType}) > 0`),
    check('outbox_event_partition_key_check', sql`length(${t.partitionKey}) > 0`),
  ],
);

export const streamLease = eventsSchema.table(
  'stream_lease',
  {
    /** A logical stream, or a partition of one (consumer leases). */
    streamName: text('stream_name').notNull(),
    /** `publisher`, `maintenance` (pruning), or `consumer:<group>`. */
    role: text('role').notNull(),
    /** `<hostname>:<pid>:<random>` of the process holding the lease. */
    ownerId: text('owner_id').notNull(),
    leaseUntil: timestamp('lease_until', { withTimezone: true }).notNull(),
    /** Grows on every change of owner; Redis refuses appends carrying an older one. */
    fencingToken: bigint('fencing_token', { mode: 'bigint' }).notNull(),
    acquiredAt: timestamp('acquired_at', { withTimezone: true }).notNull().defaultNow(),
    renewedAt: timestamp('renewed_at', { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [
    primaryKey({ name: 'stream_lease_pkey', columns: [t.streamName, t.role] }),
    check('stream_lease_stream_name_check', sql.raw(`stream_name ~ '${LEASED_STREAM_SQL}'`)),
    check('stream_lease_role_check', sql.raw(`role ~ '^(publisher|maintenance|consumer:[A-Za-z0-9_.-]+)$'`)),
    check('stream_lease_owner_id_check', sql`length(${t.ownerId}) > 0`),
  ],
);

/** The consumer's inbox: one row per (group, event) whose effect has committed. */
export const processedEvent = eventsSchema.table(
  'processed_event',
  {
    groupName: text('group_name').notNull(),
    eventId: uuid('event_id').notNull(),
    processedAt: timestamp('processed_at', { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [primaryKey({ name: 'processed_event_pkey', columns: [t.groupName, t.eventId] })],
);

export const DEAD_LETTER_STATUSES = ['dead', 'replayed', 'discarded'] as const;
export type DeadLetterStatus = (typeof DEAD_LETTER_STATUSES)[number];

/** What a consumer group could not handle, with everything needed to replay it. */
export const deadLetter = eventsSchema.table(
  'dead_letter',
  {
    id: bigserial('id', { mode: 'bigint' }).primaryKey(),
    groupName: text('group_name').notNull(),
    streamName: text('stream_name').notNull(),
    redisEntryId: text('redis_entry_id').notNull(),
    /** Null only when the Redis entry itself lacked the field. */
    eventId: uuid('event_id'),
    eventType: text('event_type'),
    partitionKey: text('partition_key'),
    payload: jsonb('payload'),
    headers: jsonb('headers').$type<Record<string, string>>(),
    /** The Redis entry's fields as received, for entries that could not be decoded. */
    rawEntry: jsonb('raw_entry').$type<Record<string, string>>(),
    errorMessage: text('error_message').notNull(),
    errorStack: text('error_stack'),
    attempts: integer('attempts').notNull(),
    firstFailedAt: timestamp('first_failed_at', { withTimezone: true }).notNull(),
    deadLetteredAt: timestamp('dead_lettered_at', { withTimezone: true }).notNull().defaultNow(),
    status: text('status').$type<DeadLetterStatus>().notNull().default('dead'),
    /** When the status left `dead`, and who or what moved it. */
    resolvedAt: timestamp('resolved_at', { withTimezone: true }),
    resolvedBy: text('resolved_by'),
  },
  (t) => [
    // A crash between dead-lettering and XACK redelivers the entry; this keeps one row.
    uniqueIndex('dead_letter_entry_key').on(t.groupName, t.streamName, t.redisEntryId),
    index('dead_letter_group_status_idx').on(t.groupName, t.status),
    check('dead_letter_status_check', sql`${t.status} IN ('dead', 'replayed', 'discarded')`),
    check('dead_letter_attempts_check', sql`${t.attempts} >= 1`),
  ],
);

/**
 * The processes of the pipeline (publishers, consumers), each registered at
 * start, heartbeating while it runs, and removing its row on graceful stop.
 * `events status` calls a lease whose owner has no live row here
 * `lease_owner_dead` at once, instead of waiting for the lease to expire.
 */
export const relayNode = eventsSchema.table(
  'relay_node',
  {
    /** The owner id it holds leases with (`<hostname>:<pid>:<random>`). */
    ownerId: text('owner_id').primaryKey(),
    /** `publisher` or `consumer:<group>`. */
    role: text('role').notNull(),
    host: text('host').notNull(),
    pid: integer('pid').notNull(),
    /** Version of the app that runs it (its package.json). */
    version: text('version').notNull(),
    startedAt: timestamp('started_at', { withTimezone: true }).notNull().defaultNow(),
    heartbeatAt: timestamp('heartbeat_at', { withTimezone: true }).notNull().defaultNow(),
    /** The node counts as dead when heartbeat_at is older than this (a few heartbeat intervals). */
    heartbeatTtlMs: integer('heartbeat_ttl_ms').notNull(),
    /**
     * The Postgres session the node heartbeats on (pg_backend_pid and its
     * backend_start). A SIGKILLed process's session ends at once, so its
     * absence from pg_stat_activity says "dead" long before the TTL does.
     */
    backendPid: integer('backend_pid'),
    backendStartedAt: timestamp('backend_started_at', { withTimezone: true }),
  },
  (t) => [
    check('relay_node_role_check', sql.raw(`role ~ '^(publisher|consumer:[A-Za-z0-9_.-]+)$'`)),
    check('relay_node_heartbeat_ttl_check', sql`${t.heartbeatTtlMs} > 0`),
  ],
);

/**
 * Per Redis partition stream (its key, prefix included): the newest entry the
 * publisher recorded in Postgres for it. Written by the same statement that
 * marks rows published, so it never runs ahead of the rows. Before appending,
 * the publisher compares it with the stream's last entry id in Redis: Redis
 * behind (snapshot restore, failover, flush) means re-append the rows recorded
 * after Redis's last id; Redis ahead (a crash between append and mark) means
 * mark the rows its newer entries carry.
 */
export const redisStreamPosition = eventsSchema.table(
  'redis_stream_position',
  {
    redisKey: text('redis_key').primaryKey(),
    /** The logical stream the partition belongs to. */
    streamName: text('stream_name').notNull(),
    /** Null until a row of this partition was recorded. */
    lastEntryId: text('last_entry_id'),
    lastOutboxId: bigint('last_outbox_id', { mode: 'bigint' }),
    /** The MINID of the last trim: entries below it are gone by design, not lost. */
    trimmedBelow: text('trimmed_below'),
    /** The Redis error this partition fails with now (WRONGTYPE, script error), for `events status`; null when healthy. */
    fault: text('fault'),
    faultSince: timestamp('fault_since', { withTimezone: true }),
    updatedAt: timestamp('updated_at', { withTimezone: true }).notNull().defaultNow(),
  },
  () => [check('redis_stream_position_stream_name_check', sql.raw(`stream_name ~ '${STREAM_NAME_SQL}'`))],
);

/**
 * Parking (issue 19): a partition key whose handler failed with a retryable
 * error, per group and PARTITION stream. While its row exists, every later
 * entry of that key is parked behind (events.parked_event) instead of run, and
 * the partition goes on with the other keys. The partition's lease holder
 * retries the key when `next_attempt_at` is due (database clock) and deletes
 * the row once no parked event is left. A halted key (policy `halt`, attempts
 * exhausted) waits for an operator: `events key release|discard`.
 */
export const parkedKey = eventsSchema.table(
  'parked_key',
  {
    groupName: text('group_name').notNull(),
    /** Partition stream (as in dead_letter.stream_name): the lease that owns the key's retries. */
    streamName: text('stream_name').notNull(),
    partitionKey: text('partition_key').notNull(),
    /** Failed attempts of the key's head (its oldest parked event) so far. */
    attempts: integer('attempts').notNull().default(0),
    nextAttemptAt: timestamp('next_attempt_at', { withTimezone: true }).notNull().defaultNow(),
    /** Set when the head ran out of attempts under policy `halt`: no retry until an operator acts. */
    haltedAt: timestamp('halted_at', { withTimezone: true }),
    lastError: text('last_error'),
    /** First failure of the current head. */
    firstFailedAt: timestamp('first_failed_at', { withTimezone: true }),
    parkedAt: timestamp('parked_at', { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [
    primaryKey({ name: 'parked_key_pkey', columns: [t.groupName, t.streamName, t.partitionKey] }),
    // Serves the retry scheduler: the due keys of one partition.
    index('parked_key_due_idx').on(t.groupName, t.streamName, t.nextAttemptAt).where(sql`${t.haltedAt} IS NULL`),
    check('parked_key_attempts_check', sql`${t.attempts} >= 0`),
  ],
);

/**
 * Events parked behind their key, in arrival order (`id`). A row holds what
 * the handler needs (the Redis entry is acknowledged once parked); its inbox
 * row (processed_event) is written in the same transaction, so a re-delivery
 * is a duplicate, and the handler runs in the transaction that deletes it.
 */
export const parkedEvent = eventsSchema.table(
  'parked_event',
  {
    id: bigserial('id', { mode: 'bigint' }).primaryKey(),
    groupName: text('group_name').notNull(),
    streamName: text('stream_name').notNull(),
    partitionKey: text('partition_key').notNull(),
    redisEntryId: text('redis_entry_id').notNull(),
    eventId: uuid('event_id').notNull(),
    eventType: text('event_type').notNull(),
    /** As relayed (decimal string). */
    outboxId: text('outbox_id').notNull(),
    /**
     * Payload and headers as JSON TEXT, not jsonb: jsonb refuses a NUL
     * (\u0000) that JSON text escapes, and parking must never be refused
     * (a refused park would stop the partition, the very thing it avoids).
     */
    payload: text('payload').notNull(),
    headers: text('headers').notNull(),
    /** The event's created_at as the entry carried it (ISO text, handed to the handler unchanged). */
    eventCreatedAt: text('event_created_at').notNull(),
    parkedAt: timestamp('parked_at', { withTimezone: true }).notNull().defaultNow(),
  },
  (t) => [
    uniqueIndex('parked_event_event_key').on(t.groupName, t.eventId),
    // Serves loading a key's parked events in order.
    index('parked_event_key_idx').on(t.groupName, t.streamName, t.partitionKey, t.id),
    // A parked event always has its key row: deleting a key with events left fails.
    foreignKey({ name: 'parked_event_key_fkey', columns: [t.groupName, t.streamName, t.partitionKey], foreignColumns: [parkedKey.groupName, parkedKey.streamName, parkedKey.partitionKey] }),
  ],
);
