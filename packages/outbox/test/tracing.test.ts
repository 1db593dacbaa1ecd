/**
 * Trace context through the pipeline, in one process with the real SDK setup
 * (startTracing, HTTP instrumentation) exporting to memory: an HTTP request
 * that enqueues → publish → the handler's `process` span in the request's
 * trace; a batch handler's span links to each event; retries and dead letters
 * on the spans. Real Postgres and Redis.
 */
import { Writable } from 'node:stream';
import { context, SpanKind, SpanStatusCode, trace } from '@opentelemetry/api';
import { InMemorySpanExporter, SimpleSpanProcessor, type ReadableSpan } from '@opentelemetry/sdk-trace-base';
import { createLogger, type RedisClient } from '@petcover/service-kit';
import { startTracing, type Tracing } from '@petcover/service-kit/tracing';
import { Registry } from 'prom-client';
import pino from 'pino';
import { z } from 'zod';
import {
  createConsumer,
  createHandlerRegistry,
  createPublisher,
  enqueue,
  PermanentError,
  type Consumer,
  type ConsumerOptions,
  type HandlerRegistry,
  type Publisher,
} from '../src';
import { MESSAGING, PETCOVER, traceIdOf } from '../src/tracing';
import { createTestDatabase, createTestRedis, trackedRedisPrefixes, uniqueGroupName, uniqueStreamName, waitFor, type TestDatabase } from '../src/testing';

// Instrumentations hook `Module.prototype.require`; jest hands modules a
// subclass of Module (`class Module extends Module {}`) whose prototype no
// real require goes through, so the HTTP instrumentation would never see
// `http` load. Give it Node's own: the subclass's parent.
jest.mock('module', () => Object.getPrototypeOf(jest.requireActual('module')));

const exporter = new InMemorySpanExporter();
let tracing: Tracing;
let db: TestDatabase;
let redis: RedisClient;
const prefixes = trackedRedisPrefixes();
const running: Array<Publisher | Consumer> = [];
const quiet = pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' });
const tracer = trace.getTracer('tracing-test');

beforeAll(async () => {
  tracing = startTracing({ serviceName: 'outbox-test', env: {}, spanProcessors: [new SimpleSpanProcessor(exporter)] });
  db = await createTestDatabase({ poolSize: 12 });
  redis = createTestRedis();
});
afterEach(async () => {
  await Promise.all(running.splice(0).map((r) => r.stop()));
});
afterAll(async () => {
  await prefixes.deleteAll(redis);
  redis.disconnect();
  await db.drop();
  await tracing.shutdown();
});

function startPipeline(stream: string, registry: HandlerRegistry, options: Partial<ConsumerOptions> = {}) {
  const keyPrefix = prefixes.next();
  const publisher = createPublisher({ sql: db.sql, redis, logger: quiet, registry: new Registry(), keyPrefix, pollIntervalMs: 100, leaseTtlMs: 2_000 });
  running.push(publisher);
  void publisher.start();
  const consumer = createConsumer({
    db: db.db,
    sql: db.sql,
    redis,
    logger: quiet,
    registry,
    streams: [{ name: stream }],
    group: uniqueGroupName(),
    keyPrefix,
    blockMs: 100,
    leaseTtlMs: 2_000,
    retryBaseDelayMs: 10,
    retryMaxDelayMs: 20,
    ...options,
  });
  running.push(consumer);
  consumer.start();
  return { publisher, consumer };
}

const spans = () => exporter.getFinishedSpans();
const attribute = (span: ReadableSpan, key: string) => span.attributes[key];
const parentOf = (span: ReadableSpan) => span.parentSpanContext?.spanId;
function spansOf(name: string, eventId?: string): ReadableSpan[] {
  return spans().filter((s) => s.name === name && (eventId === undefined || attribute(s, MESSAGING.messageId) === eventId));
}

const payload = z.object({ n: z.number() });

test('an HTTP request that enqueues: create, publish and the handler’s process span share its trace; handler logs carry the ids', async () => {
  const stream = uniqueStreamName('traced');
  const http = await import('node:http');
  const logLines: Array<Record<string, unknown>> = [];
  const logger = createLogger({
    name: 'consumer',
    level: 'info',
    destination: new Writable({
      write(chunk, _encoding, done) {
        for (const line of String(chunk).split('\n')) if (line) logLines.push(JSON.parse(line) as Record<string, unknown>);
        done();
      },
    }),
  });
  const seen: Array<{ eventId: string; traceId: string | undefined }> = [];
  const registry = createHandlerRegistry().register('Traced', {
    schema: payload,
    async handle(event, ctx) {
      seen.push({ eventId: event.eventId, traceId: trace.getActiveSpan()?.spanContext().traceId });
      ctx.logger.info({ n: event.payload.n }, 'handled a traced event');
    },
  });

  const server = http.createServer((request, response) => {
    void db.db
      .transaction((tx) => enqueue(tx, { stream, type: 'Traced', partitionKey: 'k1', payload: { n: 1 } }))
      .then((enqueued) => {
        response.writeHead(201, { 'content-type': 'application/json' });
        response.end(JSON.stringify({ eventId: enqueued.eventId }));
      });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  try {
    const { port } = server.address() as { port: number };
    const eventId = await new Promise<string>((resolve, reject) => {
      http
        .request({ host: '127.0.0.1', port, method: 'POST', path: '/things' }, (response) => {
          let body = '';
          response.on('data', (chunk) => (body += chunk));
          response.on('end', () => resolve((JSON.parse(body) as { eventId: string }).eventId));
        })
        .on('error', reject)
        .end();
    });

    const serverSpan = await waitFor(() => spans().find((s) => s.kind === SpanKind.SERVER), { timeoutMs: 30_000, description: 'the HTTP server span' });
    const requestTraceId = serverSpan.spanContext().traceId;
    // The trace context is in the row the INSERT wrote.
    const [row] = await db.sql<{ headers: Record<string, string> }[]>`SELECT headers FROM events.outbox_event WHERE event_id = ${eventId}`;
    expect(row!.headers.traceparent).toMatch(new RegExp(`^00-${requestTraceId}-[0-9a-f]{16}-01$`));

    startPipeline(stream, registry, { logger });
    const process = await waitFor(() => spansOf(`process ${stream}`, eventId)[0], { timeoutMs: 30_000, description: 'the process span' });
    const create = spansOf(`create ${stream}`, eventId)[0]!;
    const publish = spansOf(`publish ${stream}`, eventId)[0]!;
    expect(seen).toEqual([{ eventId, traceId: requestTraceId }]);
    // request → create (in the request) → process (in the consumer), and the publish span in the same trace.
    expect(create.spanContext().traceId).toBe(requestTraceId);
    expect(parentOf(create)).toBe(serverSpan.spanContext().spanId);
    expect(create.kind).toBe(SpanKind.PRODUCER);
    expect(process.spanContext().traceId).toBe(requestTraceId);
    expect(parentOf(process)).toBe(create.spanContext().spanId);
    expect(process.kind).toBe(SpanKind.CONSUMER);
    expect(process.status.code).toBe(SpanStatusCode.UNSET);
    expect(publish.kind).toBe(SpanKind.PRODUCER);
    expect(publish.spanContext().traceId).toBe(requestTraceId);
    expect(publish.links.map((l) => l.context.spanId)).toEqual([create.spanContext().spanId]);
    expect(process.attributes).toMatchObject({
      [MESSAGING.system]: 'redis',
      [MESSAGING.destination]: stream,
      [MESSAGING.operationType]: 'process',
      [MESSAGING.operationName]: 'process',
      [MESSAGING.messageId]: eventId,
      [PETCOVER.eventType]: 'Traced',
      [PETCOVER.attempt]: 1,
    });
    expect(publish.attributes).toMatchObject({ [MESSAGING.operationType]: 'send', [MESSAGING.operationName]: 'publish', [MESSAGING.destination]: stream });
    // The handler's log line joins the trace.
    const line = logLines.find((l) => l.msg === 'handled a traced event');
    expect(line).toMatchObject({ trace_id: requestTraceId, span_id: process.spanContext().spanId, eventId });
  } finally {
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
});

/** Enqueues one event in its own transaction under its own root span; returns the event id and the create span's context. */
async function enqueueInOwnTrace(stream: string, type: string, partitionKey: string, n: number): Promise<string> {
  return tracer.startActiveSpan(`producer ${n}`, { root: true }, async (span) => {
    try {
      const enqueued = await db.db.transaction((tx) => enqueue(tx, { stream, type, partitionKey, payload: { n } }));
      return enqueued.eventId;
    } finally {
      span.end();
    }
  });
}

test('a batch handler’s process span links to each event’s context', async () => {
  const stream = uniqueStreamName('batched');
  const batches: number[] = [];
  const registry = createHandlerRegistry().register('Batched', {
    schema: payload,
    async handle() {
      batches.push(1);
    },
    async handleBatch(events) {
      batches.push(events.length);
    },
  });
  const eventIds: string[] = [];
  for (let n = 0; n < 3; n++) eventIds.push(await enqueueInOwnTrace(stream, 'Batched', 'same-key', n));
  const { consumer } = startPipeline(stream, registry, { batchSize: 10 });
  void consumer;
  await waitFor(() => (batches.reduce((a, b) => a + b, 0) === 3 ? true : null), { timeoutMs: 30_000, description: 'three events handled' });
  expect(batches).toEqual([3]);
  const creates = eventIds.map((id) => spansOf(`create ${stream}`, id)[0]!);
  expect(new Set(creates.map((c) => c.spanContext().traceId)).size).toBe(3);
  const [process] = spansOf(`process ${stream}`);
  expect(process).toBeDefined();
  expect(process!.attributes[MESSAGING.batchCount]).toBe(3);
  expect(process!.links.map((l) => l.context.spanId)).toEqual(creates.map((c) => c.spanContext().spanId));
  // Three traces: none is its parent.
  expect(parentOf(process!)).toBeUndefined();
  // The publisher's batch span links to each too.
  const publish = spansOf(`publish ${stream}`);
  expect(publish.flatMap((p) => p.links.map((l) => l.context.spanId)).sort()).toEqual(creates.map((c) => c.spanContext().spanId).sort());
});

test('retries and dead letters are on the spans: each failed attempt errors with its exception, the dead letter is a span in the event’s trace', async () => {
  const stream = uniqueStreamName('failing');
  const registry = createHandlerRegistry()
    .register('FlakyOnce', {
      schema: payload,
      async handle(_event, ctx) {
        if (ctx.attempt === 1) throw new Error('flaky dependency timed out');
      },
    })
    .register('AlwaysFails', {
      schema: payload,
      async handle() {
        throw new Error('downstream keeps refusing');
      },
    })
    .register('Refused', {
      schema: payload,
      async handle() {
        throw new PermanentError('Refused references missing Thing 42');
      },
    });
  const flaky = await enqueueInOwnTrace(stream, 'FlakyOnce', 'a', 1);
  const exhausted = await enqueueInOwnTrace(stream, 'AlwaysFails', 'b', 2);
  const permanent = await enqueueInOwnTrace(stream, 'Refused', 'c', 3);
  // A payload that fails its schema: dead-lettered at once, without a handler call.
  const malformed = await tracer.startActiveSpan('producer bad', { root: true }, async (span) => {
    const enqueued = await db.db.transaction((tx) => enqueue(tx, { stream, type: 'FlakyOnce', partitionKey: 'd', payload: { n: 'not a number' } }));
    span.end();
    return enqueued.eventId;
  });
  startPipeline(stream, registry, { maxAttempts: 2 });
  await waitFor(async () => {
    const [row] = await db.sql<{ n: number }[]>`SELECT count(*)::int AS n FROM events.dead_letter`;
    return row!.n === 3 && spansOf(`dead_letter ${stream}`).length === 3 && spansOf(`process ${stream}`, flaky).length === 2 ? true : null;
  }, { timeoutMs: 30_000, description: 'three dead letters and the flaky event retried' });

  const traceOf = (eventId: string) => spansOf(`create ${stream}`, eventId)[0]!.spanContext();
  const exceptionOf = (span: ReadableSpan) => span.events.find((e) => e.name === 'exception')?.attributes?.['exception.message'];

  // Retried: attempt 1 failed (error status, exception event), attempt 2 succeeded; both children of the event's create span.
  const [first, second] = spansOf(`process ${stream}`, flaky).sort((a, b) => Number(a.attributes[PETCOVER.attempt]) - Number(b.attributes[PETCOVER.attempt]));
  expect(first!.attributes[PETCOVER.attempt]).toBe(1);
  expect(first!.status).toEqual({ code: SpanStatusCode.ERROR, message: 'flaky dependency timed out' });
  expect(exceptionOf(first!)).toBe('flaky dependency timed out');
  expect(second!.attributes[PETCOVER.attempt]).toBe(2);
  expect(second!.status.code).toBe(SpanStatusCode.UNSET);
  for (const span of [first!, second!]) expect(parentOf(span)).toBe(traceOf(flaky).spanId);

  // Out of attempts: two failed process spans, then the dead letter.
  const attempts = spansOf(`process ${stream}`, exhausted);
  expect(attempts).toHaveLength(2);
  for (const span of attempts) expect(span.status.code).toBe(SpanStatusCode.ERROR);
  const deadLetters = new Map(spansOf(`dead_letter ${stream}`).map((s) => [s.attributes[MESSAGING.messageId], s]));
  const exhaustedLetter = deadLetters.get(exhausted)!;
  expect(exhaustedLetter.status).toEqual({ code: SpanStatusCode.ERROR, message: 'downstream keeps refusing' });
  expect(exceptionOf(exhaustedLetter)).toBe('downstream keeps refusing');
  expect(exhaustedLetter.attributes).toMatchObject({ [PETCOVER.deadLetterReason]: 'retries_exhausted', [PETCOVER.attempt]: 2, [MESSAGING.operationType]: 'settle' });
  expect(exhaustedLetter.spanContext().traceId).toBe(traceOf(exhausted).traceId);
  expect(parentOf(exhaustedLetter)).toBe(traceOf(exhausted).spanId);

  // Permanent: one attempt, dead-lettered at once.
  expect(spansOf(`process ${stream}`, permanent)).toHaveLength(1);
  expect(deadLetters.get(permanent)!.attributes).toMatchObject({ [PETCOVER.deadLetterReason]: 'permanent_error', [PETCOVER.attempt]: 1 });
  expect(exceptionOf(deadLetters.get(permanent)!)).toBe('Refused references missing Thing 42');

  // Schema: no handler call, a dead letter in the event's trace.
  expect(spansOf(`process ${stream}`, malformed)).toHaveLength(0);
  expect(deadLetters.get(malformed)!.attributes[PETCOVER.deadLetterReason]).toBe('schema');
  expect(deadLetters.get(malformed)!.spanContext().traceId).toBe(traceOf(malformed).traceId);
});

test('a traceparent the caller gave is kept as is (no create span)', async () => {
  const stream = uniqueStreamName('given');
  const given = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';
  const { eventId } = await tracer.startActiveSpan('ambient', async (span) => {
    try {
      return await db.db.transaction((tx) => enqueue(tx, { stream, type: 'Given', partitionKey: 'k', payload: { n: 1 }, headers: { traceparent: given, tenant: 't1' } }));
    } finally {
      span.end();
    }
  });
  const [row] = await db.sql<{ headers: Record<string, string> }[]>`SELECT headers FROM events.outbox_event WHERE event_id = ${eventId}`;
  expect(row!.headers).toEqual({ traceparent: given, tenant: 't1' });
  expect(spansOf(`create ${stream}`)).toHaveLength(0);
});

test('without an active span, enqueue starts a trace of its own per event', async () => {
  const stream = uniqueStreamName('rootless');
  const { eventId } = await context.with(trace.deleteSpan(context.active()), () =>
    db.db.transaction((tx) => enqueue(tx, { stream, type: 'Rootless', partitionKey: 'k', payload: { n: 1 } })),
  );
  const [create] = spansOf(`create ${stream}`, eventId);
  expect(parentOf(create!)).toBeUndefined();
  const [row] = await db.sql<{ headers: Record<string, string> }[]>`SELECT headers FROM events.outbox_event WHERE event_id = ${eventId}`;
  expect(row!.headers.traceparent).toBe(`00-${create!.spanContext().traceId}-${create!.spanContext().spanId}-01`);
});

test('traceIdOf reads the trace id of a W3C traceparent header, and nothing else', () => {
  expect(traceIdOf({ traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01' })).toBe('0af7651916cd43dd8448eb211c80319c');
  expect(traceIdOf({ traceparent: '00-00000000000000000000000000000000-b7ad6b7169203331-01' })).toBeNull();
  expect(traceIdOf({ traceparent: 'not a traceparent' })).toBeNull();
  expect(traceIdOf({ tenant: 'fr' })).toBeNull();
  expect(traceIdOf(null)).toBeNull();
});
