/**
 * Dropbox Sign adapter over its HTTP API (HTTP basic auth with the API key
 * as user name): `POST {baseUrl}/signature_request/send` (multipart form)
 * dispatches, `GET {baseUrl}/signature_request/{id}` reads a request's
 * state, `POST {baseUrl}/signature_request/cancel/{id}` cancels one. The approval request id travels in the request metadata and comes
 * back in every callback and every state read.
 */
import { SignatureDispatchError, SignatureProviderError } from '../errors';
import type { ProviderRequestState, SignatureProvider } from './provider';

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

interface DropboxSignRequestBody {
  signature_request?: {
    signature_request_id?: unknown;
    is_complete?: unknown;
    signing_url?: unknown;
    metadata?: { approval_request_id?: unknown } | null;
  };
  error?: { error_msg?: string };
}

/** The value when it is an absolute https URL (what the owner's browser may be sent to), else undefined. */
function httpsUrl(value: unknown): string | undefined {
  if (typeof value !== 'string') return undefined;
  try {
    return new URL(value).protocol === 'https:' ? value : undefined;
  } catch {
    return undefined;
  }
}

export function createDropboxSignProvider(options: DropboxSignOptions): SignatureProvider {
  const baseUrl = (options.baseUrl ?? DEFAULT_DROPBOX_SIGN_BASE_URL).replace(/\/+$/, '');
  const authorization = `Basic ${Buffer.from(`${options.apiKey}:`).toString('base64')}`;
  const timeoutMs = options.timeoutMs ?? DEFAULT_DISPATCH_TIMEOUT_MS;

  /** One API call; errors name the provider's answer for the logs (never sent to clients). */
  async function call(
    what: string,
    path: string,
    init: RequestInit,
    makeError: (message: string, status?: number) => SignatureProviderError,
    options: { emptyAnswer?: boolean } = {},
  ): Promise<DropboxSignRequestBody> {
    let response: Response;
    try {
      response = await fetch(`${baseUrl}${path}`, { ...init, headers: { authorization }, signal: AbortSignal.timeout(timeoutMs) });
    } catch (error) {
      throw makeError(`Dropbox Sign unreachable for ${what}: ${(error as Error).message}`);
    }
    const text = await response.text();
    let body: DropboxSignRequestBody | undefined;
    try {
      body = JSON.parse(text) as DropboxSignRequestBody;
    } catch {
      body = undefined;
    }
    if (!response.ok) {
      const providerMessage = body?.error?.error_msg ?? text.slice(0, 200);
      throw makeError(`Dropbox Sign refused ${what} (HTTP ${response.status}): ${providerMessage}`, response.status);
    }
    // A cancel is answered with an empty body.
    if (!body && options.emptyAnswer) return {};
    if (!body) throw makeError(`Dropbox Sign answered ${what} with a body that is not JSON`, response.status);
    return body;
  }

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
      const body = await call('the signature request', '/signature_request/send', { method: 'POST', body: form }, (m, s) => new SignatureDispatchError(m, s));
      const id = body.signature_request?.signature_request_id;
      if (typeof id !== 'string' || id.length === 0) {
        throw new SignatureDispatchError('Dropbox Sign answered without signature_request.signature_request_id');
      }
      return { providerRequestId: id, signingUrl: httpsUrl(body.signature_request?.signing_url) };
    },
    async fetchRequestState(providerRequestId): Promise<ProviderRequestState> {
      const body = await call(
        'the state read',
        `/signature_request/${encodeURIComponent(providerRequestId)}`,
        { method: 'GET' },
        (m, s) => new SignatureProviderError(m, s),
      );
      const request = body.signature_request;
      if (!request || request.signature_request_id !== providerRequestId) {
        throw new SignatureProviderError('Dropbox Sign answered the state read for another signature request');
      }
      const approvalRequestId = request.metadata?.approval_request_id;
      return { allSigned: request.is_complete === true, approvalRequestId: typeof approvalRequestId === 'string' ? approvalRequestId : undefined };
    },
    async cancelRequest(providerRequestId) {
      await call(
        'the cancellation',
        `/signature_request/cancel/${encodeURIComponent(providerRequestId)}`,
        { method: 'POST' },
        (m, s) => new SignatureProviderError(m, s),
        { emptyAnswer: true },
      );
    },
  };
}
