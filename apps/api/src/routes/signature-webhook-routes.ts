/**
 * `POST /webhooks/signature`: the signature provider's callback (Dropbox
 * Sign protocol). Accepts JSON, a urlencoded form or a multipart form whose
 * `json` field holds the event. A bad event_hash answers 401 and writes
 * nothing; a repeated callback answers the same acknowledgement and changes
 * nothing.
 */
import express, { Router } from 'express';
import type { Logger } from 'pino';
import { CALLBACK_ACKNOWLEDGEMENT, receiveSignatureCallback } from '@petcover/domain';
import type { Database } from '@petcover/outbox';

export interface SignatureWebhookDeps {
  db: Database;
  logger: Logger;
  signatureApiKey: string;
  signatureProviderName: string;
  bodyLimit: string;
}

/** Reads a multipart body with the platform's own parser (undici), no extra dependency. */
async function multipartFields(req: express.Request): Promise<Record<string, string>> {
  const form = await new Response(new Uint8Array(req.body as Buffer), { headers: { 'content-type': req.get('content-type') ?? '' } }).formData();
  const fields: Record<string, string> = {};
  form.forEach((value, key) => {
    if (typeof value === 'string') fields[key] = value;
  });
  return fields;
}

export function createSignatureWebhookRouter(deps: SignatureWebhookDeps): Router {
  const router = Router();
  router.post(
    '/webhooks/signature',
    express.urlencoded({ extended: false, limit: deps.bodyLimit }),
    express.raw({ type: 'multipart/form-data', limit: deps.bodyLimit }),
    async (req, res) => {
      let body: unknown = req.body;
      if (req.is('multipart/form-data')) {
        try {
          body = await multipartFields(req);
        } catch {
          res.status(400).json({ error: 'invalid_callback', message: 'multipart body could not be parsed' });
          return;
        }
      }
      const result = await receiveSignatureCallback(deps.db, body, { apiKey: deps.signatureApiKey, provider: deps.signatureProviderName });
      deps.logger.info({ ...result }, 'signature callback received');
      res.status(200).type('text/plain').send(CALLBACK_ACKNOWLEDGEMENT);
    },
  );
  return router;
}
