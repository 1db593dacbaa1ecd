/**
 * The health server of every app: `/healthz` (alive), `/readyz` (every check
 * passes, each bounded in time) and `/metrics` (Prometheus).
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';
import { maskUrlPassword } from './connection-urls';
import { listenOn } from './listen';

export type ReadinessCheck = () => Promise<void>;

export interface CheckResult {
  ok: boolean;
  detail?: string;
  ms: number;
  /** Present (false) on a check that is reported but does not decide readiness. */
  blocking?: false;
}

export interface ReadinessReport {
  status: 'ok' | 'fail';
  checks: Record<string, CheckResult>;
}

/** Each check gets this long before it counts as failed (SPEC §5: about 1 s). */
export const DEFAULT_CHECK_TIMEOUT_MS = 1_000;

/**
 * Runs every check in parallel, each bounded by `timeoutMs`. The report is
 * `ok` when every check passes, except those named in `nonBlocking`: they
 * are reported (e.g. the api serves owners without Redis, so Redis down
 * shows in the body but keeps it ready).
 */
export async function runReadinessChecks(
  checks: Record<string, ReadinessCheck>,
  timeoutMs = DEFAULT_CHECK_TIMEOUT_MS,
  options: { nonBlocking?: readonly string[] } = {},
): Promise<ReadinessReport> {
  const nonBlocking = new Set(options.nonBlocking ?? []);
  const flagOf = (name: string): { blocking?: false } => (nonBlocking.has(name) ? { blocking: false } : {});
  const entries = await Promise.all(
    Object.entries(checks).map(async ([name, check]): Promise<[string, CheckResult]> => {
      const started = Date.now();
      let timer: NodeJS.Timeout | undefined;
      try {
        await Promise.race([
          check(),
          new Promise<never>((_, reject) => {
            timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
          }),
        ]);
        return [name, { ok: true, ms: Date.now() - started, ...flagOf(name) }];
      } catch (error) {
        return [name, { ok: false, detail: maskUrlPassword((error as Error).message || String(error)), ms: Date.now() - started, ...flagOf(name) }];
      } finally {
        clearTimeout(timer);
      }
    }),
  );
  const results = Object.fromEntries(entries);
  return { status: entries.every(([name, r]) => r.ok || nonBlocking.has(name)) ? 'ok' : 'fail', checks: results };
}

export interface HealthServerOptions {
  port: number;
  host?: string;
  checks: Record<string, ReadinessCheck>;
  registry?: Registry;
  checkTimeoutMs?: number;
}

export interface HealthServer {
  port: number;
  close(): Promise<void>;
}

/** Starts the server; resolves once it listens (port 0 picks a free port). */
export async function startHealthServer(options: HealthServerOptions): Promise<HealthServer> {
  const server = http.createServer((req, res) => {
    void handleHealthRequest(req, res, options);
  });
  await listenOn(server, options.port, options.host ?? '0.0.0.0', 'HEALTH_PORT');
  let closing: Promise<void> | undefined;
  return {
    port: (server.address() as AddressInfo).port,
    close() {
      closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      return closing;
    },
  };
}

async function handleHealthRequest(req: http.IncomingMessage, res: http.ServerResponse, options: HealthServerOptions): Promise<void> {
  const send = (status: number, body: string, type = 'application/json') => {
    res.writeHead(status, { 'content-type': type, 'cache-control': 'no-store' });
    res.end(body);
  };
  const path = (req.url ?? '/').split('?')[0];
  try {
    if (path === '/healthz') return send(200, JSON.stringify({ status: 'ok' }));
    if (path === '/readyz') {
      const report = await runReadinessChecks(options.checks, options.checkTimeoutMs);
      return send(report.status === 'ok' ? 200 : 503, JSON.stringify(report));
    }
    if (path === '/metrics' && options.registry) {
      return send(200, await options.registry.metrics(), options.registry.contentType);
    }
    send(404, JSON.stringify({ error: 'not_found', message: `no route ${req.method} ${path}` }));
  } catch (error) {
    send(500, JSON.stringify({ error: 'internal', message: maskUrlPassword((error as Error).message) }));
  }
}
