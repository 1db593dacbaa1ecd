/**
 * A local stand-in for Dropbox Sign speaking the same protocol, on real HTTP
 * (127.0.0.1, random port): `POST /v3/signature_request/send` with HTTP basic
 * auth and a multipart form, answering `{ signature_request: {...} }`; and
 * `sendCallback` posts an event to a callback URL the way Dropbox Sign does
 * (multipart form, `json` field, event_hash computed here independently).
 */
import { createHmac, randomBytes } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';

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
    },
  ): Promise<{ status: number; text: string }>;
  close(): Promise<void>;
}

export async function startFakeDropboxSign(apiKey = `test-key-${randomBytes(6).toString('hex')}`): Promise<FakeDropboxSign> {
  const requests: ReceivedSignatureRequest[] = [];
  let failure: { status: number; message: string } | undefined;
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
        if (req.method !== 'POST' || req.url !== '/v3/signature_request/send') return reply(404, { error: { error_msg: 'Not found', error_name: 'not_found' } });
        if (req.headers.authorization !== expectedAuth) return reply(401, { error: { error_msg: 'Unauthorized api key', error_name: 'unauthorized' } });
        if (failure) {
          const { status, message } = failure;
          failure = undefined;
          return reply(status, { error: { error_msg: message, error_name: 'bad_request' } });
        }
        const form = await new Response(Buffer.concat(chunks), { headers: { 'content-type': req.headers['content-type'] ?? '' } }).formData();
        const fields: Record<string, string> = {};
        const files: ReceivedSignatureRequest['files'] = [];
        for (const [key, value] of form.entries()) {
          if (typeof value === 'string') fields[key] = value;
          else files.push({ field: key, fileName: value.name, bytes: Buffer.from(await value.arrayBuffer()) });
        }
        const signatureRequestId = randomBytes(20).toString('hex');
        requests.push({ signatureRequestId, fields, files });
        reply(200, {
          signature_request: {
            signature_request_id: signatureRequestId,
            title: fields.title,
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
    failNextWith(status, message) {
      failure = { status, message };
    },
    async sendCallback(url, options) {
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
