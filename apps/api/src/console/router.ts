/**
 * The operator console at `/console` (same process and port as the api).
 * Closed (503) unless ADMIN_API_KEY is set; every page but sign-in needs a
 * session (see session.ts); every POST carries the CSRF field and is refused
 * with 403 without it; read-only sessions see no actions and may not post
 * them. Every query and action is the `@petcover/outbox` function the
 * `events` CLI and the admin JSON routes call.
 *
 *   GET  /console                          Overview (auto-refresh; ?refresh=off pauses)
 *   GET  /console/events?q=                Event lookup with the journey
 *   GET  /console/dead-letters             groups by fingerprint (?letter=<id> opens its group)
 *   GET  /console/dead-letters/:fp         the letters of one group
 *   POST /console/dead-letters/:fp/confirm asks to confirm replay/discard of a selection or the group
 *   POST /console/dead-letters/:fp/replay|discard
 *   GET  /console/parked-keys              parked keys (halted first) with head event and error
 *   POST /console/parked-keys/confirm      asks to confirm release / discard of one key's head
 *   POST /console/parked-keys/release|discard
 *   GET  /console/nodes                    nodes and leases
 *   POST /console/leases/release | /console/leases/release-dead
 *   GET|POST /console/sign-in, POST /console/sign-out
 */
import fs from 'node:fs';
import path from 'node:path';
import express, { type NextFunction, type Request, type Response, type Router } from 'express';
import {
  collectEventsStatus,
  collectNodesAndLeases,
  deadLettersOfFingerprint,
  discardParkedHead,
  forceReleaseLease,
  getDeadLetter,
  fingerprintOf,
  listDeadLetterGroups,
  listParkedKeys,
  lookupEvents,
  ParkedKeyNotFoundError,
  PARTITION_STREAM_NAME_PATTERN,
  releaseLeasesOfDeadOwners,
  releaseParkedKey,
  resolveDeadLetters,
  type ParkedKeyRef,
} from '@petcover/outbox';
import { describeIssues, parkedKeyRefSchema } from '../admin/parked-key-input';
import type { AdminRouterDeps } from '../admin/router';
import { CsrfError, issueCsrfToken, readCookie, readForm, sendPage, verifyCsrfToken, type VNode } from '../pages/render';
import { CONSOLE_PATH, endSession, modeForKey, readSession, startSession, type ConsoleKeys, type ConsoleSession } from './session';
import {
  confirmPage,
  deadLetterGroupPage,
  deadLetterGroupsPage,
  lookupPage,
  messagePage,
  nodesPage,
  overviewPage,
  parkedKeyConfirmPage,
  parkedKeysPage,
  signInPage,
  type ViewContext,
} from './views';

/** What the admin routes need (the console without ADMIN_API_KEY is closed, 503), plus the console's own settings. */
export interface ConsoleRouterDeps extends AdminRouterDeps {
  /** ADMIN_READ_ONLY_KEY: signs in read-only. */
  readOnlyKey?: string;
  /** CONSOLE_READ_ONLY=1: every session is read-only. */
  readOnly: boolean;
  /** Overview auto-refresh; default 5 s. */
  refreshSeconds?: number;
}

const NOTICE_COOKIE = 'petcover_console_notice';
const FINGERPRINT = /^[0-9a-f]{12}$/;
const LEASE_ROLE = /^(publisher|maintenance|consumer:[A-Za-z0-9_.-]+)$/;
const STYLESHEET = fs.readFileSync(path.join(__dirname, 'console.css'), 'utf8');

/** A console request that cannot be served as asked: shown as a page with this status. */
class ConsoleRequestError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
    this.name = 'ConsoleRequestError';
  }
}

function page(res: Response, status: number, title: string, body: VNode, htmx = false): void {
  sendPage(res, status, { title: `${title} · PetCover events`, body, htmx });
}

/** Form values that may repeat (`ids`): always an array of strings. */
function formList(value: unknown): string[] {
  if (value === undefined) return [];
  return (Array.isArray(value) ? value : [value]).map(String);
}

export function createConsoleRouter(deps: ConsoleRouterDeps): Router {
  const router = express.Router();
  const log = deps.logger.child({ component: 'console' });
  const refreshSeconds = deps.refreshSeconds ?? 5;

  router.get('/console.css', (_req, res) => {
    res.set('cache-control', 'public, max-age=3600').type('css').send(STYLESHEET);
  });

  const adminKey = deps.adminKey;
  if (!adminKey) {
    router.use((_req, res) => {
      page(res, 503, 'Console closed', messagePage('Console closed', 'The console is off: set ADMIN_API_KEY on the api to open it.'));
    });
    return router;
  }
  const keys: ConsoleKeys = { adminKey, readOnlyKey: deps.readOnlyKey, readOnly: deps.readOnly };

  const safeNext = (value: unknown) =>
    typeof value === 'string' && value.startsWith(CONSOLE_PATH) && !value.startsWith(`${CONSOLE_PATH}/sign-`) && !value.includes('//') ? value : CONSOLE_PATH;

  router.get('/sign-in', issueCsrfToken, (req, res) => {
    page(res, 200, 'Sign in', signInPage({ csrfToken: res.locals.csrfToken as string, next: safeNext(req.query.next) }));
  });

  router.post('/sign-in', readForm, verifyCsrfToken, issueCsrfToken, (req, res) => {
    const form = req.body as Record<string, unknown>;
    const mode = typeof form.key === 'string' ? modeForKey(keys, form.key) : null;
    if (!mode) {
      log.warn({ ip: req.ip }, 'console sign-in refused: wrong key');
      page(res, 401, 'Sign in', signInPage({ csrfToken: res.locals.csrfToken as string, next: safeNext(form.next), error: 'That key is not the admin key.' }));
      return;
    }
    startSession(req, res, keys, mode);
    log.info({ ip: req.ip, mode }, 'console sign-in');
    res.redirect(303, safeNext(form.next));
  });

  // Everything below needs a session.
  router.use((req, res, next) => {
    const session = readSession(req, keys);
    if (!session) {
      res.redirect(303, `${CONSOLE_PATH}/sign-in?next=${encodeURIComponent(req.method === 'GET' ? req.originalUrl : CONSOLE_PATH)}`);
      return;
    }
    res.locals.session = session;
    next();
  });
  router.use(issueCsrfToken);

  const context = (req: Request, res: Response): ViewContext => {
    const notice = readCookie(req, NOTICE_COOKIE);
    if (notice) res.clearCookie(NOTICE_COOKIE, { path: CONSOLE_PATH });
    return { mode: (res.locals.session as ConsoleSession).mode, csrfToken: res.locals.csrfToken as string, notice };
  };
  /** Post-redirect-get: the outcome of an action is shown once on the next page. */
  const redirectWithNotice = (res: Response, to: string, notice: string) => {
    res.cookie(NOTICE_COOKIE, notice.slice(0, 300), { httpOnly: true, sameSite: 'strict', path: CONSOLE_PATH });
    res.redirect(303, to);
  };
  /** Actions: a form post with the CSRF field, from a read-write session. */
  const action = [
    readForm,
    verifyCsrfToken,
    (_req: Request, res: Response, next: NextFunction) => {
      if ((res.locals.session as ConsoleSession).mode !== 'read-write') next(new ConsoleRequestError(403, 'This console session is read-only: actions are off.'));
      else next();
    },
  ];
  /** Recorded as `resolved_by` of dead letters and in the audit log lines. */
  const actor = (req: Request) => `console:admin@${req.ip ?? 'unknown'}`;

  router.post('/sign-out', readForm, verifyCsrfToken, (req, res) => {
    endSession(req, res);
    res.redirect(303, `${CONSOLE_PATH}/sign-in`);
  });

  router.get('/', async (req, res) => {
    const status = await collectEventsStatus({ sql: deps.sql, redis: deps.redis, keyPrefix: deps.keyPrefix, partitions: deps.partitions });
    const refresh = req.query.refresh !== 'off';
    page(res, 200, 'Overview', overviewPage(context(req, res), status, { refresh, intervalSeconds: refreshSeconds }), refresh);
  });

  router.get('/events', async (req, res) => {
    const query = typeof req.query.q === 'string' ? req.query.q.trim() : '';
    if (query.length > 500) throw new ConsoleRequestError(400, 'The query is longer than 500 characters.');
    const result = query ? await lookupEvents({ sql: deps.sql, redis: deps.redis, keyPrefix: deps.keyPrefix, partitions: deps.partitions }, query) : null;
    page(res, 200, 'Event lookup', lookupPage(context(req, res), query, result));
  });

  router.get('/dead-letters', async (req, res) => {
    const letterId = req.query.letter;
    if (typeof letterId === 'string') {
      const letter = /^\d{1,19}$/.test(letterId) ? await getDeadLetter(deps.sql, letterId) : null;
      if (!letter) throw new ConsoleRequestError(404, `Dead letter ${letterId} does not exist.`);
      res.redirect(303, `${CONSOLE_PATH}/dead-letters/${fingerprintOf(letter).fingerprint}`);
      return;
    }
    page(res, 200, 'Dead letters', deadLetterGroupsPage(context(req, res), await listDeadLetterGroups(deps.sql)));
  });

  const fingerprintParam = (req: Request): string => {
    const fingerprint = String(req.params.fingerprint);
    if (!FINGERPRINT.test(fingerprint)) throw new ConsoleRequestError(400, 'A dead-letter fingerprint is 12 hex characters.');
    return fingerprint;
  };

  router.get('/dead-letters/:fingerprint', async (req, res) => {
    const fingerprint = fingerprintParam(req);
    const [groups, letters] = await Promise.all([listDeadLetterGroups(deps.sql), deadLettersOfFingerprint(deps.sql, fingerprint)]);
    const group = groups.find((g) => g.fingerprint === fingerprint) ?? null;
    page(res, 200, 'Dead letters', deadLetterGroupPage(context(req, res), group, fingerprint, letters));
  });

  /** The ids an action applies to: the selection (or the whole group), always within the group. */
  const selectedIds = async (fingerprint: string, form: Record<string, unknown>, whole: boolean): Promise<string[]> => {
    const inGroup = (await deadLettersOfFingerprint(deps.sql, fingerprint)).map((l) => l.id);
    if (whole) return inGroup;
    const chosen = formList(form.ids);
    if (chosen.some((id) => !/^\d{1,19}$/.test(id))) throw new ConsoleRequestError(400, 'Dead letter ids are numbers.');
    return inGroup.filter((id) => chosen.includes(id));
  };

  router.post('/dead-letters/:fingerprint/confirm', ...action, async (req, res) => {
    const fingerprint = fingerprintParam(req);
    const form = req.body as Record<string, unknown>;
    const requested = String(form.action ?? '');
    if (!['replay', 'discard', 'replay-all', 'discard-all'].includes(requested)) throw new ConsoleRequestError(400, 'Unknown action.');
    const whole = requested.endsWith('-all');
    const ids = await selectedIds(fingerprint, form, whole);
    if (ids.length === 0) {
      redirectWithNotice(res, `${CONSOLE_PATH}/dead-letters/${fingerprint}`, whole ? 'This group has no dead letters left.' : 'Select at least one dead letter first.');
      return;
    }
    const verb = requested.startsWith('replay') ? ('replay' as const) : ('discard' as const);
    const title = whole ? `The whole group ${fingerprint}.` : `The ${ids.length} selected letter(s) of group ${fingerprint}.`;
    page(res, 200, 'Confirm', confirmPage(context(req, res), { fingerprint, action: verb, ids, title }));
  });

  for (const verb of ['replay', 'discard'] as const) {
    router.post(`/dead-letters/:fingerprint/${verb}`, ...action, async (req, res) => {
      const fingerprint = fingerprintParam(req);
      const ids = await selectedIds(fingerprint, req.body as Record<string, unknown>, false);
      const by = actor(req);
      const outcomes = await resolveDeadLetters(deps.db, verb, ids, { by });
      const done = outcomes.filter((o) => o.ok).length;
      log.info({ action: `dead_letter.${verb}`, fingerprint, ids, done, by }, `console ${verb === 'replay' ? 'replayed' : 'discarded'} dead letters`);
      const refused = outcomes.filter((o) => !o.ok).map((o) => `#${o.id}: ${o.error}`);
      redirectWithNotice(
        res,
        `${CONSOLE_PATH}/dead-letters/${fingerprint}`,
        `${done} of ${outcomes.length} dead letter(s) ${verb === 'replay' ? 'replayed' : 'discarded'}.${refused.length > 0 ? ` Refused: ${refused.join('; ')}` : ''}`,
      );
    });
  }

  router.get('/parked-keys', async (req, res) => {
    page(res, 200, 'Parked keys', parkedKeysPage(context(req, res), await listParkedKeys(deps.sql, { limit: 500 })));
  });

  /** The parked key a form names (group, partition stream, key), checked as the admin routes check it. */
  const parkedKeyOf = (form: Record<string, unknown>): ParkedKeyRef => {
    const parsed = parkedKeyRefSchema.safeParse({ group: form.group, stream: form.stream, key: form.key });
    if (!parsed.success) throw new ConsoleRequestError(400, `The parked key is malformed: ${describeIssues(parsed.error, 'form')}.`);
    return parsed.data;
  };

  router.post('/parked-keys/confirm', ...action, async (req, res) => {
    const form = req.body as Record<string, unknown>;
    const requested = form.action;
    if (requested !== 'release' && requested !== 'discard') throw new ConsoleRequestError(400, 'Unknown action: release or discard.');
    const ref = parkedKeyOf(form);
    const [key] = (await listParkedKeys(deps.sql, { group: ref.group, stream: ref.stream, key: ref.key })).filter((k) => k.stream === ref.stream);
    if (!key) throw new ParkedKeyNotFoundError(ref);
    page(res, 200, 'Confirm', parkedKeyConfirmPage(context(req, res), requested, key));
  });

  router.post('/parked-keys/release', ...action, async (req, res) => {
    const ref = parkedKeyOf(req.body as Record<string, unknown>);
    const by = actor(req);
    await releaseParkedKey(deps.db, ref);
    log.info({ action: 'parked_key.release', ...ref, by }, 'console released a parked key');
    redirectWithNotice(res, `${CONSOLE_PATH}/parked-keys`, `Released key ${ref.key} of group ${ref.group}: its head event is retried now, with fresh attempts.`);
  });

  router.post('/parked-keys/discard', ...action, async (req, res) => {
    const ref = parkedKeyOf(req.body as Record<string, unknown>);
    const by = actor(req);
    const { eventId, released } = await discardParkedHead(deps.db, ref, { by });
    log.info({ action: 'parked_key.discard', ...ref, by, eventId, keyReleased: released }, 'console discarded the head of a parked key');
    const what = eventId === null ? 'nothing was parked under it any more' : `head event ${eventId} discarded (kept as a discarded dead letter)`;
    redirectWithNotice(res, `${CONSOLE_PATH}/parked-keys`, `Key ${ref.key} of group ${ref.group}: ${what}; ${released ? 'the key is released.' : 'its next event runs now.'}`);
  });

  router.get('/nodes', async (req, res) => {
    const { nodes, leases } = await collectNodesAndLeases(deps.sql);
    page(res, 200, 'Nodes and leases', nodesPage(context(req, res), nodes, leases));
  });

  router.post('/leases/release', ...action, async (req, res) => {
    const form = req.body as Record<string, unknown>;
    const stream = String(form.stream ?? '');
    const role = String(form.role ?? '');
    if (!PARTITION_STREAM_NAME_PATTERN.test(stream) || !LEASE_ROLE.test(role)) throw new ConsoleRequestError(400, 'stream or role is malformed.');
    const released = await forceReleaseLease(deps.sql, { streamName: stream, role });
    log.info({ action: 'lease.release', stream, role, by: actor(req), released }, 'console released a lease');
    redirectWithNotice(res, `${CONSOLE_PATH}/nodes`, released ? `Released the ${role} lease on ${stream}.` : `No ${role} lease on ${stream} any more.`);
  });

  router.post('/leases/release-dead', ...action, async (req, res) => {
    const released = await releaseLeasesOfDeadOwners(deps.sql);
    log.info({ action: 'lease.release_dead', released: released.length, by: actor(req) }, 'console released the leases of dead owners');
    redirectWithNotice(res, `${CONSOLE_PATH}/nodes`, `Released ${released.length} lease(s) of dead owners; running replicas take them over within their poll interval.`);
  });

  router.use((error: unknown, req: Request, res: Response, _next: NextFunction) => {
    if (error instanceof CsrfError) {
      log.warn({ method: req.method, path: req.originalUrl, ip: req.ip }, 'console post refused: CSRF token missing or wrong');
      page(res, 403, 'Refused', messagePage('Refused', error.message));
      return;
    }
    if (error instanceof ParkedKeyNotFoundError) {
      page(res, 404, 'Not found', messagePage('Not found', `No parked key ${JSON.stringify(error.ref.key)} in group ${error.ref.group} on ${error.ref.stream}: it was released or discarded already.`));
      return;
    }
    if (error instanceof ConsoleRequestError) {
      page(res, error.status, 'Refused', messagePage(error.status === 404 ? 'Not found' : 'Refused', error.message));
      return;
    }
    const status = (error as { status?: number }).status;
    if (typeof status === 'number' && status >= 400 && status < 500) {
      page(res, status, 'Refused', messagePage('Refused', (error as Error).message));
      return;
    }
    log.error({ err: error, method: req.method, path: req.originalUrl }, 'console request failed');
    page(res, 500, 'Error', messagePage('Something went wrong', 'The request failed; the api logs say why.'));
  });

  return router;
}
