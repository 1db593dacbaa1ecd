/**
 * OpenTelemetry for the three apps: the Node SDK with the HTTP, express and
 * ioredis instrumentations, configured only by the standard `OTEL_*`
 * environment variables (read by the SDK itself: OTEL_SERVICE_NAME,
 * OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_PROTOCOL,
 * OTEL_TRACES_SAMPLER, OTEL_RESOURCE_ATTRIBUTES...).
 *
 * Off unless an OTLP endpoint (or a traces exporter) is configured: then the
 * SDK is not even loaded, the OpenTelemetry API stays a no-op and the
 * pipeline pays a few function calls per event.
 *
 * Postgres: our driver is postgres.js, which no OpenTelemetry instrumentation
 * covers (instrumentation-pg patches `pg`), and drizzle's built-in spans are
 * not wired; database time shows inside the pipeline's own spans.
 *
 * Import this module (subpath `@petcover/service-kit/tracing`) and call
 * startTracing BEFORE express, http or ioredis are loaded: instrumentations
 * patch modules as they are required.
 */
import { SpanStatusCode, trace } from '@opentelemetry/api';
import type { SpanProcessor } from '@opentelemetry/sdk-trace-base';
import { z } from 'zod';

/** The few variables that decide whether tracing starts; the SDK reads the rest itself. */
export const tracingEnvSchema = z.object({
  OTEL_SDK_DISABLED: z.string().optional(),
  OTEL_EXPORTER_OTLP_ENDPOINT: z.string().optional(),
  OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: z.string().optional(),
  OTEL_TRACES_EXPORTER: z.string().optional(),
  OTEL_SERVICE_NAME: z.string().optional(),
});
export type TracingEnv = z.output<typeof tracingEnvSchema>;

export interface TracingOptions {
  /** service.name unless OTEL_SERVICE_NAME says otherwise. */
  serviceName: string;
  env: Readonly<Record<string, string | undefined>>;
  /** Tests: export to these processors (e.g. an in-memory exporter) instead of what the environment says; tracing is then on. */
  spanProcessors?: SpanProcessor[];
}

export interface Tracing {
  /** False when no exporter is configured: nothing was registered. */
  readonly enabled: boolean;
  /** Flushes and stops the SDK (idempotent; resolves at once when disabled). Never rejects. */
  shutdown(): Promise<void>;
}

const DISABLED: Tracing = { enabled: false, shutdown: () => Promise.resolve() };
let started: Tracing | undefined;

/** Whether `env` asks for traces to be exported. */
export function tracingRequested(env: TracingEnv): boolean {
  if (env.OTEL_SDK_DISABLED?.trim().toLowerCase() === 'true') return false;
  const exporters = env.OTEL_TRACES_EXPORTER?.split(',').map((e) => e.trim()).filter((e) => e !== '') ?? [];
  if (exporters.includes('none')) return false;
  return Boolean(env.OTEL_EXPORTER_OTLP_ENDPOINT?.trim() || env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT?.trim() || exporters.length > 0);
}

/**
 * Starts the SDK when the environment asks for it (or `spanProcessors` are
 * given). Once per process: a second call returns the first one's handle.
 */
export function startTracing(options: TracingOptions): Tracing {
  if (started) return started;
  const env = tracingEnvSchema.parse(options.env);
  if (!options.spanProcessors && !tracingRequested(env)) return DISABLED;
  // Required here, not imported at the top: a process that does not trace never loads the SDK (see node-sdk.ts).
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const { startNodeSdk } = require('./node-sdk') as typeof import('./node-sdk');
  const shutdownSdk = startNodeSdk(env.OTEL_SERVICE_NAME?.trim() || options.serviceName, options.spanProcessors);
  let stopping: Promise<void> | undefined;
  started = {
    enabled: true,
    shutdown: () => (stopping ??= shutdownSdk().catch(() => undefined)),
  };
  return started;
}

/**
 * Runs a command (e.g. `simulate-pet-signature-flow`) in one span named after
 * it, a root, so everything it does and enqueues forms one trace. A throw is
 * recorded on the span (status error, exception event) and rethrown; a
 * non-zero exit code marks the span as an error too.
 */
export async function traceCommand<T>(name: string, run: () => Promise<T>): Promise<T> {
  return trace.getTracer('@petcover/service-kit').startActiveSpan(name, { root: true }, async (span) => {
    try {
      const result = await run();
      if (typeof result === 'number' && result !== 0) span.setStatus({ code: SpanStatusCode.ERROR, message: `exit code ${result}` });
      return result;
    } catch (error) {
      span.recordException(error as Error);
      span.setStatus({ code: SpanStatusCode.ERROR, message: (error as Error).message });
      throw error;
    } finally {
      span.end();
    }
  });
}
