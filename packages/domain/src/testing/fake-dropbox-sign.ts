/**
 * A local stand-in for Dropbox Sign speaking the same protocol, on real HTTP
 * (127.0.0.1, random port): `POST /v3/signature_request/send` with HTTP basic
 * auth and a multipart form, answering `{ signature_request: {...} }`;
 * `GET /v3/signature_request/{id}` answering its state (`is_complete` once
 * every signer signed, i.e. after `markAllSigned` or an all_signed
 * `sendCallback`); `POST /v3/signature_request/cancel/{id}` (empty 200,
 * recorded in `canceled`); and `sendCallback` posts an event to a callback URL the
 * way Dropbox Sign does (multipart form, `json` field, event_hash computed
 * here independently).
 */
import { createHmac, randomBytes } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';

/** The fake answers each dispatch with signing_url = this + the request id (https, as Dropbox Sign's). */
export const FAKE_SIGNING_URL_BASE = 'https://app.hellosign.test/sign/';

export interface ReceivedSignatureRequest {
  signatureRequestId: string;
  fields: Record<string, string>;
  files: Array<{ field: string; fileName: string; bytes: Buffer }>;
}

export interface FakeDropboxSign {
  /** Base URL to configure the adapter with, e.g. `http://127.0.0.1:5123/v3`. */
  baseUrl: string;
  apiKey: string;
  requests: ReceivedSignatureRequest[];
  /** Makes the next dispatches answer this HTTP status with a Dropbox Sign error body. */
  failNextWith(status: number, message: string): void;
  /** Makes the next dispatch answer this `signing_url` (any JSON value; undefined leaves it out) instead of the https one. */
  answerNextSigningUrlWith(value: unknown): void;
  /** Holds every dispatch unanswered until `release()` (a slow provider); `heldDispatches` counts them. */
  holdDispatches(): { release(): void };
  readonly heldDispatches: number;
  /** Records that every signer of the request signed: its state reads answer `is_complete: true`. */
  markAllSigned(signatureRequestId: string): void;
  /** State reads (`GET /signature_request/{id}`) answered, by request id. */
  stateReads: string[];
  /** Requests canceled (`POST /signature_request/cancel/{id}`), by request id. */
  canceled: string[];
  /** Posts a callback as Dropbox Sign would; returns status and body text. */
  sendCallback(
    url: string,
    options: {
      eventType: string;
      signatureRequestId: string;
      metadata?: Record<string, string>;
      apiKey?: string;
      encoding?: 'multipart' | 'json' | 'urlencoded';
      /** Unix seconds; default now. A provider's retry of one event carries the same event_time. */
      eventTime?: number;
      /** For signature_request_all_signed: mark the request signed first, as the real provider does (default true). */
      markComplete?: boolean;
    },
  ): Promise<{ status: number; text: string }>;
  close(): Promise<void>;
}

export async function startFakeDropboxSign(apiKey = `test-key-${randomBytes(6).toString('hex')}`): Promise<FakeDropboxSign> {
  const requests: ReceivedSignatureRequest[] = [];
  const completed = new Set<string>();
  const stateReads: string[] = [];
  const canceled: string[] = [];
  let failure: { status: number; message: string } | undefined;
  let nextSigningUrl: { value: unknown } | undefined;
  let hold: Promise<void> | undefined;
  let heldDispatches = 0;
  const expectedAuth = `Basic ${Buffer.from(`${apiKey}:`).toString('base64')}`;

  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      void (async () => {
        const reply = (status: number, body: unknown) => {
          res.writeHead(status, { 'content-type': 'application/json' });
          res.end(JSON.stringify(body));
        };
        const notFound = () => reply(404, { error: { error_msg: 'Not found', error_name: 'not_found' } });
        if (req.headers.authorization !== expectedAuth) return reply(401, { error: { error_msg: 'Unauthorized api key', error_name: 'unauthorized' } });
        const stateRead = req.method === 'GET' ? /^\/v3\/signature_request\/([0-9a-f]+)$/.exec(req.url ?? '') : null;
        if (stateRead) {
          const id = stateRead[1] as string;
          const sent = requests.find((r) => r.signatureRequestId === id);
          if (!sent) return notFound();
          stateReads.push(id);
          const complete = completed.has(id);
          return reply(200, {
            signature_request: {
              signature_request_id: id,
              is_complete: complete,
              is_declined: false,
              metadata: { approval_request_id: sent.fields['metadata[approval_request_id]'] },
              signatures: [{ signer_email_address: sent.fields['signers[0][email_address]'], status_code: complete ? 'signed' : 'awaiting_signature' }],
            },
          });
        }
        const cancel = req.method === 'POST' ? /^\/v3\/signature_request\/cancel\/([0-9a-f]+)$/.exec(req.url ?? '') : null;
        if (cancel) {
          const id = cancel[1] as string;
          if (!requests.some((r) => r.signatureRequestId === id)) return notFound();
          canceled.push(id);
          res.writeHead(200);
          return res.end();
        }
        if (req.method !== 'POST' || req.url !== '/v3/signature_request/send') return notFound();
        if (hold) {
          heldDispatches += 1;
          await hold;
          heldDispatches -= 1;
        }
        if (failure) {
          const { status, message } = failure;
          failure = undefined;
          return reply(status, { error: { error_msg: message, error_name: 'bad_request' } });
        }
        const form = await new Response(new Uint8Array(Buffer.concat(chunks)), { headers: { 'content-type': req.headers['content-type'] ?? '' } }).formData();
        const fields: Record<string, string> = {};
        const files: ReceivedSignatureRequest['files'] = [];
        for (const [key, value] of form.entries()) {
          if (typeof value === 'string') fields[key] = value;
          else files.push({ field: key, fileName: value.name, bytes: Buffer.from(await value.arrayBuffer()) });
        }
        const signatureRequestId = randomBytes(20).toString('hex');
        requests.push({ signatureRequestId, fields, files });
        const signingUrl = nextSigningUrl ? nextSigningUrl.value : `${FAKE_SIGNING_URL_BASE}${signatureRequestId}`;
        nextSigningUrl = undefined;
        reply(200, {
          signature_request: {
            signature_request_id: signatureRequestId,
            title: fields.title,
            signing_url: signingUrl,
            metadata: { approval_request_id: fields['metadata[approval_request_id]'] },
            signatures: [{ signature_id: randomBytes(16).toString('hex'), signer_email_address: fields['signers[0][email_address]'], status_code: 'awaiting_signature' }],
          },
        });
      })();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;

  return {
    baseUrl: `http://127.0.0.1:${port}/v3`,
    apiKey,
    requests,
    canceled,
    failNextWith(status, message) {
      failure = { status, message };
    },
    answerNextSigningUrlWith(value) {
      nextSigningUrl = { value };
    },
    holdDispatches() {
      let release!: () => void;
      hold = new Promise<void>((resolve) => (release = resolve));
      return {
        release() {
          hold = undefined;
          release();
        },
      };
    },
    get heldDispatches() {
      return heldDispatches;
    },
    markAllSigned(signatureRequestId) {
      completed.add(signatureRequestId);
    },
    stateReads,
    async sendCallback(url, options) {
      if (options.eventType === 'signature_request_all_signed' && options.markComplete !== false) completed.add(options.signatureRequestId);
      const eventTime = String(options.eventTime ?? Math.floor(Date.now() / 1000));
      const eventHash = createHmac('sha256', options.apiKey ?? apiKey).update(eventTime + options.eventType).digest('hex');
      const event = {
        event: { event_time: eventTime, event_type: options.eventType, event_hash: eventHash, event_metadata: { related_signature_id: null } },
        signature_request: { signature_request_id: options.signatureRequestId, metadata: options.metadata ?? {} },
      };
      const json = JSON.stringify(event);
      let init: RequestInit;
      if (options.encoding === 'json') init = { method: 'POST', headers: { 'content-type': 'application/json' }, body: json };
      else if (options.encoding === 'urlencoded') init = { method: 'POST', body: new URLSearchParams({ json }) };
      else {
        const form = new FormData();
        form.set('json', json);
        init = { method: 'POST', body: form };
      }
      const response = await fetch(url, init);
      return { status: response.status, text: await response.text() };
    },
    close() {
      return new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
    },
  };
}
