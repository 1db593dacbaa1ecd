/**
 * The signature provider interface: one method to send a package's documents
 * for signature. Callbacks are verified by `verifySignatureCallback`, whose
 * protocol (Dropbox Sign's) both providers speak.
 */
export interface SignatureDispatch {
  approvalRequestId: string;
  title: string;
  subject: string;
  message: string;
  signer: { name: string; email: string };
  documents: Array<{ fileName: string; pdf: Buffer }>;
}

export interface SignatureProvider {
  /** Stored in approval_request.provider. */
  readonly name: string;
  /**
   * Sends the documents; resolves with the provider's id of the request.
   * Throws SignatureDispatchError when the provider refuses or is unreachable.
   */
  dispatch(request: SignatureDispatch): Promise<{ providerRequestId: string }>;
}

/**
 * The development provider: nothing leaves the process. Signatures arrive as
 * callbacks posted by hand or by `simulate-pet-signature-flow`.
 */
export function createManualSignatureProvider(): SignatureProvider {
  return {
    name: 'manual',
    async dispatch(request) {
      return { providerRequestId: `manual-${request.approvalRequestId}` };
    },
  };
}
