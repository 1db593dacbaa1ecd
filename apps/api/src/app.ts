/**
 * `createApp(deps)`: the express application, without listening. Every
 * router is mounted in one list below; adding one (e.g. the admin router at
 * `/v1/admin`) is one line.
 */
import express, { type Express, type Router } from 'express';
import type { Logger } from 'pino';
import type { Registry } from 'prom-client';
import type { WizardDeps } from '@petcover/domain';
import { runReadinessChecks, type ReadinessCheck } from '@petcover/service-kit';
import { errorHandler, notFoundHandler } from './http/api-errors';
import { instrumentRequests } from './http/http-metrics';
import { createPlanRouter } from './routes/plan-routes';
import { createSignatureWebhookRouter } from './routes/signature-webhook-routes';
import { ASSETS_PATH, pageAssetsRouter } from './pages/render';
import { createWizardRouter } from './routes/wizard-routes';

export interface AppDeps {
  logger: Logger;
  wizard: WizardDeps;
  /** HS256 key of owner bearer tokens. */
  authSecret: string;
  /** Keys the callback event_hash (Dropbox Sign API key). */
  signatureApiKey: string;
  /** Recorded with every callback. */
  signatureProviderName: string;
  /** Largest accepted body, e.g. `100kb`. */
  bodyLimit: string;
  /** `/readyz` checks (db, redis, migrations), each bounded by service-kit. */
  readinessChecks: Record<string, ReadinessCheck>;
  metricsRegistry: Registry;
  /** Extra routers by mount path, e.g. `{ '/v1/admin': createAdminRouter(...) }`. */
  extraRouters?: Record<string, Router>;
}

export function createApp(deps: AppDeps): Express {
  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);
  app.use(instrumentRequests(deps.metricsRegistry, deps.logger));
  app.use(express.json({ limit: deps.bodyLimit }));

  app.get('/healthz', (_req, res) => {
    res.json({ status: 'ok' });
  });
  app.get('/readyz', async (_req, res) => {
    const report = await runReadinessChecks(deps.readinessChecks);
    res.status(report.status === 'ok' ? 200 : 503).set('cache-control', 'no-store').json(report);
  });
  app.get('/metrics', async (_req, res) => {
    res.type(deps.metricsRegistry.contentType).send(await deps.metricsRegistry.metrics());
  });

  app.use('/v1', createPlanRouter({ db: deps.wizard.db }));
  app.use(
    '/v1',
    createSignatureWebhookRouter({
      db: deps.wizard.db,
      logger: deps.logger,
      signatureApiKey: deps.signatureApiKey,
      signatureProviderName: deps.signatureProviderName,
      bodyLimit: deps.bodyLimit,
    }),
  );
  // Static files of the HTML pages (stylesheet, htmx).
  app.use(ASSETS_PATH, pageAssetsRouter());
  for (const [path, router] of Object.entries(deps.extraRouters ?? {})) app.use(path, router);
  // Last: it authenticates every request that reaches it.
  app.use('/v1', createWizardRouter({ wizard: deps.wizard, authSecret: deps.authSecret }));

  app.use(notFoundHandler);
  app.use(errorHandler(deps.logger));
  return app;
}
