/**
 * How the api renders HTML pages (the owner wizard at `/`, the operator
 * console): server-side with preact + htm tagged templates and
 * preact-render-to-string, so every interpolated value is escaped by the
 * library, never by string concatenation. Plain HTML forms post back; htmx
 * (served from node_modules) is used only where the page must change
 * without a reload (e.g. polling an enrollment). No build step beyond tsc.
 *
 * Also here: the document shell, the static asset route, and CSRF
 * protection of every form (double-submit token).
 */
import { randomBytes, timingSafeEqual } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import express, { Router, type NextFunction, type Request, type RequestHandler, type Response } from 'express';
import htm from 'htm';
import { h, type ComponentChildren, type VNode } from 'preact';
import { render } from 'preact-render-to-string';

/** The tagged template: html`<p>${value}</p>`; values are escaped when rendered. */
export const html = htm.bind(h) as (strings: TemplateStringsArray, ...values: unknown[]) => VNode;
export type { ComponentChildren, VNode };

/** Where the shell loads its assets from; see `pageAssetsRouter`. */
export const ASSETS_PATH = '/assets';

export interface PageOptions {
  title: string;
  body: ComponentChildren;
  /** Loads htmx (only pages that poll or swap parts need it). */
  htmx?: boolean;
}

/** A full HTML document: doctype, language, viewport for phones, the shared stylesheet. */
export function renderDocument(options: PageOptions): string {
  const page = html`<html lang="en">
    <head>
      <meta charset="utf-8" />
      <meta name="viewport" content="width=device-width, initial-scale=1" />
      <title>${options.title}</title>
      <link rel="stylesheet" href=${`${ASSETS_PATH}/pages.css`} />
      ${options.htmx ? html`<script src=${`${ASSETS_PATH}/htmx.min.js`} defer></script>` : null}
    </head>
    <body>
      <a class="skip-link" href="#main">Skip to content</a>
      ${options.body}
    </body>
  </html>`;
  return `<!doctype html>${render(page)}`;
}

/** Renders a fragment (an htmx swap target), without the document shell. */
export function renderFragment(node: VNode): string {
  return render(node);
}

/** Sends a full page with `status`; pages are never cached (they show live state). */
export function sendPage(res: Response, status: number, options: PageOptions): void {
  res.status(status).set('cache-control', 'no-store').type('html').send(renderDocument(options));
}

const HTMX_FILE = require.resolve('htmx.org/dist/htmx.min.js');
const STYLESHEET_FILE = path.join(__dirname, 'pages.css');

/** `GET /assets/htmx.min.js` and `/assets/pages.css`: the only static files the pages use. */
export function pageAssetsRouter(): Router {
  const router = Router();
  const stylesheet = fs.readFileSync(STYLESHEET_FILE, 'utf8');
  // Read once and sent from memory: sendFile refuses pnpm's node_modules/.pnpm/... path (a dot segment).
  const htmx = fs.readFileSync(HTMX_FILE, 'utf8');
  router.get('/htmx.min.js', (_req, res) => {
    res.set('cache-control', 'public, max-age=3600').type('js').send(htmx);
  });
  router.get('/pages.css', (_req, res) => {
    res.set('cache-control', 'public, max-age=3600').type('css').send(stylesheet);
  });
  return router;
}

/** Form bodies of the pages: urlencoded, small. */
export const readForm: RequestHandler = express.urlencoded({ extended: false, limit: '16kb' });

// --- CSRF: double-submit token -------------------------------------------
// A random token lives in an HttpOnly, SameSite=Strict cookie, and every
// form carries the same value in a hidden field. A cross-site form can
// neither read the cookie nor make the browser send it, so it cannot match.

export const CSRF_COOKIE = 'petcover_csrf';
export const CSRF_FIELD = '_csrf';

export class CsrfError extends Error {
  constructor() {
    super('the form has expired or did not come from this site; reload the page and try again');
    this.name = 'CsrfError';
  }
}

/** Reads one cookie of the request (no cookie middleware needed). */
export function readCookie(req: Request, name: string): string | undefined {
  const header = req.get('cookie');
  if (!header) return undefined;
  for (const part of header.split(';')) {
    const index = part.indexOf('=');
    if (index > 0 && part.slice(0, index).trim() === name) return decodeURIComponent(part.slice(index + 1).trim());
  }
  return undefined;
}

/**
 * Makes sure the browser holds a CSRF token and puts it in
 * `res.locals.csrfToken` for the forms of the page.
 */
export const issueCsrfToken: RequestHandler = (req, res, next) => {
  let token = readCookie(req, CSRF_COOKIE);
  if (!token || !/^[A-Za-z0-9_-]{43}$/.test(token)) {
    token = randomBytes(32).toString('base64url');
    res.cookie(CSRF_COOKIE, token, { httpOnly: true, sameSite: 'strict', path: '/', secure: req.secure });
  }
  res.locals.csrfToken = token;
  next();
};

/** Rejects (CsrfError) a form post whose `_csrf` field does not equal the cookie. Use after `readForm`. */
export function verifyCsrfToken(req: Request, _res: Response, next: NextFunction): void {
  const cookie = readCookie(req, CSRF_COOKIE);
  const field = (req.body as Record<string, unknown> | undefined)?.[CSRF_FIELD];
  const ok =
    typeof cookie === 'string' && typeof field === 'string' && cookie.length === field.length && timingSafeEqual(Buffer.from(cookie), Buffer.from(field));
  next(ok ? undefined : new CsrfError());
}

/** Middleware of every form post: reads the urlencoded body, checks its CSRF token, keeps a token for the answer page. */
export const acceptForm: RequestHandler = Router().use(readForm, verifyCsrfToken, issueCsrfToken);

/** The hidden field every form carries. */
export function csrfField(res: Response): VNode {
  return html`<input type="hidden" name=${CSRF_FIELD} value=${res.locals.csrfToken as string} />`;
}
