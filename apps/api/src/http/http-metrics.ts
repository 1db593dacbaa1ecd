/**
 * Request metrics and one structured log line per request. The route
 * pattern (not the raw path) labels metrics, so ids do not explode
 * cardinality.
 */
import type { RequestHandler } from 'express';
import type { Logger } from 'pino';
import { Counter, Histogram, type Registry } from 'prom-client';

const PROBE_ROUTES = new Set(['/healthz', '/readyz', '/metrics']);

export function instrumentRequests(registry: Registry, logger: Logger): RequestHandler {
  const requests = new Counter({
    name: 'petcover_api_requests_total',
    help: 'HTTP requests answered, by method, route and status',
    labelNames: ['method', 'route', 'status'],
    registers: [registry],
  });
  const duration = new Histogram({
    name: 'petcover_api_request_duration_seconds',
    help: 'HTTP request duration',
    labelNames: ['method', 'route'],
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers: [registry],
  });
  return (req, res, next) => {
    const started = process.hrtime.bigint();
    res.on('finish', () => {
      const seconds = Number(process.hrtime.bigint() - started) / 1e9;
      const route = req.route?.path ? `${req.baseUrl}${String(req.route.path)}` : 'unmatched';
      requests.inc({ method: req.method, route, status: String(res.statusCode) });
      duration.observe({ method: req.method, route }, seconds);
      // Probes and scrapes arrive every few seconds; they would drown the request log. A 503 from
      // /readyz is an answer (not ready yet), not a failure of the request: debug too.
      const level = PROBE_ROUTES.has(route) ? 'debug' : res.statusCode >= 500 ? 'error' : 'info';
      logger[level]({ method: req.method, route, path: req.path, status: res.statusCode, ms: Math.round(seconds * 1000) }, 'request');
    });
    next();
  };
}
