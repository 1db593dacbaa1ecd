import { Writable } from 'node:stream';
import { createLogger } from '../src';
import { startTracing, tracingRequested } from '../src/tracing';

test('tracing starts only when an exporter is configured, and OTEL_SDK_DISABLED wins', () => {
  expect(tracingRequested({})).toBe(false);
  expect(tracingRequested({ OTEL_SERVICE_NAME: 'api' })).toBe(false);
  expect(tracingRequested({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318' })).toBe(true);
  expect(tracingRequested({ OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: 'http://collector:4318/v1/traces' })).toBe(true);
  expect(tracingRequested({ OTEL_TRACES_EXPORTER: 'console' })).toBe(true);
  expect(tracingRequested({ OTEL_TRACES_EXPORTER: 'none', OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318' })).toBe(false);
  expect(tracingRequested({ OTEL_SDK_DISABLED: 'true', OTEL_EXPORTER_OTLP_ENDPOINT: 'http://collector:4318' })).toBe(false);
});

test('off by default: nothing registered, and log lines carry no trace fields', async () => {
  const tracing = startTracing({ serviceName: 'test', env: {} });
  expect(tracing.enabled).toBe(false);
  await tracing.shutdown();
  const lines: string[] = [];
  const logger = createLogger({
    name: 'test',
    destination: new Writable({
      write(chunk, _enc, done) {
        lines.push(String(chunk));
        done();
      },
    }),
  });
  logger.info({ eventId: 'e1' }, 'a line');
  logger.info({ eventId: 'e2' }, 'another line');
  const parsed = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
  expect(parsed.map((l) => [l.eventId, 'trace_id' in l, 'span_id' in l])).toEqual([
    ['e1', false, false],
    ['e2', false, false],
  ]);
});
