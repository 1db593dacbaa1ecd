#!/usr/bin/env node
/**
 * `events` — the on-call command of the pipeline (`pnpm events <command>`).
 *
 *   events status [--stream <name>] [--abandoned-after <seconds>] [--parked-overdue-after <seconds>] [--json]
 *   events group list [--json]
 *   events group delete --group <g> [--force]
 *   events lease release --stream <name> --role <publisher|maintenance|consumer:<group>> | --all-dead
 *   events nodes [--json]
 *   events dlq list [--group <g>] [--type <t>] [--status dead|replayed|discarded] [--limit <n>] [--json]
 *   events lookup <event id | outbox id | Redis entry id | partition key> [--json]
 *   events dlq show <id>
 *   events dlq groups [--group <g>] [--json]
 *   events dlq replay <id> | --all --group <g> | --fingerprint <fp>
 *   events dlq discard <id> | --fingerprint <fp>
 *   events key list [--group <g>] [--stream <name>] [--halted] [--limit <n>] [--json]
 *   events key release|discard --group <g> --stream <partition stream> --key <partition key>
 *   events outbox replay --stream <name> (--since <time> [--until <time>] | --from-id <id> [--to-id <id>])
 *   events verify [--since <time>] [--until <time>] [--group <g>] [--handles <g>=<Type,...>]... [--json]
 *
 * Exit codes: 0 healthy / done, 1 problem found / action refused, 2 usage error.
 * Env: DATABASE_URL, REDIS_URL, REDIS_CLUSTER, REDIS_CLUSTER_SEEDS, REDIS_KEY_PREFIX, STREAM_PARTITIONS.
 */
import os from 'node:os';
import { parseArgs } from 'node:util';
import { discardDeadLetter, getDeadLetter, listDeadLetters, replayDeadLetter } from '../consumer/dead-letters';
import { maskUrlPassword } from '@petcover/service-kit';
import { connectDatabase, type DatabaseHandle } from '../db';
import { EVENT_TYPE_PATTERN } from '../enqueue';
import { forceReleaseLease } from '../lease/lease';
import { DEAD_LETTER_STATUSES, type DeadLetterStatus } from '../schema';
import { parsePartitionStreamName, STREAM_NAME_PATTERN } from '../streams';
import { formatConsumerGroups, formatEventsStatus, formatLookup, formatNodes } from '../diagnostics/format';
import { deleteConsumerGroup, GroupInUseError, summarizeConsumerGroups, UnknownGroupError } from '../diagnostics/consumer-groups';
import { lookupEvents } from '../diagnostics/event-journey';
import { deadLettersOfFingerprint, listDeadLetterGroups, resolveDeadLetters } from '../consumer/dead-letter-groups';
import { releaseLeasesOfDeadOwners } from '../liveness/nodes';
import { discardParkedHead, listParkedKeys, releaseParkedKey, type ParkedKeyRef } from '../consumer/parked-keys';
import { replayOutbox, type OutboxReplayRange } from '../diagnostics/outbox-replay';
import { collectEventsStatus, collectNodesAndLeases } from '../diagnostics/status';
import { readEventsCliConfig, type EventsCliConfig } from './events-env';
import { connectCliRedis } from './redis-client';
import { runVerify } from './verify-command';

export const EXIT_OK = 0;
export const EXIT_PROBLEM = 1;
export const EXIT_USAGE = 2;

export const USAGE = `usage: events <command>
  status [--stream <name>] [--abandoned-after <seconds>] [--parked-overdue-after <seconds>] [--json]
                                               pipeline status and the likely cause of a problem; a group with no
                                               live consumer for --abandoned-after (default 300) is reported abandoned,
                                               a parked key due longer than --parked-overdue-after (default 60) overdue
  group list [--json]                          consumer groups: streams, live consumers, leases, pending, lag, dead letters
  group delete --group <g> [--force]           remove a consumer group from every partition stream, and its leases;
                                               refused while a live consumer holds a lease of it, unless --force
  lease release --stream <name> --role <role>  drop a lease (role publisher, maintenance or consumer:<group>)
  lease release --all-dead                     drop every lease whose owner is dead or never registered
  nodes [--json]                               registered publishers and consumers, alive or dead, with their leases
  dlq list [--group <g>] [--type <t>] [--status <s>] [--limit <n>] [--json]
  lookup <query> [--json]                      an event's journey (outbox, Redis entry, per group handled or dead);
                                               query: event id, outbox id, Redis entry id, or partition key (its events in order)
  dlq show <id>
  dlq groups [--group <g>] [--json]            dead letters grouped by fingerprint (type + error class + first app frame)
  dlq replay <id> | --all --group <g> | --fingerprint <fp>
                                               re-enqueue through the outbox with the original event_id
  dlq discard <id> | --fingerprint <fp>
  key list [--group <g>] [--stream <name>] [--halted] [--limit <n>] [--json]
                                               parked keys (a failing event parks its key; halted ones wait for you)
  key release --group <g> --stream <partition> --key <k>
                                               retry the key's head now, with fresh attempts (un-halts it)
  key discard --group <g> --stream <partition> --key <k>
                                               drop the key's head (kept as a discarded dead letter); the key goes on
  outbox replay --stream <name> (--since <time> [--until <time>] | --from-id <id> [--to-id <id>])
                                               re-publish rows published since <time> (ISO-8601, or 30m / 2h / 1d ago)
  verify [--since <time>] [--until <time>] [--group <g>] [--handles <g>=<Type,...>]... [--json]
                                               every event handled exactly once, in order, per group (exit 1 if not)
exit codes: 0 healthy or done, 1 problem found or action refused, 2 usage error
env: DATABASE_URL, REDIS_URL, REDIS_KEY_PREFIX, STREAM_PARTITIONS`;

/** Wrong command line: printed with the usage, exit code 2. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

export interface EventsCliIo {
  env: Readonly<Record<string, string | undefined>>;
  stdout: (text: string) => void;
  stderr: (text: string) => void;
}

interface CommandContext {
  args: string[];
  config: EventsCliConfig;
  io: EventsCliIo;
  /** Who runs the command, recorded as `resolved_by` of dead letters. */
  actor: string;
  database: () => DatabaseHandle;
}

type Command = (ctx: CommandContext) => Promise<number>;

/** The subcommands, `<word>` or `<word> <word>`; each (ctx) => exit code. */
const COMMANDS: Record<string, Command> = {
  status: statusCommand,
  'lease release': leaseReleaseCommand,
  'group list': groupListCommand,
  'group delete': groupDeleteCommand,
  nodes: nodesCommand,
  lookup: lookupCommand,
  'dlq list': dlqListCommand,
  'dlq groups': dlqGroupsCommand,
  'dlq show': dlqShowCommand,
  'dlq replay': dlqReplayCommand,
  'dlq discard': dlqDiscardCommand,
  'key list': keyListCommand,
  'key release': keyReleaseCommand,
  'key discard': keyDiscardCommand,
  'outbox replay': outboxReplayCommand,
  verify: verifyCommand,
};

function parseCommandArgs<T extends Record<string, { type: 'string' | 'boolean'; multiple?: boolean }>>(args: string[], spec: T, positionals = 0) {
  let parsed;
  try {
    parsed = parseArgs({ args, options: spec, allowPositionals: true, strict: true });
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  if (parsed.positionals.length > positionals) throw new UsageError(`unexpected argument ${parsed.positionals[positionals]}`);
  return parsed;
}

function requireStreamName(value: string | undefined, flag = '--stream'): string {
  if (!value) throw new UsageError(`${flag} <stream:context:name> is required`);
  if (!STREAM_NAME_PATTERN.test(value)) throw new UsageError(`${flag} must look like stream:<context>:<name> (got ${value})`);
  return value;
}

function requireId(value: string | undefined): string {
  if (!value) throw new UsageError('a dead letter id is required');
  if (!/^\d+$/.test(value)) throw new UsageError(`dead letter id must be a number (got ${value})`);
  return value;
}

const RELATIVE_TIME = /^(\d+)(s|m|h|d)$/;
const UNIT_MS = { s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 } as const;

/** ISO-8601 (or anything Date.parse reads), or a duration ago: `90s`, `15m`, `2h`, `1d`. */
export function parseTimeArgument(value: string | undefined, flag: string, now = Date.now()): Date {
  if (!value) throw new UsageError(`${flag} <time> is required`);
  const relative = RELATIVE_TIME.exec(value);
  if (relative) return new Date(now - Number(relative[1]) * UNIT_MS[relative[2] as keyof typeof UNIT_MS]);
  const ms = Date.parse(value);
  if (Number.isNaN(ms)) throw new UsageError(`${flag} must be an ISO-8601 time or a duration like 30m (got ${value})`);
  return new Date(ms);
}

/** A `--<flag> <seconds>` threshold of `events status`: a whole number of seconds, or undefined when not given. */
function secondsFlag(values: Record<string, unknown>, flag: string): number | undefined {
  const value = values[flag];
  if (value === undefined) return undefined;
  if (typeof value !== 'string' || !/^\d{1,9}$/.test(value)) throw new UsageError(`--${flag} must be a whole number of seconds (got ${String(value)})`);
  return Number(value);
}

async function statusCommand(ctx: CommandContext): Promise<number> {
  const { values } = parseCommandArgs(ctx.args, {
    stream: { type: 'string' },
    'abandoned-after': { type: 'string' },
    'parked-overdue-after': { type: 'string' },
    json: { type: 'boolean' },
  });
  const stream = values.stream === undefined ? undefined : requireStreamName(values.stream);
  const thresholds = { abandonedAfterSeconds: secondsFlag(values, 'abandoned-after'), parkedKeyOverdueSeconds: secondsFlag(values, 'parked-overdue-after') };
  return withCliRedis(ctx, async (redis) => {
    const status = await collectEventsStatus({
      sql: ctx.database().sql,
      redis,
      keyPrefix: ctx.config.keyPrefix,
      partitions: ctx.config.partitions,
      stream,
      thresholds,
    });
    ctx.io.stdout(values.json ? JSON.stringify(status, null, 2) : formatEventsStatus(status));
    return status.healthy ? EXIT_OK : EXIT_PROBLEM;
  });
}

/** Runs `body` with a CLI Redis connection (a failed connect shows in what body reports), always disconnected after. */
async function withCliRedis(ctx: CommandContext, body: (redis: ReturnType<typeof connectCliRedis>) => Promise<number>): Promise<number> {
  const redis = connectCliRedis(ctx.config.redis);
  try {
    await redis.connect().catch(() => undefined);
    return await body(redis);
  } finally {
    redis.disconnect();
  }
}

async function groupListCommand(ctx: CommandContext): Promise<number> {
  const { values } = parseCommandArgs(ctx.args, { json: { type: 'boolean' } });
  return withCliRedis(ctx, async (redis) => {
    const status = await collectEventsStatus({ sql: ctx.database().sql, redis, keyPrefix: ctx.config.keyPrefix, partitions: ctx.config.partitions });
    if (!status.redis.ok) {
      ctx.io.stderr(`cannot list consumer groups: Redis unreachable (${status.redis.error ?? 'unknown error'})`);
      return EXIT_PROBLEM;
    }
    const groups = summarizeConsumerGroups(status);
    if (values.json) ctx.io.stdout(JSON.stringify(groups, null, 2));
    else ctx.io.stdout(formatConsumerGroups(groups));
    return EXIT_OK;
  });
}

async function groupDeleteCommand(ctx: CommandContext): Promise<number> {
  const { values } = parseCommandArgs(ctx.args, { group: { type: 'string' }, force: { type: 'boolean' } });
  const group = requireGroupName(values.group);
  return withCliRedis(ctx, async (redis) => {
    const { sql } = ctx.database();
    const status = await collectEventsStatus({ sql, redis, keyPrefix: ctx.config.keyPrefix, partitions: ctx.config.partitions });
    if (!status.redis.ok) {
      ctx.io.stderr(`cannot delete group ${group}: Redis unreachable (${status.redis.error ?? 'unknown error'}); nothing changed`);
      return EXIT_PROBLEM;
    }
    try {
      const deleted = await deleteConsumerGroup({ sql, redis, keyPrefix: ctx.config.keyPrefix, status }, group, { force: values.force ?? false });
      for (const l of deleted.forcedLeases) ctx.io.stderr(`--force: deleted the live lease on ${l.partition} of ${l.ownerId}; stop that consumer, or it recreates the group`);
      ctx.io.stdout(
        `deleted group ${group}: consumer group destroyed on ${deleted.destroyedOn.length} partition stream(s)` +
          `${deleted.destroyedOn.length > 0 ? ` (${deleted.destroyedOn.join(', ')})` : ''}, ${deleted.leasesDeleted} lease row(s) removed; ` +
          'its dead letters and inbox rows are kept',
      );
      if (deleted.parkedKeys > 0) {
        ctx.io.stdout(`${deleted.parkedKeys} parked key(s) of group ${group} are kept and no longer retried: events key list --group ${group}, then events key discard for each`);
      }
      return EXIT_OK;
    } catch (error) {
      if (error instanceof GroupInUseError || error instanceof UnknownGroupError) {
        ctx.io.stderr(error.message);
        return EXIT_PROBLEM;
      }
      throw error;
    }
  });
}

const GROUP_NAME = /^[A-Za-z0-9_.-]+$/;

function requireGroupName(value: string | undefined, flag = '--group'): string {
  if (!value) throw new UsageError(`${flag} <name> is required`);
  if (!GROUP_NAME.test(value)) throw new UsageError(`${flag} must hold only letters, digits and _.- (got ${value})`);
  return value;
}

const LEASE_ROLE = /^(publisher|maintenance|consumer:[A-Za-z0-9_.-]+)$/;

async function leaseReleaseCommand(ctx: CommandContext): Promise<number> {
  const { values } = parseCommandArgs(ctx.args, { stream: { type: 'string' }, role: { type: 'string' }, 'all-dead': { type: 'boolean' } });
  if (values['all-dead']) {
    if (values.stream !== undefined || values.role !== undefined) throw new UsageError('give either --all-dead or --stream and --role, not both');
    const released = await releaseLeasesOfDeadOwners(ctx.database().sql);
    for (const l of released) ctx.io.stdout(`released the ${l.role} lease on ${l.streamName} of ${l.ownerId} (${l.ownerState === 'dead' ? 'dead' : 'never registered'})`);
    ctx.io.stdout(
      released.length === 0
        ? 'no lease is held by a dead owner: nothing released'
        : `${released.length} lease(s) released; running replicas re-acquire them within their poll interval`,
    );
    return EXIT_OK;
  }
  if (!values.stream || !parsePartitionStreamName(values.stream)) {
    throw new UsageError(`--stream must be a stream or partition stream name like stream:<context>:<name>[:p<N>] (got ${values.stream ?? 'nothing'})`);
  }
  if (!values.role || !LEASE_ROLE.test(values.role)) {
    throw new UsageError(`--role must be publisher, maintenance or consumer:<group> (got ${values.role ?? 'nothing'})`);
  }
  const released = await forceReleaseLease(ctx.database().sql, { streamName: values.stream, role: values.role });
  if (!released) {
    ctx.io.stderr(`no ${values.role} lease on ${values.stream}: nothing released`);
    return EXIT_PROBLEM;
  }
  ctx.io.stdout(`released the ${values.role} lease on ${values.stream}; a running replica re-acquires it within its poll interval`);
  return EXIT_OK;
}

async function nodesCommand(ctx: CommandContext): Promise<number> {
  const { values } = parseCommandArgs(ctx.args, { json: { type: 'boolean' } });
  const { nodes, leases } = await collectNodesAndLeases(ctx.database().sql);
  if (nodes === null) {
    ctx.io.stderr('this database has no events.relay_node table: run pnpm db:migrate');
    return EXIT_PROBLEM;
  }
  ctx.io.stdout(values.json ? JSON.stringify({ nodes, leases }, null, 2) : formatNodes(nodes, leases));
  return EXIT_OK;
}

async function dlqListCommand(ctx: CommandContext): Promise<number> {
  const { values } = parseCommandArgs(ctx.args, {
    group: { type: 'string' },
    type: { type: 'string' },
    status: { type: 'string' },
    limit: { type: 'string' },
    json: { type: 'boolean' },
  });
  if (values.status !== undefined && !DEAD_LETTER_STATUSES.includes(values.status as DeadLetterStatus)) {
    throw new UsageError(`--status must be one of ${DEAD_LETTER_STATUSES.join(', ')} (got ${values.status})`);
  }
  const limit = values.limit === undefined ? undefined : Number(values.limit);
  if (limit !== undefined && (!Number.isInteger(limit) || limit < 1)) throw new UsageError(`--limit must be a positive integer (got ${values.limit})`);
  const letters = await listDeadLetters(ctx.database().sql, {
    group: values.group,
    type: values.type,
    status: values.status as DeadLetterStatus | undefined,
    limit,
  });
  if (values.json) {
    ctx.io.stdout(JSON.stringify(letters, null, 2));
  } else if (letters.length === 0) {
    ctx.io.stdout('no dead letters match');
  } else {
    ctx.io.stdout(['id\tstatus\tgroup\tstream\ttype\tattempts\tdead_lettered_at\terror']
      .concat(letters.map((d) =>
        [d.id, d.status, d.groupName, d.streamName, d.eventType ?? '-', d.attempts, d.deadLetteredAt.toISOString(), d.errorMessage.split('\n')[0]?.slice(0, 120)].join('\t'),
      ))
      .join('\n'));
  }
  return EXIT_OK;
}

async function dlqShowCommand(ctx: CommandContext): Promise<number> {
  const { positionals } = parseCommandArgs(ctx.args, {}, 1);
  const id = requireId(positionals[0]);
  const letter = await getDeadLetter(ctx.database().sql, id);
  if (!letter) {
    ctx.io.stderr(`dead letter ${id} does not exist`);
    return EXIT_PROBLEM;
  }
  ctx.io.stdout(JSON.stringify(letter, null, 2));
  return EXIT_OK;
}

async function dlqReplayCommand(ctx: CommandContext): Promise<number> {
  return dlqResolveCommand(ctx, 'replay');
}

async function dlqDiscardCommand(ctx: CommandContext): Promise<number> {
  return dlqResolveCommand(ctx, 'discard');
}

/**
 * `dlq replay|discard <id>`, `--all --group <g>` (replay only), or
 * `--fingerprint <fp>` (a group of `dlq groups`). Bulk runs go oldest first
 * through resolveDeadLetters, like the console's.
 */
async function dlqResolveCommand(ctx: CommandContext, action: 'replay' | 'discard'): Promise<number> {
  const spec: Record<string, { type: 'string' | 'boolean' }> =
    action === 'replay' ? { all: { type: 'boolean' }, group: { type: 'string' }, fingerprint: { type: 'string' } } : { fingerprint: { type: 'string' } };
  const { values, positionals } = parseCommandArgs(ctx.args, spec, 1);
  const { db, sql } = ctx.database();
  const flags = values as { all?: boolean; group?: string; fingerprint?: string };
  let ids: string[];
  let what: string;
  if (flags.fingerprint !== undefined) {
    if (positionals.length > 0 || flags.all || flags.group) throw new UsageError('give either a dead letter id, --fingerprint <fp> or --all --group <g>');
    if (!/^[0-9a-f]{12}$/.test(flags.fingerprint)) throw new UsageError(`--fingerprint must be 12 hex characters as printed by dlq groups (got ${flags.fingerprint})`);
    ids = (await deadLettersOfFingerprint(sql, flags.fingerprint)).map((l) => l.id);
    what = `of fingerprint ${flags.fingerprint}`;
  } else if (flags.all) {
    if (positionals.length > 0) throw new UsageError('give either a dead letter id or --all --group <g>, not both');
    if (!flags.group) throw new UsageError('--all needs --group <g>, so one command never replays every group at once');
    // Oldest first, so replayed events keep their original relative order.
    // Dead-letter id order (numeric, oldest first), page by page, so replayed events keep their relative order.
    ids = [];
    for (let after: string | undefined; ; ) {
      const page = await listDeadLetters(sql, { group: flags.group, status: 'dead', limit: 1_000, oldestFirst: true, after });
      ids.push(...page.map((l) => l.id));
      if (page.length < 1_000) break;
      after = page[page.length - 1]!.id;
    }
    what = `of group ${flags.group}`;
  } else {
    if (flags.group) throw new UsageError('--group goes with --all');
    const id = requireId(positionals[0]);
    if (action === 'replay') {
      const result = await replayDeadLetter(db, id, { by: ctx.actor });
      ctx.io.stdout(`replayed dead letter ${id} as outbox row ${result.outboxId} (event ${result.eventId})`);
    } else {
      await discardDeadLetter(db, id, { by: ctx.actor });
      ctx.io.stdout(`discarded dead letter ${id}`);
    }
    return EXIT_OK;
  }
  const outcomes = await resolveDeadLetters(db, action, ids, { by: ctx.actor });
  for (const o of outcomes) {
    if (o.ok) ctx.io.stdout(action === 'replay' ? `replayed dead letter ${o.id} as outbox row ${o.outboxId}` : `discarded dead letter ${o.id}`);
    else ctx.io.stderr(`refused dead letter ${o.id}: ${o.error}`);
  }
  const done = outcomes.filter((o) => o.ok).length;
  ctx.io.stdout(`${done} of ${outcomes.length} dead letter(s) ${what} ${action === 'replay' ? 'replayed' : 'discarded'}`);
  return done < outcomes.length ? EXIT_PROBLEM : EXIT_OK;
}

async function keyListCommand(ctx: CommandContext): Promise<number> {
  const { values } = parseCommandArgs(ctx.args, {
    group: { type: 'string' },
    stream: { type: 'string' },
    halted: { type: 'boolean' },
    limit: { type: 'string' },
    json: { type: 'boolean' },
  });
  if (values.group !== undefined && !GROUP_NAME.test(values.group)) throw new UsageError(`--group may hold only letters, digits and _.- (got ${values.group})`);
  if (values.stream !== undefined && !parsePartitionStreamName(values.stream)) {
    throw new UsageError(`--stream must be a stream or partition stream name like stream:<context>:<name>[:p<N>] (got ${values.stream})`);
  }
  const limit = values.limit === undefined ? undefined : Number(values.limit);
  if (limit !== undefined && (!Number.isInteger(limit) || limit < 1)) throw new UsageError(`--limit must be a positive integer (got ${values.limit})`);
  const keys = await listParkedKeys(ctx.database().sql, { group: values.group, stream: values.stream, haltedOnly: values.halted, limit });
  if (values.json) {
    ctx.io.stdout(JSON.stringify(keys, null, 2));
  } else if (keys.length === 0) {
    ctx.io.stdout('no parked keys match');
  } else {
    ctx.io.stdout(['state\tgroup\tstream\tkey\tattempts\tparked\thead\tnext_attempt\terror']
      .concat(keys.map((k) =>
        [k.state, k.group, k.stream, k.key, k.attempts, k.parkedEvents, k.head ? `${k.head.eventType} ${k.head.eventId}` : '-', k.nextAttemptAt ?? '-',
          (k.lastError ?? '-').split('\n')[0]?.slice(0, 120)].join('\t'),
      ))
      .join('\n'));
  }
  return EXIT_OK;
}

/** `--group --stream --key` of `key release|discard`: the stream is the partition stream `key list` prints. */
function parkedKeyRefOf(args: string[]): ParkedKeyRef {
  const { values } = parseCommandArgs(args, { group: { type: 'string' }, stream: { type: 'string' }, key: { type: 'string' } });
  if (!values.group || !GROUP_NAME.test(values.group)) throw new UsageError(`--group <name> is required (letters, digits and _.-; got ${values.group ?? 'nothing'})`);
  if (!values.stream || !parsePartitionStreamName(values.stream)) {
    throw new UsageError(`--stream must be the partition stream events key list prints, like stream:<context>:<name>[:p<N>] (got ${values.stream ?? 'nothing'})`);
  }
  if (!values.key) throw new UsageError('--key <partition key> is required');
  return { group: values.group, stream: values.stream, key: values.key };
}

async function keyReleaseCommand(ctx: CommandContext): Promise<number> {
  const ref = parkedKeyRefOf(ctx.args);
  await releaseParkedKey(ctx.database().db, ref);
  ctx.io.stdout(`key ${ref.key} of group ${ref.group} on ${ref.stream}: its head is retried now with fresh attempts (by the partition's consumer, within a second)`);
  return EXIT_OK;
}

async function keyDiscardCommand(ctx: CommandContext): Promise<number> {
  const ref = parkedKeyRefOf(ctx.args);
  const { eventId, released } = await discardParkedHead(ctx.database().db, ref, { by: ctx.actor });
  const what = eventId === null ? 'nothing was parked under it any more' : `head event ${eventId} discarded (a dead letter with status discarded records it)`;
  ctx.io.stdout(`key ${ref.key} of group ${ref.group} on ${ref.stream}: ${what}; ${released ? 'the key is released' : 'its next parked event runs now'}`);
  return EXIT_OK;
}

async function dlqGroupsCommand(ctx: CommandContext): Promise<number> {
  const { values } = parseCommandArgs(ctx.args, { group: { type: 'string' }, json: { type: 'boolean' } });
  const groups = await listDeadLetterGroups(ctx.database().sql, { group: values.group });
  if (values.json) {
    ctx.io.stdout(JSON.stringify(groups, null, 2));
  } else if (groups.length === 0) {
    ctx.io.stdout('no dead letters with status dead');
  } else {
    ctx.io.stdout(['fingerprint\tcount\ttype\terror\tframe\tgroups\tfirst seen\tlast seen\tsample']
      .concat(groups.map((g) =>
        [g.fingerprint, g.count, g.eventType ?? '-', g.errorClass, g.frame ?? '-', g.groups.join(','), g.firstSeen.toISOString(), g.lastSeen.toISOString(), g.sampleMessage.split('\n')[0]?.slice(0, 120)].join('\t'),
      ))
      .join('\n'));
  }
  return EXIT_OK;
}

async function lookupCommand(ctx: CommandContext): Promise<number> {
  const { values, positionals } = parseCommandArgs(ctx.args, { json: { type: 'boolean' } }, 1);
  const query = positionals[0];
  if (!query) throw new UsageError('lookup needs an event id, outbox id, Redis entry id or partition key');
  return withCliRedis(ctx, async (redis) => {
    const result = await lookupEvents({ sql: ctx.database().sql, redis, keyPrefix: ctx.config.keyPrefix, partitions: ctx.config.partitions }, query);
    ctx.io.stdout(values.json ? JSON.stringify(result, null, 2) : formatLookup(result));
    return result.events.length > 0 ? EXIT_OK : EXIT_PROBLEM;
  });
}

async function outboxReplayCommand(ctx: CommandContext): Promise<number> {
  const { values } = parseCommandArgs(ctx.args, {
    stream: { type: 'string' },
    since: { type: 'string' },
    until: { type: 'string' },
    'from-id': { type: 'string' },
    'to-id': { type: 'string' },
  });
  const stream = requireStreamName(values.stream);
  let range: OutboxReplayRange;
  if (values['from-id'] !== undefined) {
    if (values.since !== undefined || values.until !== undefined) throw new UsageError('give a time range (--since/--until) or an id range (--from-id/--to-id), not both');
    const fromId = outboxIdArgument(values['from-id'], '--from-id');
    const toId = values['to-id'] === undefined ? undefined : outboxIdArgument(values['to-id'], '--to-id');
    if (toId !== undefined && toId < fromId) throw new UsageError('--to-id must not be below --from-id');
    range = { fromId, toId };
  } else {
    if (values['to-id'] !== undefined) throw new UsageError('--to-id needs --from-id');
    const since = parseTimeArgument(values.since, '--since');
    const until = values.until === undefined ? undefined : parseTimeArgument(values.until, '--until');
    if (until && until <= since) throw new UsageError('--until must be after --since');
    range = { since, until };
  }
  const result = await replayOutbox(ctx.database().sql, { stream, ...range });
  if (result.rows === 0) {
    ctx.io.stdout(`no published row of ${stream} in that range`);
    return EXIT_OK;
  }
  ctx.io.stdout(
    `${result.rows} row(s) of ${stream} (outbox ids ${result.firstOutboxId}..${result.lastOutboxId}) marked unpublished; ` +
      'the publisher appends them again, in outbox-id order, and consumers skip what they already handled',
  );
  if (result.keysWithNewerEvents.length > 0) {
    const shown = result.keysWithNewerEvents.slice(0, 10).join(', ');
    const more = result.keysWithNewerEvents.length > 10 ? ` and ${result.keysWithNewerEvents.length - 10} more` : '';
    ctx.io.stdout(
      `note: ${result.keysWithNewerEvents.length} partition key(s) already have newer events published (${shown}${more}); ` +
        'the replayed events land after them, so a group that had not handled them applies them after the newer ones',
    );
  }
  return EXIT_OK;
}

function outboxIdArgument(text: string, flag: string): bigint {
  if (!/^\d{1,19}$/.test(text)) throw new UsageError(`${flag} must be an outbox id (a positive integer), got "${text}"`);
  return BigInt(text);
}

async function verifyCommand(ctx: CommandContext): Promise<number> {
  const { values } = parseCommandArgs(ctx.args, {
    since: { type: 'string' },
    until: { type: 'string' },
    group: { type: 'string' },
    handles: { type: 'string', multiple: true },
    json: { type: 'boolean' },
  });
  const since = values.since === undefined ? undefined : parseTimeArgument(values.since, '--since');
  const until = values.until === undefined ? undefined : parseTimeArgument(values.until, '--until');
  if (since && until && until <= since) throw new UsageError('--until must be after --since');
  if (values.group !== undefined) requireGroupName(values.group);
  return runVerify({
    sql: ctx.database().sql,
    redis: ctx.config.redis,
    keyPrefix: ctx.config.keyPrefix,
    since,
    until,
    group: values.group,
    handledTypes: parseHandledTypes(values.handles ?? []),
    json: values.json ?? false,
    stdout: ctx.io.stdout,
    stderr: ctx.io.stderr,
  });
}

/** `--handles billing=InvoiceIssued,InvoicePaid` (repeatable) → { billing: [InvoiceIssued, InvoicePaid] }. */
function parseHandledTypes(items: readonly string[]): Record<string, string[]> | undefined {
  if (items.length === 0) return undefined;
  const result: Record<string, string[]> = {};
  for (const item of items) {
    const match = /^([A-Za-z0-9_.-]+)=(.+)$/.exec(item);
    const types = match ? (match[2] as string).split(',').map((t) => t.trim()) : [];
    if (!match || types.some((t) => !EVENT_TYPE_PATTERN.test(t))) {
      throw new UsageError(`--handles must look like <group>=<EventType>[,<EventType>...] (got ${item})`);
    }
    result[match[1] as string] = [...(result[match[1] as string] ?? []), ...types];
  }
  return result;
}

/** `cli:<user>@<host>`: recorded on the dead letters this command resolves. */
function cliActor(): string {
  let user = 'unknown';
  try {
    user = os.userInfo().username;
  } catch {
    // No passwd entry (some containers): keep "unknown".
  }
  return `cli:${user}@${os.hostname()}`;
}

/**
 * Runs one `events` command line and returns its exit code. Never throws:
 * typed refusals (unknown or already-resolved dead letter) exit 1, usage
 * errors exit 2, anything else exits 1 with its message.
 */
export async function runEventsCli(argv: string[], io: EventsCliIo): Promise<number> {
  const [first, second, ...rest] = argv;
  if (!first || first === '--help' || first === '-h' || first === 'help') {
    (first ? io.stdout : io.stderr)(USAGE);
    return first ? EXIT_OK : EXIT_USAGE;
  }
  let name = first;
  let args = [second, ...rest].filter((a): a is string => a !== undefined);
  if (!COMMANDS[name] && second !== undefined && COMMANDS[`${first} ${second}`]) {
    name = `${first} ${second}`;
    args = rest;
  }
  const command = COMMANDS[name];
  if (!command) {
    io.stderr(`unknown command: ${argv.join(' ')}\n${USAGE}`);
    return EXIT_USAGE;
  }
  let handle: DatabaseHandle | undefined;
  try {
    const config = readEventsCliConfig(io.env);
    return await command({
      args,
      config,
      io,
      actor: cliActor(),
      database: () => (handle ??= connectDatabase(config.databaseUrl, { max: 2, connectTimeoutSeconds: 3, applicationName: 'petcover-events-cli' })),
    });
  } catch (error) {
    if (error instanceof UsageError) {
      io.stderr(`${error.message}\n${USAGE}`);
      return EXIT_USAGE;
    }
    io.stderr(maskUrlPassword((error as Error).message || String(error)));
    return EXIT_PROBLEM;
  } finally {
    await handle?.close(2);
  }
}

if (require.main === module) {
  runEventsCli(process.argv.slice(2), {
    env: process.env,
    stdout: (text) => process.stdout.write(`${text}\n`),
    stderr: (text) => process.stderr.write(`${text}\n`),
  }).then((code) => {
    process.exitCode = code;
  });
}
