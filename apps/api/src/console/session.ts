/**
 * Console sign-in: the operator types the admin key once; the console then
 * holds a session in an HttpOnly, SameSite=Strict cookie scoped to
 * `/console`, signed with a key derived from ADMIN_API_KEY (so sessions work
 * on every replica, survive restarts, and all end when the key is rotated).
 * The cookie holds expiry and mode only, never the key itself.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Request, Response } from 'express';
import { sameKey } from '../admin/admin-key';
import { readCookie } from '../pages/render';

export const SESSION_COOKIE = 'petcover_console';
export const CONSOLE_PATH = '/console';
/** A working day; the operator signs in again after it. */
export const SESSION_TTL_SECONDS = 8 * 3600;

export type ConsoleMode = 'read-write' | 'read-only';

export interface ConsoleKeys {
  /** ADMIN_API_KEY: signs in read-write (read-only when `readOnly`). */
  adminKey: string;
  /** ADMIN_READ_ONLY_KEY: signs in read-only. */
  readOnlyKey?: string;
  /** CONSOLE_READ_ONLY=1: every session is read-only, whatever the key. */
  readOnly: boolean;
}

export interface ConsoleSession {
  mode: ConsoleMode;
  expiresAt: Date;
}

function signingKey(adminKey: string): Buffer {
  return createHmac('sha256', adminKey).update('petcover-console-session-v1').digest();
}

function mac(adminKey: string, body: string): string {
  return createHmac('sha256', signingKey(adminKey)).update(body).digest('base64url');
}

/** The mode `key` signs in with, or null when it is neither key. Constant time per comparison. */
export function modeForKey(keys: ConsoleKeys, key: string): ConsoleMode | null {
  const admin = sameKey(key, keys.adminKey);
  const readOnly = keys.readOnlyKey !== undefined && sameKey(key, keys.readOnlyKey);
  if (admin) return keys.readOnly ? 'read-only' : 'read-write';
  return readOnly ? 'read-only' : null;
}

export function startSession(req: Request, res: Response, keys: ConsoleKeys, mode: ConsoleMode): void {
  const expires = Math.floor(Date.now() / 1000) + SESSION_TTL_SECONDS;
  const body = `${expires}.${mode === 'read-only' ? 'ro' : 'rw'}.${randomBytes(9).toString('base64url')}`;
  res.cookie(SESSION_COOKIE, `${body}.${mac(keys.adminKey, body)}`, {
    httpOnly: true,
    sameSite: 'strict',
    secure: req.secure,
    path: CONSOLE_PATH,
    maxAge: SESSION_TTL_SECONDS * 1000,
  });
}

export function endSession(req: Request, res: Response): void {
  res.clearCookie(SESSION_COOKIE, { httpOnly: true, sameSite: 'strict', secure: req.secure, path: CONSOLE_PATH });
}

/** The request's valid session, or null (none, forged, expired, or signed under an older key). */
export function readSession(req: Request, keys: ConsoleKeys): ConsoleSession | null {
  const value = readCookie(req, SESSION_COOKIE);
  const match = value ? /^(\d{1,12})\.(rw|ro)\.([A-Za-z0-9_-]{12})\.([A-Za-z0-9_-]{43})$/.exec(value) : null;
  if (!match) return null;
  const [, expires, mode, nonce, signature] = match as unknown as [string, string, string, string, string];
  const expected = mac(keys.adminKey, `${expires}.${mode}.${nonce}`);
  if (!timingSafeEqual(Buffer.from(signature), Buffer.from(expected))) return null;
  const expiresAt = new Date(Number(expires) * 1000);
  if (expiresAt.getTime() <= Date.now()) return null;
  // CONSOLE_READ_ONLY turned on after sign-in still wins.
  return { mode: mode === 'ro' || keys.readOnly ? 'read-only' : 'read-write', expiresAt };
}
