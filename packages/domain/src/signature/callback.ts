/**
 * Verification of signature-provider callbacks, Dropbox Sign's protocol:
 * the body is JSON (or a form whose `json` field holds it), and
 * `event.event_hash` = hex HMAC-SHA256 keyed by the API key over
 * `event_time + event_type`. The HTTP webhook and the simulate command both
 * go through `verifySignatureCallback`.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import { z } from 'zod';

/** What the endpoint must answer for the provider to consider a callback delivered. */
export const CALLBACK_ACKNOWLEDGEMENT = 'Hello API Event Received';

/** How far an event_time may lie in the past or the future before a callback is refused (401). */
export interface CallbackFreshness {
  maxAgeSeconds: number;
  maxFutureSkewSeconds: number;
}

/**
 * Dropbox Sign retries a failed delivery for a few hours at most; an hour
 * covers retries and queueing without letting an old captured callback be
 * replayed later. Five minutes ahead covers clock skew between us and them.
 */
export const DEFAULT_CALLBACK_FRESHNESS: CallbackFreshness = { maxAgeSeconds: 3600, maxFutureSkewSeconds: 300 };

const bounded = (max: number) =>
  z
    .string()
    .min(1)
    .max(max)
    .refine((v) => !v.includes('\u0000'), 'must not contain NUL characters');

// Only the fields we read are kept (zod strips the rest), so an arbitrarily
// nested or oversized unsigned field is never stored or walked again.
const callbackSchema = z.object({
  event: z.object({
    event_type: bounded(100),
    event_time: z.string().regex(/^\d{1,12}$/, 'must be a unix timestamp in seconds'),
    event_hash: z.string().min(1).max(200),
    event_metadata: z.object({ related_signature_id: bounded(200).nullish() }).nullish(),
  }),
  signature_request: z
    .object({
      signature_request_id: bounded(200),
      metadata: z.object({ approval_request_id: bounded(100).nullish() }).nullish(),
    })
    .nullish(),
});

export type SignatureCallback = z.output<typeof callbackSchema>;

/**
 * Why a callback is refused; `status` is the HTTP answer: 400 malformed, 401
 * not ours (bad hash, stale, bound to another request, not confirmed by the
 * provider). Nothing was written.
 */
export class CallbackRejectedError extends Error {
  constructor(
    readonly status: 400 | 401,
    message: string,
    readonly fields: Array<{ path: string; message: string }> = [],
  ) {
    super(message);
    this.name = 'CallbackRejectedError';
  }
}

export function computeEventHash(apiKey: string, eventTime: string, eventType: string): string {
  return createHmac('sha256', apiKey).update(eventTime + eventType).digest('hex');
}

/**
 * Parses and authenticates a callback body: the event_hash must match and
 * the event_time must lie inside `freshness` around `now`. `body` is the
 * parsed JSON object, or a form object whose `json` field is the JSON text.
 * Throws CallbackRejectedError (400 / 401); pure, writes nothing.
 */
export function verifySignatureCallback(
  body: unknown,
  apiKey: string,
  options: { freshness?: CallbackFreshness; now?: Date } = {},
): SignatureCallback {
  let candidate = body;
  if (candidate && typeof candidate === 'object' && typeof (candidate as { json?: unknown }).json === 'string') {
    try {
      candidate = JSON.parse((candidate as { json: string }).json);
    } catch {
      throw new CallbackRejectedError(400, 'the json form field is not valid JSON', [{ path: 'json', message: 'not valid JSON' }]);
    }
  }
  const parsed = callbackSchema.safeParse(candidate);
  if (!parsed.success) {
    const fields = parsed.error.issues.map((issue) => ({ path: issue.path.join('.'), message: issue.message }));
    throw new CallbackRejectedError(400, 'callback does not follow the provider protocol', fields);
  }
  const { event_time, event_type, event_hash } = parsed.data.event;
  const expected = Buffer.from(computeEventHash(apiKey, event_time, event_type), 'utf8');
  const given = Buffer.from(event_hash.toLowerCase(), 'utf8');
  // timingSafeEqual needs equal lengths; comparing against itself keeps the time constant.
  const matches = given.length === expected.length ? timingSafeEqual(given, expected) : !timingSafeEqual(expected, expected);
  if (!matches) throw new CallbackRejectedError(401, 'event_hash does not match: callback not signed with our API key');
  // The hash covers event_time, but a captured callback stays valid forever
  // unless its age is bounded.
  const freshness = options.freshness ?? DEFAULT_CALLBACK_FRESHNESS;
  const ageSeconds = (options.now ?? new Date()).getTime() / 1000 - Number(event_time);
  if (ageSeconds > freshness.maxAgeSeconds || -ageSeconds > freshness.maxFutureSkewSeconds) {
    throw new CallbackRejectedError(
      401,
      `event_time is outside the accepted window (${freshness.maxAgeSeconds} s past, ${freshness.maxFutureSkewSeconds} s ahead): callback refused as stale or forged`,
    );
  }
  return parsed.data;
}

/**
 * Builds a signed callback body the way the provider would send it. Used by
 * the simulate command, the fake provider in tests and the manual provider.
 */
export function buildSignatureCallback(options: {
  apiKey: string;
  eventType: string;
  signatureRequestId: string;
  approvalRequestId: string;
  eventTime?: Date;
  relatedSignatureId?: string;
}): SignatureCallback {
  const eventTime = String(Math.floor((options.eventTime ?? new Date()).getTime() / 1000));
  return {
    event: {
      event_type: options.eventType,
      event_time: eventTime,
      event_hash: computeEventHash(options.apiKey, eventTime, options.eventType),
      event_metadata: { related_signature_id: options.relatedSignatureId ?? null },
    },
    signature_request: {
      signature_request_id: options.signatureRequestId,
      metadata: { approval_request_id: options.approvalRequestId },
    },
  };
}
