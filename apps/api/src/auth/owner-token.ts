/**
 * Owner authentication: a JWT signed with HS256 under AUTH_SECRET whose
 * subject (`sub`) is the owner's global user id (a UUID). Signed and verified
 * with `jose` (a maintained JWT library, no hand-written parsing): only HS256
 * is accepted (no `alg: none`, no algorithm confusion), `exp` is required and
 * may lie at most `maxLifetimeSeconds` ahead, and `iss`/`aud` are checked
 * when configured.
 */
import { errors, jwtVerify, SignJWT } from 'jose';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** A token lives one hour unless the signer asks otherwise. */
export const DEFAULT_OWNER_TOKEN_TTL_SECONDS = 3600;
/** Longest accepted lifetime (exp − iat, and exp − now): a leaked token stops working within a day. */
export const DEFAULT_OWNER_TOKEN_MAX_LIFETIME_SECONDS = 24 * 3600;
/** Clocks of the signer and the api may disagree this much. */
const CLOCK_TOLERANCE_SECONDS = 30;

/** How owner tokens are signed and checked (from AUTH_SECRET, AUTH_TOKEN_* at the app's edge). */
export interface OwnerTokenConfig {
  /** HS256 key. */
  secret: string;
  /** When set, tokens must carry this `iss` (and are signed with it). */
  issuer?: string;
  /** When set, tokens must carry this `aud` (and are signed with it). */
  audience?: string;
  /** Default DEFAULT_OWNER_TOKEN_MAX_LIFETIME_SECONDS. */
  maxLifetimeSeconds?: number;
}

export class InvalidOwnerTokenError extends Error {
  constructor(reason: string) {
    super(reason);
    this.name = 'InvalidOwnerTokenError';
  }
}

function keyOf(config: OwnerTokenConfig): Uint8Array {
  return new TextEncoder().encode(config.secret);
}

/**
 * Signs a token for `owner` (a UUID), valid `ttlSeconds` (default 1 h, at
 * most the configured maximum). Used by `pnpm dev-token`, the dev sign-in
 * page and tests. Throws InvalidOwnerTokenError for a non-UUID owner or a
 * lifetime above the maximum.
 */
export async function signOwnerToken(
  config: OwnerTokenConfig,
  owner: string,
  options: { ttlSeconds?: number; now?: Date } = {},
): Promise<string> {
  if (!UUID.test(owner)) throw new InvalidOwnerTokenError('owner must be a global user id (a UUID)');
  const ttl = options.ttlSeconds ?? DEFAULT_OWNER_TOKEN_TTL_SECONDS;
  const max = config.maxLifetimeSeconds ?? DEFAULT_OWNER_TOKEN_MAX_LIFETIME_SECONDS;
  if (ttl > max) throw new InvalidOwnerTokenError(`token lifetime ${ttl} s is above the maximum of ${max} s`);
  const issuedAt = Math.floor((options.now ?? new Date()).getTime() / 1000);
  const jwt = new SignJWT({}).setProtectedHeader({ alg: 'HS256', typ: 'JWT' }).setSubject(owner.toLowerCase()).setIssuedAt(issuedAt).setExpirationTime(issuedAt + ttl);
  if (config.issuer) jwt.setIssuer(config.issuer);
  if (config.audience) jwt.setAudience(config.audience);
  return jwt.sign(keyOf(config));
}

function reasonOf(error: unknown): string {
  if (error instanceof errors.JWTExpired) return 'token has expired';
  if (error instanceof errors.JWTClaimValidationFailed) {
    if (error.claim === 'exp' && error.reason === 'missing') return 'token has no exp (expiry) claim';
    if (error.claim === 'exp') return 'token exp claim must be a number of seconds';
    if (error.claim === 'sub') return 'token has no sub (owner) claim';
    return `token ${error.claim} claim is not accepted (${error.reason})`;
  }
  if (error instanceof errors.JOSEAlgNotAllowed) return 'token algorithm must be HS256';
  if (error instanceof errors.JWSSignatureVerificationFailed) return 'token signature is invalid';
  if (error instanceof errors.JOSEError) return 'token is not a valid JWT';
  return 'token could not be verified';
}

/**
 * Verifies `token` and returns the owner's global user id (lower case).
 * Throws InvalidOwnerTokenError naming the reason (shape, algorithm,
 * signature, expiry, lifetime, issuer, audience, subject). Pure.
 */
export async function verifyOwnerToken(token: string, config: OwnerTokenConfig, now: Date = new Date()): Promise<string> {
  let payload: { sub?: unknown; exp?: unknown; iat?: unknown };
  try {
    ({ payload } = await jwtVerify(token, keyOf(config), {
      algorithms: ['HS256'],
      requiredClaims: ['exp', 'sub'],
      issuer: config.issuer,
      audience: config.audience,
      clockTolerance: CLOCK_TOLERANCE_SECONDS,
      currentDate: now,
    }));
  } catch (error) {
    throw new InvalidOwnerTokenError(reasonOf(error));
  }
  const max = config.maxLifetimeSeconds ?? DEFAULT_OWNER_TOKEN_MAX_LIFETIME_SECONDS;
  const exp = payload.exp as number;
  const nowSeconds = now.getTime() / 1000;
  // A token minted with a far expiry (or without iat) must not live longer than the maximum.
  if (exp - nowSeconds > max + CLOCK_TOLERANCE_SECONDS || (typeof payload.iat === 'number' && exp - payload.iat > max)) {
    throw new InvalidOwnerTokenError(`token lifetime is above the maximum of ${max} s`);
  }
  if (typeof payload.sub !== 'string' || !UUID.test(payload.sub)) throw new InvalidOwnerTokenError('token subject must be the owner global user id (a UUID)');
  return payload.sub.toLowerCase();
}
