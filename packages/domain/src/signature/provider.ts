/**
 * The signature provider interface: send a package's documents for
 * signature, and ask the provider what state a request is in (the check
 * before a callback may approve a package). Callbacks are verified by
 * `verifySignatureCallback`, whose protocol (Dropbox Sign's) both providers speak.
 */
export interface SignatureDispatch {
  approvalRequestId: string;
  title: string;
  subject: string;
  message: string;
  signer: { name: string; email: string };
  documents: Array<{ fileName: string; pdf: Buffer }>;
}

/** What the provider's API says about one signature request. */
export interface ProviderRequestState {
  /** Every signer has signed. */
  allSigned: boolean;
  /** The approval request id we put in its metadata at dispatch (absent when the provider has none). */
  approvalRequestId: string | undefined;
}

export interface SignatureProvider {
  /** Stored in approval_request.provider. */
  readonly name: string;
  /**
   * Sends the documents; resolves with the provider's id of the request and,
   * when the provider gives one, the https URL where the signer signs
   * (Dropbox Sign: `signature_request.signing_url`).
   * Throws SignatureDispatchError when the provider refuses or is unreachable.
   */
  dispatch(request: SignatureDispatch): Promise<{ providerRequestId: string; signingUrl?: string }>;
  /**
   * Reads the request's state from the provider (Dropbox Sign:
   * `GET /signature_request/{id}`). Throws SignatureProviderError when the
   * provider does not answer or does not know the request.
   */
  fetchRequestState(providerRequestId: string): Promise<ProviderRequestState>;
  /**
   * Cancels a request at the provider so its signer can no longer sign it
   * (Dropbox Sign: `POST /signature_request/cancel/{id}`). Used for a request
   * we sent but could not record (see confirmDraft). Throws
   * SignatureProviderError when the provider refuses or does not answer.
   */
  cancelRequest(providerRequestId: string): Promise<void>;
}

const MANUAL_PREFIX = 'manual-';

/**
 * The development provider: nothing leaves the process. Signatures arrive as
 * callbacks posted by hand or by `simulate-pet-signature-flow`, and every
 * request counts as signed when asked: which is why strict mode refuses it.
 */
export function createManualSignatureProvider(): SignatureProvider {
  return {
    name: 'manual',
    async dispatch(request) {
      return { providerRequestId: `${MANUAL_PREFIX}${request.approvalRequestId}` };
    },
    async fetchRequestState(providerRequestId) {
      const approvalRequestId = providerRequestId.startsWith(MANUAL_PREFIX) ? providerRequestId.slice(MANUAL_PREFIX.length) : undefined;
      return { allSigned: true, approvalRequestId };
    },
    async cancelRequest() {
      // Nothing left the process: there is nothing to cancel.
    },
  };
}
