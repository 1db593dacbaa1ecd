/**
 * HTTP calls to the api as a test client makes them: an owner's bearer token
 * signed with the test's secret (or a given token), a JSON or raw body, and
 * the answer parsed as JSON when it is JSON (the webhook acknowledges in
 * plain text).
 */
import { signOwnerToken } from '../../src/auth/owner-token';

export interface Answer {
  status: number;
  headers: Headers;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- answers are inspected field by field
  body: any;
}

export interface CallOptions {
  /** Signs a token for this owner. */
  owner?: string;
  /** A token as is (wins over `owner`). */
  token?: string;
  json?: unknown;
  /** A body as is; content type application/json unless `headers` says otherwise. */
  raw?: string;
  headers?: Record<string, string>;
}

export type Call = (base: string, method: string, route: string, options?: CallOptions) => Promise<Answer>;

/** A `call(base, method, route, options)` whose owner tokens are signed with `authSecret`. */
export function apiClient(authSecret: string): Call {
  return async (base, method, route, options = {}) => {
    const headers: Record<string, string> = { ...options.headers };
    const token = options.token ?? (options.owner ? await signOwnerToken({ secret: authSecret }, options.owner) : undefined);
    if (token) headers.authorization = `Bearer ${token}`;
    let body: string | undefined;
    if (options.json !== undefined) {
      headers['content-type'] ??= 'application/json';
      body = JSON.stringify(options.json);
    } else if (options.raw !== undefined) {
      headers['content-type'] ??= 'application/json';
      body = options.raw;
    }
    const response = await fetch(`${base}${route}`, { method, headers, body });
    const text = await response.text();
    let parsed: unknown = text;
    try {
      parsed = JSON.parse(text);
    } catch {
      // Plain-text answers (the webhook acknowledgement).
    }
    return { status: response.status, headers: response.headers, body: parsed };
  };
}
