/**
 * Connection URLs: the local-development defaults every app and command falls
 * back to (SPEC §3.3), and the one masker that keeps their passwords out of
 * logs, error messages, health answers and CLI output.
 */

export const DEFAULT_DATABASE_URL = 'postgresql://localhost:5432/petcover';
export const DEFAULT_REDIS_URL = 'redis://localhost:6379/0';

const MASK = '***';

/**
 * `scheme://[user]:` then the password, up to the LAST `@` of the token: an
 * unencoded `@` or `/` inside a password must not end the match early and
 * leave the rest of the password visible. The token stops at whitespace and
 * quotes, so a URL inside a JSON or quoted message is masked on its own.
 * Without a `:` before an `@` there is no password and nothing is masked.
 */
const USERINFO_PASSWORD = /([a-z][a-z0-9+.-]*:\/\/[^\s:@/"'<>`]*:)[^\s"'<>`]*@/gi;

/** libpq's `?password=` (and the common `pass`, `pwd`) query parameters. */
const QUERY_PASSWORD = /([?&](?:password|pass|pwd)=)[^&#\s"'<>`]*/gi;

/**
 * Masks the password of every URL in `text`, keeping what helps an operator
 * (scheme, user, host, port, database):
 * `postgresql://user:secret@host/db` → `postgresql://user:***@host/db`,
 * `redis://:secret@host` → `redis://:***@host`,
 * `postgresql://host/db?password=secret` → `postgresql://host/db?password=***`.
 * Works on a bare URL or on any message that contains URLs. Pure; idempotent.
 */
export function maskUrlPassword(text: string): string {
  return text.replace(USERINFO_PASSWORD, `$1${MASK}@`).replace(QUERY_PASSWORD, `$1${MASK}`);
}
