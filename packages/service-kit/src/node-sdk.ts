/**
 * The OpenTelemetry Node SDK as the apps run it: HTTP, express and ioredis
 * instrumentations, traces only, everything else from the standard OTEL_*
 * variables. Loaded by startTracing (tracing.ts) only when tracing is on:
 * the SDK and its exporters (gRPC, protobuf) cost about 0.15 s of CPU and
 * 15 MB at start, which a process that does not trace must not pay.
 */
import { ExpressInstrumentation } from '@opentelemetry/instrumentation-express';
import { HttpInstrumentation } from '@opentelemetry/instrumentation-http';
import { IORedisInstrumentation } from '@opentelemetry/instrumentation-ioredis';
import { NodeSDK } from '@opentelemetry/sdk-node';
import type { SpanProcessor } from '@opentelemetry/sdk-trace-base';

/** Paths probed by Kubernetes and Prometheus: a trace per probe would drown the real ones. */
export const UNTRACED_PATHS = ['/healthz', '/readyz', '/metrics'] as const;

/** Starts the SDK (registers the global tracer provider, propagator and context manager); resolves its shutdown. */
export function startNodeSdk(serviceName: string, spanProcessors: SpanProcessor[] | undefined): () => Promise<void> {
  const sdk = new NodeSDK({
    serviceName,
    instrumentations: [
      new HttpInstrumentation({
        ignoreIncomingRequestHook: (request) => UNTRACED_PATHS.some((path) => request.url === path || request.url?.startsWith(`${path}?`)),
      }),
      new ExpressInstrumentation(),
      // Only commands inside a traced operation (a request, a publish, a handler call): the loops' polling stays out.
      new IORedisInstrumentation({ requireParentSpan: true }),
    ],
    // Metrics are Prometheus (/metrics) and logs are JSON lines carrying trace_id: traces only here.
    metricReaders: [],
    logRecordProcessors: [],
    ...(spanProcessors ? { spanProcessors } : {}),
  });
  sdk.start();
  return () => sdk.shutdown();
}
