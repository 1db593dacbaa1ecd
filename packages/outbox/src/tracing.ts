/**
 * Tracing of the pipeline (OpenTelemetry API only; the SDK is the app's
 * business): W3C trace context travels in the event's `headers`, written by
 * `enqueue` in the same INSERT, carried unchanged by the publisher, continued
 * by the consumer. Spans follow the OpenTelemetry messaging semantic
 * conventions:
 *
 * | span | kind | where | parent / links |
 * |---|---|---|---|
 * | `create <stream>` | producer | enqueue, one per event | the caller's active span; its context goes into the headers |
 * | `publish <stream>` | producer | publisher, one per drained batch | links to each event's context; their trace as parent when they share one |
 * | `process <stream>` | consumer | consumer, one per handler call (and attempt) | the event's context; a batch handler's call links to each event's (parent: their trace when they share one) |
 * | `dead_letter <stream>` | client (settle) | consumer, when an event is dead-lettered | the event's context |
 *
 * Without a registered SDK every call here is the API's no-op: a few function
 * calls per event, nothing written to the headers, nothing exported.
 */
import {
  context,
  propagation,
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  trace,
  type Attributes,
  type Context,
  type Link,
  type Span,
  type SpanContext,
} from '@opentelemetry/api';

const tracer = trace.getTracer('@petcover/outbox');

/** The headers that carry the trace context (W3C Trace Context). */
export const TRACE_CONTEXT_HEADERS = ['traceparent', 'tracestate'] as const;

/**
 * The messaging attributes (semantic conventions 1.27+, still "development"
 * there, so the names are spelled here rather than imported from the
 * incubating entry point, which may rename them in any minor release).
 */
export const MESSAGING = {
  system: 'messaging.system',
  destination: 'messaging.destination.name',
  partition: 'messaging.destination.partition.id',
  group: 'messaging.consumer.group.name',
  messageId: 'messaging.message.id',
  batchCount: 'messaging.batch.message_count',
  operationType: 'messaging.operation.type',
  operationName: 'messaging.operation.name',
} as const;
/** Redis Streams carry the events; `redis` is how tools group them. */
export const MESSAGING_SYSTEM = 'redis';
/** PetCover's own attributes (not in the conventions). */
export const PETCOVER = {
  eventType: 'petcover.event.type',
  outboxId: 'petcover.outbox.id',
  entryId: 'petcover.redis.entry_id',
  attempt: 'petcover.consumer.attempt',
  deadLetterReason: 'petcover.dead_letter.reason',
} as const;

const headerGetter = {
  keys: (carrier: Record<string, string>) => Object.keys(carrier),
  get: (carrier: Record<string, string>, key: string) => carrier[key],
};

const TRACEPARENT = /^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$/;

/**
 * The trace id of the W3C `traceparent` in `headers` (what to search in a
 * tracing UI), or null when there is none or it is malformed. Needs no SDK:
 * the console shows it whether or not the api traces.
 */
export function traceIdOf(headers: Readonly<Record<string, string>> | null | undefined): string | null {
  const match = TRACEPARENT.exec(headers?.traceparent?.trim().toLowerCase() ?? '');
  return match && !/^0+$/.test(match[1]!) ? match[1]! : null;
}

/** The producer's context carried in `headers` (ROOT_CONTEXT when there is none or it is malformed). */
export function contextFromHeaders(headers: Readonly<Record<string, string>>): Context {
  return propagation.extract(ROOT_CONTEXT, headers, headerGetter);
}

/** The span context carried in `headers`, or undefined when there is none (or it is malformed). */
function spanContextOf(headers: Readonly<Record<string, string>>): SpanContext | undefined {
  const spanContext = trace.getSpanContext(contextFromHeaders(headers));
  return spanContext && trace.isSpanContextValid(spanContext) ? spanContext : undefined;
}

/**
 * Parent and links of a span that covers several events: a link to each
 * event's context, and the events' trace as parent when they all belong to
 * one (one enrollment's events drained together stay in its trace); several
 * traces: a new trace that links to each.
 */
function parentAndLinks(contexts: readonly (SpanContext | undefined)[]): { parent: Context; links: Link[] } {
  const links: Link[] = [];
  for (const spanContext of contexts) if (spanContext) links.push({ context: spanContext });
  const first = links[0]?.context;
  const oneTrace = first !== undefined && links.length === contexts.length && links.every((l) => l.context.traceId === first.traceId);
  return { parent: oneTrace ? trace.setSpanContext(ROOT_CONTEXT, first) : ROOT_CONTEXT, links };
}

/** False while no propagator is registered (no SDK): then no header is worth parsing. */
function propagating(): boolean {
  return propagation.fields().length > 0;
}

function endWithError(span: Span, error: unknown): void {
  const err = error instanceof Error ? error : new Error(String(error));
  span.recordException(err);
  span.setAttribute('error.type', err.name || 'Error');
  span.setStatus({ code: SpanStatusCode.ERROR, message: err.message });
  span.end();
}

/** Runs `fn` with `span` active (child of `parent`), then ends it: with status error and the exception if `fn` throws. */
async function runInSpan<T>(span: Span, parent: Context, fn: () => Promise<T>): Promise<T> {
  try {
    const result = await context.with(trace.setSpan(parent, span), fn);
    span.end();
    return result;
  } catch (error) {
    endWithError(span, error);
    throw error;
  }
}

// ---- producer: enqueue -------------------------------------------------------

/** What enqueue knows of an event when it starts its `create` span. */
export interface CreatedEvent {
  streamName: string;
  eventId: string;
  eventType: string;
  headers: Record<string, string>;
}

/**
 * Starts a `create` span per event whose headers carry no `traceparent` yet
 * (one the caller gave is kept as is), child of the active span, and writes
 * its context into a copy of the event's headers (`headers` is replaced).
 * Returns the spans to end once the INSERT is done: `end(error?)`.
 */
export function startCreateSpans(events: CreatedEvent[]): { end(error?: unknown): void } {
  const active = context.active();
  const spans: Span[] = [];
  for (const event of events) {
    if (event.headers.traceparent !== undefined) continue;
    const span = tracer.startSpan(
      `create ${event.streamName}`,
      {
        kind: SpanKind.PRODUCER,
        attributes: {
          [MESSAGING.system]: MESSAGING_SYSTEM,
          [MESSAGING.destination]: event.streamName,
          [MESSAGING.messageId]: event.eventId,
          [MESSAGING.operationType]: 'create',
          [MESSAGING.operationName]: 'create',
          [PETCOVER.eventType]: event.eventType,
        },
      },
      active,
    );
    const carrier: Record<string, string> = {};
    propagation.inject(trace.setSpan(active, span), carrier);
    // No SDK (or no propagator): nothing injected, the headers stay untouched.
    if (carrier.traceparent !== undefined) event.headers = { ...event.headers, ...carrier };
    if (span.isRecording()) spans.push(span);
  }
  return {
    end(error?: unknown) {
      for (const span of spans) {
        if (error === undefined) span.end();
        else endWithError(span, error);
      }
    },
  };
}

// ---- publisher -------------------------------------------------------------------

/**
 * Runs `append` (one drained batch of `stream`) inside a `publish` span that
 * links to each event's context (see parentAndLinks). The headers text is
 * parsed only when an SDK is registered.
 */
export async function tracePublish<T>(stream: string, events: readonly { eventId: string; headersJson: string }[], append: () => Promise<T>): Promise<T> {
  const attributes: Attributes = {
    [MESSAGING.system]: MESSAGING_SYSTEM,
    [MESSAGING.destination]: stream,
    [MESSAGING.operationType]: 'send',
    [MESSAGING.operationName]: 'publish',
  };
  if (events.length === 1) attributes[MESSAGING.messageId] = events[0]!.eventId;
  else attributes[MESSAGING.batchCount] = events.length;
  const { parent, links } = propagating() ? parentAndLinks(events.map((e) => spanContextOf(parseHeaders(e.headersJson)))) : NO_PARENT;
  const span = tracer.startSpan(`publish ${stream}`, { kind: SpanKind.PRODUCER, attributes, links }, parent);
  if (!span.isRecording()) return append();
  return runInSpan(span, parent, append);
}

const NO_PARENT: { parent: Context; links: Link[] } = { parent: ROOT_CONTEXT, links: [] };

function parseHeaders(json: string): Record<string, string> {
  try {
    const parsed: unknown = JSON.parse(json);
    return parsed !== null && typeof parsed === 'object' && !Array.isArray(parsed) ? (parsed as Record<string, string>) : {};
  } catch {
    return {};
  }
}

// ---- consumer --------------------------------------------------------------------

/** What the consumer knows of one handled event. */
export interface ConsumedEvent {
  eventId: string;
  type: string;
  headers: Readonly<Record<string, string>>;
  outboxId: string;
}

/** Where the consumer is: its group, the logical stream and the partition stream. */
export interface ConsumerSite {
  group: string;
  stream: string;
  partitionStream: string;
}

function consumerAttributes(site: ConsumerSite, operation: 'process' | 'dead_letter'): Attributes {
  const attributes: Attributes = {
    [MESSAGING.system]: MESSAGING_SYSTEM,
    [MESSAGING.destination]: site.stream,
    [MESSAGING.group]: site.group,
    [MESSAGING.operationType]: operation === 'process' ? 'process' : 'settle',
    [MESSAGING.operationName]: operation,
  };
  const partition = site.partitionStream.slice(site.stream.length + 2); // `stream:a:b:p3` → `3`
  if (partition !== '') attributes[MESSAGING.partition] = partition;
  return attributes;
}

function eventAttributes(attributes: Attributes, event: ConsumedEvent, entryId: string): Attributes {
  attributes[MESSAGING.messageId] = event.eventId;
  attributes[PETCOVER.eventType] = event.type;
  attributes[PETCOVER.outboxId] = event.outboxId;
  attributes[PETCOVER.entryId] = entryId;
  return attributes;
}

/**
 * Runs one handler call inside a `process` span, active while it runs (so
 * the handler's logs carry its trace id, and what it enqueues continues the
 * trace). One event: the span is a child of the producer's context. Several
 * (a batch handler): links to each event's context (see parentAndLinks). A throw is
 * recorded (exception event, status error) and rethrown: every attempt of a
 * retried event is its own span, numbered by `petcover.consumer.attempt`.
 */
export async function traceHandlerCall<T>(
  site: ConsumerSite,
  events: readonly { event: ConsumedEvent; entryId: string }[],
  attempt: number,
  call: () => Promise<T>,
): Promise<T> {
  const attributes = consumerAttributes(site, 'process');
  attributes[PETCOVER.attempt] = attempt;
  const first = events[0]!;
  let parent: Context;
  let links: Link[] | undefined;
  if (events.length === 1) {
    eventAttributes(attributes, first.event, first.entryId);
    parent = contextFromHeaders(first.event.headers);
  } else {
    attributes[MESSAGING.batchCount] = events.length;
    attributes[PETCOVER.eventType] = first.event.type;
    ({ parent, links } = propagating() ? parentAndLinks(events.map(({ event }) => spanContextOf(event.headers))) : NO_PARENT);
  }
  const span = tracer.startSpan(`process ${site.stream}`, { kind: SpanKind.CONSUMER, attributes, ...(links ? { links } : {}) }, parent);
  return runInSpan(span, parent, call);
}

/**
 * Records that an event was dead-lettered: a `dead_letter` span (a settle
 * operation) in the event's trace, with status error, the final error as its
 * exception event, the reason and the attempts. `event` is null for an entry
 * too malformed to decode (a span of its own trace then).
 */
export function traceDeadLetter(
  site: ConsumerSite,
  entryId: string,
  event: ConsumedEvent | null,
  failure: { error: Error; reason: string; attempts: number },
): void {
  const attributes = consumerAttributes(site, 'dead_letter');
  if (event) eventAttributes(attributes, event, entryId);
  else attributes[PETCOVER.entryId] = entryId;
  attributes[PETCOVER.deadLetterReason] = failure.reason;
  attributes[PETCOVER.attempt] = failure.attempts;
  const parent = event ? contextFromHeaders(event.headers) : ROOT_CONTEXT;
  const span = tracer.startSpan(`dead_letter ${site.stream}`, { kind: SpanKind.CLIENT, attributes }, parent);
  endWithError(span, failure.error);
}
