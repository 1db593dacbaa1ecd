/**
 * `POST /webhooks/signature`: the signature provider's callback (Dropbox
 * Sign protocol). Accepts JSON, a urlencoded form or a multipart form whose
 * `json` field holds the event; any other type is 415. A bad event_hash, a
 * stale event_time, a callback bound to no request of ours or to another
 * one, or an all_signed the provider does not confirm answers 401 and writes
 * nothing; the provider's API not answering that confirmation answers 503
 * (the provider retries later). A repeated callback answers the same
 * acknowledgement and changes nothing.
 */
import express, { Router } from 'express';
import type { Logger } from 'pino';
import { CALLBACK_ACKNOWLEDGEMENT, receiveSignatureCallback, SignatureProviderError, type CallbackFreshness, type SignatureProvider } from '@petcover/domain';
import type { Database } from '@petcover/outbox';
import { loggableError, UnsupportedMediaTypeError } from '../http/api-errors';

export interface SignatureWebhookDeps {
  db: Database;
  logger: Logger;
  signatureApiKey: string;
  /** Names the callbacks and confirms an all_signed through its API. */
  signatureProvider: SignatureProvider;
  freshness?: CallbackFreshness;
  bodyLimit: string;
}

const CALLBACK_TYPES = ['application/json', 'application/x-www-form-urlencoded', 'multipart/form-data'];

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
      if (!req.is(CALLBACK_TYPES)) throw new UnsupportedMediaTypeError(CALLBACK_TYPES.join(', '));
      let body: unknown = req.body;
      if (req.is('multipart/form-data')) {
        try {
          body = await multipartFields(req);
        } catch {
          res.status(400).json({ error: 'invalid_callback', message: 'multipart body could not be parsed' });
          return;
        }
      }
      let result;
      try {
        result = await receiveSignatureCallback(deps.db, body, { apiKey: deps.signatureApiKey, provider: deps.signatureProvider, freshness: deps.freshness });
      } catch (error) {
        if (!(error instanceof SignatureProviderError)) throw error;
        deps.logger.warn({ failure: loggableError(error) }, 'signature callback not confirmed: the provider API did not answer; the provider will retry');
        res.status(503).set('retry-after', '60').json({ error: 'provider_unavailable', message: 'could not confirm the callback with the provider; retry later' });
        return;
      }
      deps.logger.info({ ...result }, 'signature callback received');
      res.status(200).type('text/plain').send(CALLBACK_ACKNOWLEDGEMENT);
    },
  );
  return router;
}
