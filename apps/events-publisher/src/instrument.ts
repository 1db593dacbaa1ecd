/**
 * Imported first by main.ts: OpenTelemetry patches http, express and ioredis
 * as they are required, so it starts before anything loads them. The only
 * other reader of the environment than env.ts: the standard OTEL_* variables
 * (the SDK reads them; tracing stays off without an OTLP endpoint).
 */
import { startTracing } from '@petcover/service-kit/tracing';

export const tracing = startTracing({ serviceName: 'events-publisher', env: process.env });
