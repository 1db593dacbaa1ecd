/**
 * Receiving signature-provider callbacks: verify, bind to our approval
 * request, confirm with the provider before approving, then record once and
 * emit SignatureReceived in one transaction. Shared by the HTTP webhook and
 * the simulate command, so both take the same path.
 *
 * Dropbox Sign's event_hash covers only event_time + event_type, so a valid
 * callback proves it came from the provider at some time for some request,
 * not which request. The binding therefore rests on three checks: the
 * event_time is fresh, the signature_request_id is the provider id we
 * recorded at dispatch (and any metadata id agrees), and an `all_signed`
 * is confirmed with the provider's API before it can approve anything.
 */
import { createHash } from 'node:crypto';
import { and, eq } from 'drizzle-orm';
import { enqueue, type Database } from '@petcover/outbox';
import { SIGNATURE_EVENT_TYPES, SignatureReceived, type SignatureEventType } from '../events';
import { approvalRequest, signatureCallback } from '../schema';
import { CallbackRejectedError, verifySignatureCallback, type CallbackFreshness, type SignatureCallback } from '../signature/callback';
import type { SignatureProvider } from '../signature/provider';

export type CallbackOutcome =
  /** Recorded; SignatureReceived enqueued for this approval request. */
  | { outcome: 'recorded'; approvalRequestId: string; eventType: SignatureEventType }
  /** The same callback was recorded before; nothing changed. */
  | { outcome: 'duplicate'; approvalRequestId: string; eventType: SignatureEventType }
  /** Authentic, but nothing for us (e.g. `callback_test`, `signature_request_viewed`). */
  | { outcome: 'ignored'; reason: string };

export interface ReceiveCallbackOptions {
  /** Keys the event_hash. */
  apiKey: string;
  /** Whose callbacks these are; its API confirms an all_signed. */
  provider: SignatureProvider;
  /** Default DEFAULT_CALLBACK_FRESHNESS (1 h past, 5 min ahead). */
  freshness?: CallbackFreshness;
  now?: Date;
}

/**
 * Verifies `body` and records it. Throws CallbackRejectedError (400 malformed;
 * 401 bad hash, stale, bound to no request of ours or to another one, not
 * confirmed by the provider) and SignatureProviderError (the provider's API
 * did not answer the confirmation; the provider retries the callback) —
 * each before any write. No connection is held while the provider is asked.
 * Idempotent: the same signed event for the same request twice gives
 * `duplicate` and writes nothing the second time.
 */
export async function receiveSignatureCallback(db: Database, body: unknown, options: ReceiveCallbackOptions): Promise<CallbackOutcome> {
  const callback = verifySignatureCallback(body, options.apiKey, { freshness: options.freshness, now: options.now });
  const eventType = callback.event.event_type;
  if (!(SIGNATURE_EVENT_TYPES as readonly string[]).includes(eventType)) {
    return { outcome: 'ignored', reason: `event type ${eventType} needs no action` };
  }
  const signatureEventType = eventType as SignatureEventType;
  const providerRequestId = callback.signature_request?.signature_request_id;
  if (!providerRequestId) {
    throw new CallbackRejectedError(400, `a ${eventType} callback must name its signature_request.signature_request_id`, [
      { path: 'signature_request.signature_request_id', message: 'required' },
    ]);
  }
  const request = await boundApprovalRequest(db, callback, providerRequestId, options.provider.name);

  if (signatureEventType === 'signature_request_all_signed') {
    // The only callback that approves a package: ask the provider itself.
    const state = await options.provider.fetchRequestState(providerRequestId);
    if (!state.allSigned || (state.approvalRequestId !== undefined && state.approvalRequestId !== request.id)) {
      throw new CallbackRejectedError(401, `the provider does not confirm that signature request ${providerRequestId} is signed by everyone`);
    }
  }

  const eventTime = new Date(Number(callback.event.event_time) * 1000);
  return db.transaction(async (tx) => {
    const inserted = await tx
      .insert(signatureCallback)
      .values({
        dedupeKey: dedupeKeyOf(callback, providerRequestId),
        approvalRequestId: request.id,
        provider: options.provider.name,
        eventType,
        eventTime,
        providerRequestId,
        relatedSignatureId: callback.event.event_metadata?.related_signature_id ?? null,
      })
      .onConflictDoNothing({ target: signatureCallback.dedupeKey })
      .returning({ id: signatureCallback.id });
    if (inserted.length === 0) return { outcome: 'duplicate', approvalRequestId: request.id, eventType: signatureEventType } as const;
    await enqueue(
      tx,
      SignatureReceived.build({
        approvalRequestId: request.id,
        provider: options.provider.name,
        providerRequestId,
        callbackEventType: signatureEventType,
        callbackEventTime: eventTime.toISOString(),
      }),
    );
    return { outcome: 'recorded', approvalRequestId: request.id, eventType: signatureEventType } as const;
  });
}

/**
 * The approval request a callback is about: the one whose provider_request_id
 * is the callback's signature_request_id. The metadata id, unsigned, is only
 * allowed to agree. 401 otherwise.
 */
async function boundApprovalRequest(db: Database, callback: SignatureCallback, providerRequestId: string, provider: string): Promise<{ id: string }> {
  const [row] = await db
    .select({ id: approvalRequest.id })
    .from(approvalRequest)
    .where(and(eq(approvalRequest.provider, provider), eq(approvalRequest.providerRequestId, providerRequestId)));
  if (!row) throw new CallbackRejectedError(401, `signature_request_id ${providerRequestId} is not a signature request we sent`);
  const fromMetadata = callback.signature_request?.metadata?.approval_request_id;
  if (fromMetadata != null && fromMetadata.toLowerCase() !== row.id) {
    throw new CallbackRejectedError(401, `metadata.approval_request_id does not belong to signature request ${providerRequestId}`);
  }
  return row;
}

/**
 * Identity of a callback: what the provider signs (event_time, event_type)
 * plus the request it is bound to. Unsigned fields (metadata, related
 * signature id, anything else) are left out, so editing them cannot turn one
 * valid callback into many rows.
 */
function dedupeKeyOf(callback: SignatureCallback, providerRequestId: string): string {
  const parts = [providerRequestId, callback.event.event_type, callback.event.event_time];
  return createHash('sha256').update(parts.join('\n')).digest('hex');
}
