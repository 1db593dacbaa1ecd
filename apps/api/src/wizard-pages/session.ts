/**
 * The wizard's browser session: the owner token (the same signed bearer
 * token the JSON API takes) kept in an HttpOnly cookie, so page scripts never
 * see it. SameSite=Lax: it goes along with top-level navigation to the site,
 * not with cross-site form posts (which CSRF tokens refuse anyway).
 */
import type { Request, RequestHandler, Response } from 'express';
import { InvalidOwnerTokenError, verifyOwnerToken, type OwnerTokenConfig } from '../auth/owner-token';
import { readCookie } from '../pages/render';

export const OWNER_COOKIE = 'petcover_owner';

/** How long a dev sign-in lasts: a working day. */
export const DEV_SESSION_SECONDS = 8 * 3600;

export interface Session {
  /** The signed-in owner's global user id. */
  owner: string | undefined;
  /** Why a cookie that was sent is not a valid session (expired, bad signature, ...). */
  problem?: string;
}

/** Verifies the session cookie, if any, and keeps the result in `res.locals.session`. */
export function loadSession(config: OwnerTokenConfig): RequestHandler {
  return async (req, res, next) => {
    const token = readCookie(req, OWNER_COOKIE);
    let session: Session = { owner: undefined };
    if (token) {
      try {
        session = { owner: await verifyOwnerToken(token, config) };
      } catch (error) {
        if (!(error instanceof InvalidOwnerTokenError)) return next(error);
        session = { owner: undefined, problem: error.message };
      }
    }
    res.locals.session = session;
    next();
  };
}

export function sessionOf(res: Response): Session {
  return (res.locals.session as Session | undefined) ?? { owner: undefined };
}

export function startSession(req: Request, res: Response, token: string, maxAgeSeconds: number): void {
  res.cookie(OWNER_COOKIE, token, { httpOnly: true, sameSite: 'lax', path: '/', secure: req.secure, maxAge: maxAgeSeconds * 1000 });
}

export function endSession(res: Response): void {
  res.clearCookie(OWNER_COOKIE, { path: '/' });
}

/** Thrown by owner pages without a valid session; rendered as the sign-in prompt (401). */
export class SignInRequiredError extends Error {
  constructor(readonly problem: string | undefined) {
    super(problem ? `your session is not valid (${problem}); sign in again` : 'sign in to continue');
    this.name = 'SignInRequiredError';
  }
}

/** Owner pages: without a valid session, fails with SignInRequiredError. Use after `loadSession`. */
export const requireOwnerSession: RequestHandler = (_req, res, next) => {
  const session = sessionOf(res);
  next(session.owner ? undefined : new SignInRequiredError(session.problem));
};

export function sessionOwner(res: Response): string {
  return sessionOf(res).owner as string;
}
