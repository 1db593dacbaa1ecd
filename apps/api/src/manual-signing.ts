/**
 * The `manual` signature provider's signing, for development: sends the
 * callbacks a real provider would send when the signer signs (sent, signed,
 * all signed), each signed with the API key and passed through the same
 * verification and recording as `POST /v1/webhooks/signature`. Used by the
 * wizard's "Sign" button and by `simulate-pet-signature-flow`.
 */
import { buildSignatureCallback, receiveSignatureCallback, SIGNING_EVENT_TYPES, type CallbackOutcome, type SignatureProvider } from '@petcover/domain';
import type { Database } from '@petcover/outbox';

export interface ManualSigningTarget {
  /** approval_request.id */
  id: string;
  /** approval_request.provider_request_id: set once the request was dispatched. */
  providerRequestId: string;
}

/**
 * Records the three callbacks for `request`, in order. Idempotent: callbacks
 * already recorded come back as `duplicate` and change nothing.
 */
export async function signManually(
  db: Database,
  request: ManualSigningTarget,
  options: { apiKey: string; provider: SignatureProvider },
): Promise<Array<{ eventType: string; outcome: CallbackOutcome }>> {
  const results: Array<{ eventType: string; outcome: CallbackOutcome }> = [];
  for (const eventType of SIGNING_EVENT_TYPES) {
    const body = buildSignatureCallback({ apiKey: options.apiKey, eventType, signatureRequestId: request.providerRequestId, approvalRequestId: request.id });
    results.push({ eventType, outcome: await receiveSignatureCallback(db, body, { apiKey: options.apiKey, provider: options.provider }) });
  }
  return results;
}
