/**
 * The api's HTTP server: express on node:http with bounded request and
 * header times, so a client that trickles its headers or body (slowloris)
 * is cut off instead of holding a socket and a parser for minutes.
 */
import http from 'node:http';
import { listenOn } from '@petcover/service-kit';
import type { Express } from 'express';

export interface HttpTimeouts {
  /** Whole request (headers and body) must arrive within this; else 408 and the socket closes. */
  requestTimeoutMs: number;
  /** Headers must arrive within this (node caps it at requestTimeoutMs). */
  headersTimeoutMs: number;
}

/** Generous for a JSON API on a slow mobile link, short enough that idle trickles cannot pile up. */
export const DEFAULT_HTTP_TIMEOUTS: HttpTimeouts = { requestTimeoutMs: 30_000, headersTimeoutMs: 10_000 };

/** Starts listening on `port` (0: a free one); resolves once it listens. */
export async function listenHttp(app: Express, options: { port: number; host?: string; timeouts?: HttpTimeouts }): Promise<http.Server> {
  const timeouts = options.timeouts ?? DEFAULT_HTTP_TIMEOUTS;
  const headersTimeout = Math.min(timeouts.headersTimeoutMs, timeouts.requestTimeoutMs);
  const server = http.createServer(
    {
      requestTimeout: timeouts.requestTimeoutMs,
      headersTimeout,
      // node checks both timeouts on this interval (default 30 s), which would stretch a short timeout.
      connectionsCheckingInterval: Math.max(50, Math.min(1_000, Math.floor(headersTimeout / 4))),
    },
    app,
  );
  // A taken port is one line (PortInUseError), not a stack trace.
  await listenOn(server, options.port, options.host, 'PORT (or --port)');
  return server;
}
