/**
 * One trace per enrollment, with the real processes (built apps): api,
 * events-publisher and events-consumer export OTLP/HTTP JSON (configured only
 * by OTEL_* variables) to a small receiver this test runs. One
 * `simulate-pet-signature-flow` → one trace holding spans of all three
 * services, every span's parent inside it.
 */
import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { domainMigrations } from '@petcover/domain';
import { outboxMigrations } from '@petcover/outbox';
import { createTestDatabase, createTestRedis, deleteKeysWithPrefix, freePort, testRedisUrl, uniqueGroupName, uniqueRedisPrefix, waitFor, type TestDatabase } from '@petcover/outbox/testing';
import { RunningApps } from './support/running-apps';
import { API_DIST, CONSUMER_MAIN, PUBLISHER_MAIN, requireBuiltApps } from './support/built-files';

const run = promisify(execFile);

requireBuiltApps();

/** A span as OTLP/JSON carries it (ids in hex), with the service that sent it. */
interface ReceivedSpan {
  service: string;
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  links?: Array<{ traceId: string; spanId: string }>;
}

interface OtlpTraces {
  resourceSpans?: Array<{
    resource?: { attributes?: Array<{ key: string; value: { stringValue?: string } }> };
    scopeSpans?: Array<{ spans?: Array<Omit<ReceivedSpan, 'service'>> }>;
  }>;
}

/** An OTLP/HTTP receiver (JSON protocol) that keeps every span it is sent. */
async function startOtlpReceiver(): Promise<{ url: string; spans: ReceivedSpan[]; close(): Promise<void> }> {
  const spans: ReceivedSpan[] = [];
  const server = http.createServer((request, response) => {
    let body = '';
    request.on('data', (chunk: Buffer) => (body += chunk.toString()));
    request.on('end', () => {
      if (request.url === '/v1/traces') {
        const traces = JSON.parse(body) as OtlpTraces;
        for (const resourceSpans of traces.resourceSpans ?? []) {
          const service = resourceSpans.resource?.attributes?.find((a) => a.key === 'service.name')?.value.stringValue ?? 'unknown';
          for (const scope of resourceSpans.scopeSpans ?? []) for (const span of scope.spans ?? []) spans.push({ ...span, service });
        }
      }
      response.writeHead(200, { 'content-type': 'application/json' });
      response.end('{}');
    });
  });
  const port = await freePort();
  await new Promise<void>((resolve) => server.listen(port, '127.0.0.1', resolve));
  return { url: `http://127.0.0.1:${port}`, spans, close: () => new Promise((resolve) => server.close(() => resolve())) };
}

describe('tracing end to end with real processes', () => {
  jest.setTimeout(150_000);
  let database: TestDatabase;
  let storeDir: string;
  let apps: RunningApps;
  let receiver: Awaited<ReturnType<typeof startOtlpReceiver>>;
  const prefix = uniqueRedisPrefix();
  let env: NodeJS.ProcessEnv;

  beforeAll(async () => {
    receiver = await startOtlpReceiver();
    database = await createTestDatabase({ migrations: [outboxMigrations, domainMigrations], poolSize: 2 });
    storeDir = fs.mkdtempSync(path.join(os.tmpdir(), 'petcover-trace-docs-'));
    const [apiPort, publisherPort, consumerPort] = await Promise.all([freePort(), freePort(), freePort()]);
    env = {
      PATH: process.env.PATH,
      DATABASE_URL: database.url,
      REDIS_URL: testRedisUrl(),
      REDIS_KEY_PREFIX: prefix,
      LOG_LEVEL: 'warn',
      AUTH_SECRET: 'trace-e2e-auth-secret-0123456789',
      SIGNATURE_API_KEY: 'trace-e2e-signature-api-key',
      DOCUMENT_STORE_DIR: storeDir,
      // Only standard variables; service names are each app's default.
      OTEL_EXPORTER_OTLP_ENDPOINT: receiver.url,
      OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json',
      OTEL_BSP_SCHEDULE_DELAY: '200',
    };
    apps = new RunningApps(env);
    const api = apps.start('api', [path.join(API_DIST, 'main.js')], { PORT: String(apiPort) });
    const publisher = apps.start('publisher', [PUBLISHER_MAIN, 'start', '--poll-interval', '1'], { HEALTH_PORT: String(publisherPort) });
    const consumer = apps.start('consumer', [CONSUMER_MAIN, 'start', '--group', uniqueGroupName('domain')], { HEALTH_PORT: String(consumerPort) });
    await Promise.all([apps.waitReady(api, apiPort), apps.waitReady(publisher, publisherPort), apps.waitReady(consumer, consumerPort)]);
  });

  afterAll(async () => {
    await apps?.stopAll();
    await receiver?.close();
    const redis = createTestRedis();
    await deleteKeysWithPrefix(redis, prefix);
    redis.disconnect();
    await database?.drop();
    if (storeDir) fs.rmSync(storeDir, { recursive: true, force: true });
  });

  test('one simulate-pet-signature-flow is one trace with spans from the api, the publisher and the consumer', async () => {
    const owner = randomUUID();
    await run(process.execPath, [path.join(API_DIST, 'commands/simulate-pet-signature-flow.js'), '--owner-global-user-id', owner, '--timeout', '60'], { env });
    const root = await waitFor(() => receiver.spans.find((s) => s.name === 'simulate-pet-signature-flow'), {
      timeoutMs: 30_000,
      description: 'the command’s root span',
    });
    expect(root.service).toBe('api');
    expect(root.parentSpanId ?? '').toBe('');
    const inTrace = () => receiver.spans.filter((s) => s.traceId === root.traceId);
    // The chain's last hop: the consumer handles ContractCreated (emitted by a handler, so the trace crossed the pipeline twice).
    await waitFor(
      () => (inTrace().some((s) => s.service === 'events-consumer' && s.name === 'process stream:contracting:contract_changes') ? true : null),
      { timeoutMs: 60_000, intervalMs: 200, description: 'ContractCreated processed in the same trace' },
    );
    const spans = inTrace();
    expect(new Set(spans.map((s) => s.service))).toEqual(new Set(['api', 'events-publisher', 'events-consumer']));
    const names = new Set(spans.map((s) => `${s.service} ${s.name.split(' ')[0]}`));
    for (const expected of ['api create', 'events-publisher publish', 'events-consumer process', 'events-consumer create']) expect(names).toContain(expected);
    // No orphan: every parent is a span of this trace.
    const ids = new Set(spans.map((s) => s.spanId));
    const orphans = spans.filter((s) => s.parentSpanId && !ids.has(s.parentSpanId));
    expect(orphans).toEqual([]);
    // And the three signature callbacks are each processed as a child of their create span.
    const creates = new Map(spans.filter((s) => s.name.startsWith('create ')).map((s) => [s.spanId, s]));
    const processed = spans.filter((s) => s.name === 'process stream:contracting:signature_events');
    expect(processed.length).toBeGreaterThanOrEqual(3);
    for (const span of processed) expect(creates.get(span.parentSpanId ?? '')?.service).toBe('api');
  });
});
