/**
 * Receiving signature-provider callbacks: verify, record once, emit
 * SignatureReceived — all in one transaction. Shared by the HTTP webhook and
 * the simulate command, so both take the same path.
 */
import { createHash } from 'node:crypto';
import { eq } from 'drizzle-orm';
import { enqueue, type Database } from '@petcover/outbox';
import { SIGNATURE_EVENT_TYPES, SignatureReceived, type SignatureEventType } from '../events';
import { approvalRequest, signatureCallback } from '../schema';
import { verifySignatureCallback, type SignatureCallback } from '../signature/callback';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export type CallbackOutcome =
  /** Recorded; SignatureReceived enqueued for this approval request. */
  | { outcome: 'recorded'; approvalRequestId: string; eventType: SignatureEventType }
  /** The same callback was recorded before; nothing changed. */
  | { outcome: 'duplicate'; approvalRequestId: string; eventType: SignatureEventType }
  /** Authentic, but nothing for us (e.g. `callback_test`, or no approval request to relate it to). */
  | { outcome: 'ignored'; reason: string };

/**
 * Verifies `body` with `apiKey` (throws CallbackRejectedError 400/401 before
 * any write) and records it. Idempotent: the same callback twice gives
 * `duplicate` and writes nothing the second time.
 */
export async function receiveSignatureCallback(db: Database, body: unknown, options: { apiKey: string; provider: string }): Promise<CallbackOutcome> {
  const callback = verifySignatureCallback(body, options.apiKey);
  const eventType = callback.event.event_type;
  if (!(SIGNATURE_EVENT_TYPES as readonly string[]).includes(eventType)) {
    return { outcome: 'ignored', reason: `event type ${eventType} needs no action` };
  }
  const signatureEventType = eventType as SignatureEventType;
  const approvalRequestId = await resolveApprovalRequestId(db, callback);
  if (!approvalRequestId) {
    return { outcome: 'ignored', reason: 'callback names no approval request (no metadata.approval_request_id, unknown signature_request_id)' };
  }
  const eventTime = new Date(Number(callback.event.event_time) * 1000);
  const providerRequestId = callback.signature_request?.signature_request_id ?? null;

  return db.transaction(async (tx) => {
    const inserted = await tx
      .insert(signatureCallback)
      .values({
        dedupeKey: dedupeKeyOf(callback),
        approvalRequestId,
        provider: options.provider,
        eventType,
        eventTime,
        payload: callback,
      })
      .onConflictDoNothing({ target: signatureCallback.dedupeKey })
      .returning({ id: signatureCallback.id });
    if (inserted.length === 0) return { outcome: 'duplicate', approvalRequestId, eventType: signatureEventType } as const;
    await enqueue(
      tx,
      SignatureReceived.build({
        approvalRequestId,
        provider: options.provider,
        providerRequestId,
        callbackEventType: signatureEventType,
        callbackEventTime: eventTime.toISOString(),
      }),
    );
    return { outcome: 'recorded', approvalRequestId, eventType: signatureEventType } as const;
  });
}

/**
 * The approval request a callback is about: our id in the request metadata
 * (we set it at dispatch), else a lookup by the provider's request id. An id
 * from metadata is not checked here: a callback naming an unknown approval
 * request is recorded and its event dead-lettered by the handler, naming it.
 */
async function resolveApprovalRequestId(db: Database, callback: SignatureCallback): Promise<string | undefined> {
  const fromMetadata = callback.signature_request?.metadata?.approval_request_id;
  if (typeof fromMetadata === 'string' && UUID.test(fromMetadata)) return fromMetadata.toLowerCase();
  const providerRequestId = callback.signature_request?.signature_request_id;
  if (!providerRequestId) return undefined;
  const [row] = await db.select({ id: approvalRequest.id }).from(approvalRequest).where(eq(approvalRequest.providerRequestId, providerRequestId));
  return row?.id;
}

/** Identity of a callback: the provider resends the same event with the same hash, time and ids. */
function dedupeKeyOf(callback: SignatureCallback): string {
  const parts = [
    callback.signature_request?.signature_request_id ?? '',
    callback.event.event_type,
    callback.event.event_time,
    callback.event.event_metadata?.related_signature_id ?? '',
  ];
  return createHash('sha256').update(parts.join('\n')).digest('hex');
}
