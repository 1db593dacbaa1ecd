/**
 * `createApp(deps)`: the express application, without listening (see
 * `listenHttp` for the server with its timeouts). Every router is mounted in
 * one list below; adding one (e.g. the admin router at `/v1/admin`) is one
 * line.
 */
import express, { type Express, type Router } from 'express';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import type { CallbackFreshness, WizardDeps } from '@petcover/domain';
import { runReadinessChecks, type ReadinessCheck, type RedisClient } from '@petcover/service-kit';
import type { OwnerTokenConfig } from './auth/owner-token';
import { errorHandler, notFoundHandler } from './http/api-errors';
import { instrumentRequests } from './http/http-metrics';
import { DEFAULT_OWNER_WRITES_PER_MINUTE, ownerWriteRateLimit } from './http/owner-rate-limit';
import { createPlanRouter } from './routes/plan-routes';
import { createSignatureWebhookRouter } from './routes/signature-webhook-routes';
import { ASSETS_PATH, pageAssetsRouter } from './pages/render';
import { createWizardRouter } from './routes/wizard-routes';
import { createWizardPagesRouter } from './wizard-pages/router';

export interface AppDeps {
  logger: Logger;
  /** The signature provider in here also confirms callbacks (its API) and names them. */
  wizard: WizardDeps;
  /** How owner bearer tokens are verified (HS256 key, optional iss/aud, maximum lifetime). */
  ownerTokens: OwnerTokenConfig;
  /** Keys the callback event_hash (Dropbox Sign API key). */
  signatureApiKey: string;
  /** Callback event_time window; default 1 h past, 5 min ahead. */
  callbackFreshness?: CallbackFreshness;
  /** Largest accepted body, e.g. `100kb`. */
  bodyLimit: string;
  /** `/readyz` checks that decide readiness (db, migrations), each bounded by service-kit; run them on their own connections, not the request pool. */
  readinessChecks: Record<string, ReadinessCheck>;
  /** Reported by `/readyz` without deciding it (redis: owners are served without it). */
  nonBlockingReadinessChecks?: Record<string, ReadinessCheck>;
  /** Shares the per-owner write budget between replicas; undefined → per process. */
  rateLimitRedis?: RedisClient;
  /** Owner writes per minute; default DEFAULT_OWNER_WRITES_PER_MINUTE. */
  ownerWritesPerMinute?: number;
  /** Redis key prefix of the rate limiter (tests isolate with their own). */
  rateLimitKeyPrefix?: string;
  metricsRegistry: Registry;
  /** The wizard's dev sign-in page (`/dev/sign-in`); default off, and off in strict mode. */
  devSignIn?: boolean;
  /**
   * Extra routers by mount path, e.g. `{ '/v1/admin': createAdminRouter(...) }`.
   * Mounted before the api's JSON parser, so each parses (and limits) its
   * own bodies after its own authentication.
   */
  extraRouters?: Record<string, Router>;
}

export function createApp(deps: AppDeps): Express {
  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);
  app.use(instrumentRequests(deps.metricsRegistry, deps.logger));

  app.get('/healthz', (_req, res) => {
    res.json({ status: 'ok' });
  });
  const readiness = { ...deps.readinessChecks, ...deps.nonBlockingReadinessChecks };
  const nonBlocking = Object.keys(deps.nonBlockingReadinessChecks ?? {});
  app.get('/readyz', async (_req, res) => {
    const report = await runReadinessChecks(readiness, undefined, { nonBlocking });
    res.status(report.status === 'ok' ? 200 : 503).set('cache-control', 'no-store').json(report);
  });
  app.get('/metrics', async (_req, res) => {
    res.type(deps.metricsRegistry.contentType).send(await deps.metricsRegistry.metrics());
  });
  for (const [path, router] of Object.entries(deps.extraRouters ?? {})) app.use(path, router);

  app.use(express.json({ limit: deps.bodyLimit }));
  app.use('/v1', createPlanRouter({ db: deps.wizard.db }));
  app.use(
    '/v1',
    createSignatureWebhookRouter({
      db: deps.wizard.db,
      logger: deps.logger,
      signatureApiKey: deps.signatureApiKey,
      signatureProvider: deps.wizard.signatureProvider,
      freshness: deps.callbackFreshness,
      bodyLimit: deps.bodyLimit,
    }),
  );
  // Static files of the HTML pages (stylesheet, htmx).
  app.use(ASSETS_PATH, pageAssetsRouter());
  // Last: it authenticates every request that reaches it.
  app.use(
    '/v1',
    createWizardRouter({
      wizard: deps.wizard,
      ownerTokens: deps.ownerTokens,
      rateLimit: ownerWriteRateLimit({
        redis: deps.rateLimitRedis,
        writesPerMinute: deps.ownerWritesPerMinute ?? DEFAULT_OWNER_WRITES_PER_MINUTE,
        keyPrefix: deps.rateLimitKeyPrefix,
      }),
    }),
  );

  // The owner wizard in a browser, at `/` (its own forms, CSRF and error pages).
  app.use(
    createWizardPagesRouter({
      wizard: deps.wizard,
      ownerTokens: deps.ownerTokens,
      signatureApiKey: deps.signatureApiKey,
      devSignIn: deps.devSignIn ?? false,
      logger: deps.logger,
    }),
  );

  app.use(notFoundHandler);
  app.use(errorHandler(deps.logger));
  return app;
}
