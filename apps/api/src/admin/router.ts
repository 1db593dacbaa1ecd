/**
 * Admin HTTP routes of the api (mounted at `/v1/admin`): the same operations
 * as the `events` command, for people without a shell on the cluster.
 *
 *   GET  /events/status[?stream=]        EventsStatus JSON (same as `events status --json`)
 *   GET  /dead-letters[?group=&status=&type=&limit=&before=]
 *                                        newest first by id; {items, next} where `next` is the `before` of the next page
 *   GET  /dead-letters/:id               one dead letter, payload and error included
 *   POST /dead-letters/:id/replay        re-enqueue through the outbox with the original event_id
 *   POST /dead-letters/:id/discard
 *   POST /leases/release                 body {"stream": "...", "role": "publisher" | "maintenance" | "consumer:<group>"}
 *   POST /leases/release-dead            every lease whose owner is dead or never registered
 *   GET  /nodes                          registered processes and every lease with its owner's liveness
 *   GET  /events/lookup?q=               journeys of the events matching an event id, outbox id, Redis entry id or partition key
 *   GET  /dead-letters/groups            dead letters grouped by fingerprint
 *   POST /dead-letters/groups/:fingerprint/replay|discard   the whole group, or body {"ids": [...]} (a selection within it)
 *   GET  /parked-keys[?group=&stream=&key=&halted=true&limit=]
 *                                        parked keys, halted first, each with its head event, error and parked count
 *                                        (same as `events key list --json`)
 *   POST /parked-keys/release            body {"group", "stream" (partition stream), "key"}: retry the head now, fresh attempts
 *   POST /parked-keys/discard            same body: the head becomes a discarded dead letter, the key goes on
 *
 * Every route needs `X-Admin-Key` equal to ADMIN_API_KEY (compared in
 * constant time): 401 without it or when wrong, 503 when no key is configured
 * (the admin API is then off). 400 bad input, 404 unknown id, lease or parked key,
 * 409 dead letter not in status `dead`. Every action is logged with who and what.
 */
import express, { type NextFunction, type Request, type Response, type Router } from 'express';
import type { RedisClient } from '@petcover/service-kit';
import type { Logger } from 'pino';
import { z } from 'zod';
import { sameKey } from './admin-key';
import { describeIssues, GROUP_NAME_PATTERN, MAX_PARTITION_KEY_LENGTH, parkedKeyRefSchema } from './parked-key-input';
import {
  collectEventsStatus,
  collectNodesAndLeases,
  deadLettersOfFingerprint,
  listDeadLetterGroups,
  lookupEvents,
  releaseLeasesOfDeadOwners,
  resolveDeadLetters,
  DeadLetterNotFoundError,
  DEAD_LETTER_STATUSES,
  DeadLetterStateError,
  discardDeadLetter,
  discardParkedHead,
  forceReleaseLease,
  getDeadLetter,
  listDeadLetters,
  listParkedKeys,
  ParkedKeyNotFoundError,
  PARTITION_STREAM_NAME_PATTERN,
  releaseParkedKey,
  replayDeadLetter,
  STREAM_NAME_PATTERN,
  type Database,
  type ParkedKeyRef,
  type Sql,
  type StreamPartitions,
} from '@petcover/outbox';

export interface AdminRouterDeps {
  /** ADMIN_API_KEY; when empty or undefined every admin route answers 503. */
  adminKey: string | undefined;
  db: Database;
  sql: Sql;
  redis: RedisClient;
  logger: Logger;
  /** REDIS_KEY_PREFIX of the pipeline; default ''. */
  keyPrefix?: string;
  /** STREAM_PARTITIONS of the pipeline. */
  partitions?: StreamPartitions;
}

export const ADMIN_KEY_HEADER = 'x-admin-key';
/** Optional free-text name of the person acting, recorded with each action. */
export const ADMIN_ACTOR_HEADER = 'x-admin-actor';


const leaseReleaseBody = z.object({
  stream: z.string().regex(PARTITION_STREAM_NAME_PATTERN, 'must look like stream:<context>:<name>[:p<N>]'),
  role: z.string().regex(/^(publisher|maintenance|consumer:[A-Za-z0-9_.-]+)$/, 'must be publisher, maintenance or consumer:<group>'),
}).strict();

/** The path without its query string: a key someone put in `?key=` must never reach the logs. */
function pathOf(req: Request): string {
  return `${req.baseUrl}${req.path}`;
}

const limitParam = z.string().regex(/^\d{1,4}$/, 'must be an integer from 1 to 1000').transform(Number).refine((n) => n >= 1 && n <= 1_000, 'must be an integer from 1 to 1000');

const parkedKeyQuery = z
  .object({
    group: z.string().regex(GROUP_NAME_PATTERN, 'must hold only letters, digits and _.-').optional(),
    stream: z.string().regex(PARTITION_STREAM_NAME_PATTERN, 'must look like stream:<context>:<name>[:p<N>]').optional(),
    key: z.string().min(1).max(MAX_PARTITION_KEY_LENGTH).optional(),
    halted: z.enum(['true', 'false']).transform((v) => v === 'true').optional(),
    limit: limitParam.optional(),
  })
  .strict();

const deadLetterQuery = z
  .object({
    group: z.string().regex(GROUP_NAME_PATTERN, 'must hold only letters, digits and _.-').optional(),
    status: z.enum(DEAD_LETTER_STATUSES).optional(),
    type: z.string().min(1).max(200).optional(),
    limit: limitParam.optional(),
    before: z.string().regex(/^\d{1,19}$/, 'must be a dead letter id').optional(),
  })
  .strict();

function sendError(res: Response, status: number, error: string, message: string): void {
  res.status(status).json({ error, message });
}

/** Who acts: `admin:<X-Admin-Actor>` when given (trimmed to a sane length), else `admin:key`, plus the client address. */
function actorOf(req: Request): string {
  const raw = req.get(ADMIN_ACTOR_HEADER);
  const name = raw && /^[\w .@:-]{1,100}$/.test(raw) ? raw.trim() : 'key';
  return `admin:${name}@${req.ip ?? 'unknown'}`;
}

/** dead_letter.id is a bigint: larger ids cannot exist (and made Postgres answer 500). */
const MAX_BIGINT = 9223372036854775807n;

function deadLetterId(req: Request, res: Response): string | null {
  const id = String(req.params.id);
  if (!/^\d{1,19}$/.test(id) || BigInt(id) < 1n || BigInt(id) > MAX_BIGINT) {
    sendError(res, 400, 'bad_request', `dead letter id must be an integer from 1 to ${MAX_BIGINT} (got ${JSON.stringify(id.slice(0, 40))})`);
    return null;
  }
  return id;
}

export function createAdminRouter(deps: AdminRouterDeps): Router {
  const router = express.Router();
  const log = deps.logger.child({ component: 'admin' });

  router.use((req, res, next) => {
    if (!deps.adminKey) {
      sendError(res, 503, 'admin_disabled', 'the admin API is off: ADMIN_API_KEY is not set');
      return;
    }
    const given = req.get(ADMIN_KEY_HEADER);
    if (!given || !sameKey(given, deps.adminKey)) {
      log.warn({ method: req.method, path: pathOf(req), ip: req.ip, keyGiven: Boolean(given) }, 'admin request refused: missing or wrong X-Admin-Key');
      sendError(res, 401, 'unauthorized', given ? 'wrong X-Admin-Key' : 'X-Admin-Key header required');
      return;
    }
    next();
  });
  router.use(express.json({ limit: '16kb' }));

  router.get('/events/status', async (req, res) => {
    const stream = req.query.stream;
    if (stream !== undefined && (typeof stream !== 'string' || !STREAM_NAME_PATTERN.test(stream))) {
      sendError(res, 400, 'bad_request', 'stream must look like stream:<context>:<name>');
      return;
    }
    const status = await collectEventsStatus({
      sql: deps.sql,
      redis: deps.redis,
      keyPrefix: deps.keyPrefix,
      partitions: deps.partitions,
      stream,
    });
    res.json(status);
  });

  router.get('/dead-letters', async (req, res) => {
    const parsed = deadLetterQuery.safeParse(req.query);
    if (!parsed.success) {
      sendError(res, 400, 'bad_request', describeIssues(parsed.error, 'query'));
      return;
    }
    const { group, status, type, before } = parsed.data;
    const limit = parsed.data.limit ?? 50;
    const items = await listDeadLetters(deps.sql, { group, status, type, limit, after: before });
    res.json({ items, next: items.length === limit ? items[items.length - 1]!.id : null });
  });

  router.get('/dead-letters/:id', async (req, res) => {
    const id = deadLetterId(req, res);
    if (id === null) return;
    const letter = await getDeadLetter(deps.sql, id);
    if (!letter) {
      sendError(res, 404, 'not_found', `dead letter ${id} does not exist`);
      return;
    }
    res.json(letter);
  });

  router.post('/dead-letters/:id/replay', async (req, res) => {
    const id = deadLetterId(req, res);
    if (id === null) return;
    const by = actorOf(req);
    const result = await replayDeadLetter(deps.db, id, { by });
    log.info({ action: 'dead_letter.replay', deadLetterId: id, by, eventId: result.eventId, outboxId: result.outboxId }, 'admin replayed a dead letter');
    res.json({ deadLetterId: id, status: 'replayed', eventId: result.eventId, outboxId: result.outboxId });
  });

  router.post('/dead-letters/:id/discard', async (req, res) => {
    const id = deadLetterId(req, res);
    if (id === null) return;
    const by = actorOf(req);
    await discardDeadLetter(deps.db, id, { by });
    log.info({ action: 'dead_letter.discard', deadLetterId: id, by }, 'admin discarded a dead letter');
    res.json({ deadLetterId: id, status: 'discarded' });
  });

  router.post('/leases/release', async (req, res) => {
    const parsed = leaseReleaseBody.safeParse(req.body ?? {});
    if (!parsed.success) {
      sendError(res, 400, 'bad_request', describeIssues(parsed.error, 'body'));
      return;
    }
    const { stream, role } = parsed.data;
    const by = actorOf(req);
    const released = await forceReleaseLease(deps.sql, { streamName: stream, role });
    log.info({ action: 'lease.release', stream, role, by, released }, released ? 'admin released a lease' : 'admin lease release found no lease');
    if (!released) {
      sendError(res, 404, 'not_found', `no ${role} lease on ${stream}`);
      return;
    }
    res.json({ stream, role, released: true });
  });

  router.post('/leases/release-dead', async (req, res) => {
    const by = actorOf(req);
    const released = await releaseLeasesOfDeadOwners(deps.sql);
    log.info({ action: 'lease.release_dead', by, released: released.length }, 'admin released the leases of dead owners');
    res.json({ released });
  });

  router.get('/nodes', async (_req, res) => {
    res.json(await collectNodesAndLeases(deps.sql));
  });

  router.get('/events/lookup', async (req, res) => {
    const q = req.query.q;
    if (typeof q !== 'string' || q.trim() === '' || q.length > 500) {
      sendError(res, 400, 'bad_request', 'q must be an event id, outbox id, Redis entry id or partition key (1-500 characters)');
      return;
    }
    const result = await lookupEvents({ sql: deps.sql, redis: deps.redis, keyPrefix: deps.keyPrefix, partitions: deps.partitions }, q);
    res.status(result.events.length > 0 ? 200 : 404).json(result);
  });

  router.get('/dead-letters/groups', async (_req, res) => {
    res.json({ groups: await listDeadLetterGroups(deps.sql) });
  });

  const groupActionBody = z.object({ ids: z.array(z.string().regex(/^\d{1,19}$/, 'must be a dead letter id')).min(1).max(10_000).optional() }).strict();
  for (const verb of ['replay', 'discard'] as const) {
    router.post(`/dead-letters/groups/:fingerprint/${verb}`, async (req, res) => {
      const fingerprint = String(req.params.fingerprint);
      if (!/^[0-9a-f]{12}$/.test(fingerprint)) {
        sendError(res, 400, 'bad_request', 'fingerprint must be 12 hex characters (see GET /dead-letters/groups)');
        return;
      }
      const parsed = groupActionBody.safeParse(req.body ?? {});
      if (!parsed.success) {
        sendError(res, 400, 'bad_request', describeIssues(parsed.error, 'body'));
        return;
      }
      const inGroup = (await deadLettersOfFingerprint(deps.sql, fingerprint)).map((l) => l.id);
      const chosen = parsed.data.ids;
      const outside = chosen?.filter((id) => !inGroup.includes(id)) ?? [];
      if (inGroup.length === 0 || outside.length > 0) {
        sendError(res, 404, 'not_found', inGroup.length === 0 ? `no dead letter with status dead has fingerprint ${fingerprint}` : `not dead letters of this group: ${outside.join(', ')}`);
        return;
      }
      const by = actorOf(req);
      const outcomes = await resolveDeadLetters(deps.db, verb, chosen ? inGroup.filter((id) => chosen.includes(id)) : inGroup, { by });
      log.info({ action: `dead_letter.${verb}`, fingerprint, by, done: outcomes.filter((o) => o.ok).length, total: outcomes.length }, `admin ${verb} of a dead-letter group`);
      res.json({ fingerprint, outcomes });
    });
  }

  router.get('/parked-keys', async (req, res) => {
    const parsed = parkedKeyQuery.safeParse(req.query);
    if (!parsed.success) {
      sendError(res, 400, 'bad_request', describeIssues(parsed.error, 'query'));
      return;
    }
    const { group, stream, key, halted, limit } = parsed.data;
    res.json({ items: await listParkedKeys(deps.sql, { group, stream, key, haltedOnly: halted, limit: limit ?? 100 }) });
  });

  /** Release: the head is retried now with fresh attempts. Discard: the head becomes a discarded dead letter, the key goes on. */
  const parkedKeyActions = {
    release: async (ref: ParkedKeyRef) => {
      await releaseParkedKey(deps.db, ref);
      return { released: true };
    },
    discard: async (ref: ParkedKeyRef, by: string) => {
      const { eventId, released } = await discardParkedHead(deps.db, ref, { by });
      return { discardedEventId: eventId, keyReleased: released };
    },
  };
  for (const verb of ['release', 'discard'] as const) {
    router.post(`/parked-keys/${verb}`, async (req, res) => {
      const parsed = parkedKeyRefSchema.safeParse(req.body ?? {});
      if (!parsed.success) {
        sendError(res, 400, 'bad_request', describeIssues(parsed.error, 'body'));
        return;
      }
      const ref = parsed.data;
      const by = actorOf(req);
      const outcome = await parkedKeyActions[verb](ref, by);
      log.info({ action: `parked_key.${verb}`, ...ref, by, ...outcome }, `admin ${verb === 'release' ? 'released a parked key' : 'discarded the head of a parked key'}`);
      res.json({ ...ref, ...outcome });
    });
  }

  // Typed refusals become precise statuses; body-parser errors keep theirs (400 malformed JSON, 413 too large).
  router.use((error: unknown, req: Request, res: Response, _next: NextFunction) => {
    if (error instanceof DeadLetterNotFoundError || error instanceof ParkedKeyNotFoundError) return sendError(res, 404, 'not_found', error.message);
    if (error instanceof DeadLetterStateError) {
      log.info({ action: req.path, by: actorOf(req), reason: error.message }, 'admin action refused');
      return sendError(res, 409, 'conflict', error.message);
    }
    const status = (error as { status?: number; type?: string }).status;
    if (typeof status === 'number' && status >= 400 && status < 500) {
      return sendError(res, status, status === 413 ? 'payload_too_large' : 'bad_request', (error as Error).message);
    }
    log.error({ err: error, method: req.method, path: pathOf(req) }, 'admin request failed');
    sendError(res, 500, 'internal', 'admin request failed; see the api logs');
  });

  return router;
}
