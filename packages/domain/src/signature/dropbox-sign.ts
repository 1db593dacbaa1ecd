/**
 * Dropbox Sign adapter: dispatches signature requests over its HTTP API
 * (`POST {baseUrl}/signature_request/send`, HTTP basic auth with the API key
 * as user name, multipart form). The approval request id travels in the
 * request metadata and comes back in every callback.
 */
import { SignatureDispatchError } from '../errors';
import type { SignatureProvider } from './provider';

export const DEFAULT_DROPBOX_SIGN_BASE_URL = 'https://api.hellosign.com/v3';
/** A dispatch that takes longer is reported as failed; confirm can be retried. */
export const DEFAULT_DISPATCH_TIMEOUT_MS = 10_000;

export interface DropboxSignOptions {
  apiKey: string;
  baseUrl?: string;
  /** Sends `test_mode=1` (no legally binding signature, no charge). */
  testMode?: boolean;
  timeoutMs?: number;
}

export function createDropboxSignProvider(options: DropboxSignOptions): SignatureProvider {
  const baseUrl = (options.baseUrl ?? DEFAULT_DROPBOX_SIGN_BASE_URL).replace(/\/+$/, '');
  const authorization = `Basic ${Buffer.from(`${options.apiKey}:`).toString('base64')}`;
  return {
    name: 'dropbox_sign',
    async dispatch(request) {
      const form = new FormData();
      form.set('title', request.title);
      form.set('subject', request.subject);
      form.set('message', request.message);
      form.set('signers[0][name]', request.signer.name);
      form.set('signers[0][email_address]', request.signer.email);
      form.set('metadata[approval_request_id]', request.approvalRequestId);
      form.set('test_mode', options.testMode === false ? '0' : '1');
      request.documents.forEach((document, index) => {
        form.set(`files[${index}]`, new Blob([new Uint8Array(document.pdf)], { type: 'application/pdf' }), document.fileName);
      });

      let response: Response;
      try {
        response = await fetch(`${baseUrl}/signature_request/send`, {
          method: 'POST',
          headers: { authorization },
          body: form,
          signal: AbortSignal.timeout(options.timeoutMs ?? DEFAULT_DISPATCH_TIMEOUT_MS),
        });
      } catch (error) {
        throw new SignatureDispatchError(`Dropbox Sign at ${baseUrl} unreachable: ${(error as Error).message}`);
      }
      const text = await response.text();
      let body: unknown;
      try {
        body = JSON.parse(text);
      } catch {
        body = undefined;
      }
      if (!response.ok) {
        const providerMessage = (body as { error?: { error_msg?: string } } | undefined)?.error?.error_msg ?? text.slice(0, 200);
        throw new SignatureDispatchError(`Dropbox Sign refused the signature request (HTTP ${response.status}): ${providerMessage}`, response.status);
      }
      const id = (body as { signature_request?: { signature_request_id?: unknown } } | undefined)?.signature_request?.signature_request_id;
      if (typeof id !== 'string' || id.length === 0) {
        throw new SignatureDispatchError('Dropbox Sign answered without signature_request.signature_request_id', response.status);
      }
      return { providerRequestId: id };
    },
  };
}
