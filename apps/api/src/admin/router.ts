/**
 * Admin HTTP routes of the api (mounted at `/v1/admin`): the same operations
 * as the `events` command, for people without a shell on the cluster.
 *
 *   GET  /events/status[?stream=]        EventsStatus JSON (same as `events status --json`)
 *   POST /dead-letters/:id/replay        re-enqueue through the outbox with the original event_id
 *   POST /dead-letters/:id/discard
 *   POST /leases/release                 body {"stream": "...", "role": "publisher" | "maintenance" | "consumer:<group>"}
 *
 * Every route needs `X-Admin-Key` equal to ADMIN_API_KEY (compared in
 * constant time): 401 without it or when wrong, 503 when no key is configured
 * (the admin API is then off). 400 bad input, 404 unknown id or lease,
 * 409 dead letter not in status `dead`. Every action is logged with who and what.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import express, { type NextFunction, type Request, type Response, type Router } from 'express';
import type { RedisClient } from '@petcover/service-kit';
import type { Logger } from 'pino';
import { z } from 'zod';
import {
  collectEventsStatus,
  DeadLetterNotFoundError,
  DeadLetterStateError,
  discardDeadLetter,
  forceReleaseLease,
  PARTITION_STREAM_NAME_PATTERN,
  replayDeadLetter,
  STREAM_NAME_PATTERN,
  type Database,
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

/** Hashing first makes both sides the same length, so the comparison leaks neither content nor length. */
function sameKey(given: string, expected: string): boolean {
  const a = createHash('sha256').update(given).digest();
  const b = createHash('sha256').update(expected).digest();
  return timingSafeEqual(a, b);
}

const leaseReleaseBody = z.object({
  stream: z.string().regex(PARTITION_STREAM_NAME_PATTERN, 'must look like stream:<context>:<name>[:p<N>]'),
  role: z.string().regex(/^(publisher|maintenance|consumer:[A-Za-z0-9_.-]+)$/, 'must be publisher, maintenance or consumer:<group>'),
}).strict();

function sendError(res: Response, status: number, error: string, message: string): void {
  res.status(status).json({ error, message });
}

/** Who acts: `admin:<X-Admin-Actor>` when given (trimmed to a sane length), else `admin:key`, plus the client address. */
function actorOf(req: Request): string {
  const raw = req.get(ADMIN_ACTOR_HEADER);
  const name = raw && /^[\w .@:-]{1,100}$/.test(raw) ? raw.trim() : 'key';
  return `admin:${name}@${req.ip ?? 'unknown'}`;
}

function deadLetterId(req: Request, res: Response): string | null {
  const id = String(req.params.id);
  if (!/^\d{1,19}$/.test(id)) {
    sendError(res, 400, 'bad_request', `dead letter id must be a positive integer (got ${JSON.stringify(id)})`);
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
      log.warn({ method: req.method, path: req.originalUrl, ip: req.ip, keyGiven: Boolean(given) }, 'admin request refused: missing or wrong X-Admin-Key');
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
      sendError(res, 400, 'bad_request', parsed.error.issues.map((i) => `${i.path.join('.') || 'body'}: ${i.message}`).join('; '));
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

  // Typed refusals become precise statuses; body-parser errors keep theirs (400 malformed JSON, 413 too large).
  router.use((error: unknown, req: Request, res: Response, _next: NextFunction) => {
    if (error instanceof DeadLetterNotFoundError) return sendError(res, 404, 'not_found', error.message);
    if (error instanceof DeadLetterStateError) {
      log.info({ action: req.path, by: actorOf(req), reason: error.message }, 'admin action refused');
      return sendError(res, 409, 'conflict', error.message);
    }
    const status = (error as { status?: number; type?: string }).status;
    if (typeof status === 'number' && status >= 400 && status < 500) {
      return sendError(res, status, status === 413 ? 'payload_too_large' : 'bad_request', (error as Error).message);
    }
    log.error({ err: error, method: req.method, path: req.originalUrl }, 'admin request failed');
    sendError(res, 500, 'internal', 'admin request failed; see the api logs');
  });

  return router;
}
