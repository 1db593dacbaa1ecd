/**
 * Owner authentication: a JWT signed with HS256 under AUTH_SECRET whose
 * subject (`sub`) is the owner's global user id (a UUID). Implemented with
 * node:crypto (a dozen lines) rather than a dependency; only HS256 is
 * accepted, so `alg: none` and algorithm-confusion tokens are refused.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export class InvalidOwnerTokenError extends Error {
  constructor(reason: string) {
    super(reason);
    this.name = 'InvalidOwnerTokenError';
  }
}

function base64url(data: Buffer | string): string {
  return Buffer.from(data).toString('base64url');
}

function hmac(secret: string, input: string): Buffer {
  return createHmac('sha256', secret).update(input).digest();
}

/** Signs a token for `owner`, valid `ttlSeconds` (default 1 h). For tests, commands and demos. */
export function signOwnerToken(owner: string, secret: string, ttlSeconds = 3600, now = Date.now()): string {
  const issuedAt = Math.floor(now / 1000);
  const header = base64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }));
  const payload = base64url(JSON.stringify({ sub: owner, iat: issuedAt, exp: issuedAt + ttlSeconds }));
  return `${header}.${payload}.${base64url(hmac(secret, `${header}.${payload}`))}`;
}

/**
 * Verifies `token` and returns the owner's global user id. Throws
 * InvalidOwnerTokenError naming the reason (shape, algorithm, signature,
 * expiry, subject). Pure.
 */
export function verifyOwnerToken(token: string, secret: string, now = Date.now()): string {
  const parts = token.split('.');
  if (parts.length !== 3) throw new InvalidOwnerTokenError('token is not a JWT (header.payload.signature)');
  const [header, payload, signature] = parts as [string, string, string];
  let parsedHeader: { alg?: unknown };
  let claims: { sub?: unknown; exp?: unknown; nbf?: unknown };
  try {
    parsedHeader = JSON.parse(Buffer.from(header, 'base64url').toString('utf8'));
    claims = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8'));
  } catch {
    throw new InvalidOwnerTokenError('token header or payload is not base64url JSON');
  }
  if (parsedHeader.alg !== 'HS256') throw new InvalidOwnerTokenError('token algorithm must be HS256');
  const expected = hmac(secret, `${header}.${payload}`);
  const given = Buffer.from(signature, 'base64url');
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) throw new InvalidOwnerTokenError('token signature is invalid');
  const seconds = now / 1000;
  if (typeof claims.exp === 'number' && claims.exp <= seconds) throw new InvalidOwnerTokenError('token has expired');
  if (typeof claims.nbf === 'number' && claims.nbf > seconds) throw new InvalidOwnerTokenError('token is not valid yet');
  if (typeof claims.sub !== 'string' || !UUID.test(claims.sub)) throw new InvalidOwnerTokenError('token subject must be the owner global user id (a UUID)');
  return claims.sub.toLowerCase();
}
