/**
 * The consumer module of the chaos run (`events-consumer start --module
 * <this file>`). Its handler applies one effect per event — a row in the
 * handled-order log, in the consumer's transaction — and fails transiently on
 * a seeded fraction of first attempts, so retries are exercised on every run.
 * On top, random keys go through downstream outages (issue 19): in a seeded
 * fraction of (key, 10 s window) pairs every attempt of that key's events
 * fails, so the key is parked, its later events park behind it, the other
 * keys of its partition flow, and it resumes in order after the window.
 * OrderChanged also has a batch form (one INSERT per run of events).
 *
 * Slow and hung first calls (slow-handlers.ts) exercise the handler deadline.
 *
 * Env (set by the chaos runner): CHAOS_SEED, CHAOS_FAIL_FRACTION (0..1),
 * CHAOS_KEY_OUTAGE_FRACTION (0..1, default 0.1); CHAOS_SLOW_FRACTION,
 * CHAOS_HANG_FRACTION (0..1), CHAOS_HANDLER_TIMEOUT_MS; CHAOS_OUTAGES_OVER_FILE
 * (once this file exists, key outages are over).
 */
import fs from 'node:fs';
import type { EventHandler, HandledEvent, HandlerContext, HandlerRegistry } from '@petcover/outbox';
import { handledRecordOf, recordHandled } from '@petcover/outbox/verify';
import { CHAOS_STREAMS, chaosPayloadSchema, type ChaosPayload } from './chaos-streams';
import { seededFraction } from './seeded-random';
import { misbehaveOnFirstCall, slowHandlerOptionsFromEnv, type SlowHandlerOptions } from './slow-handlers';

/** Same shape as `ConsumerModule` of @petcover/outbox (declared here until every branch has it). */
export interface ChaosConsumerModule {
  streams: Array<{ name: string; partitions?: number }>;
  register(registry: HandlerRegistry): void;
}

export class ChaosTransientFailure extends Error {
  constructor(eventId: string) {
    super(`chaos: transient failure injected on the first attempt of event ${eventId}`);
    this.name = 'ChaosTransientFailure';
  }
}

export class ChaosKeyOutage extends Error {
  constructor(key: string) {
    super(`chaos: downstream outage of key ${key} (every attempt fails until its window ends)`);
    this.name = 'ChaosKeyOutage';
  }
}

export interface ChaosHandlerOptions {
  seed: number;
  /** Fraction of events whose first attempt throws. */
  failFraction: number;
  /** Fraction of (key, window) pairs during which every attempt of the key throws; 0 turns outages off. */
  keyOutageFraction?: number;
  /** True once key outages are over for good (the run's producer stopped); asked only for a key whose window is drawn down. */
  outagesOver?: () => boolean;
  /** Slow and hung first calls; none when absent. */
  slow?: SlowHandlerOptions;
}

/**
 * A key's outage lasts one window: long enough that the key is retried
 * several times while parked (the consumer's first delays are 1, 2, 4 s),
 * short enough that no event runs out of attempts (10, over minutes).
 */
export const KEY_OUTAGE_WINDOW_MS = 10_000;

function outageDraw(key: string, window: number, options: ChaosHandlerOptions): boolean {
  return seededFraction(options.seed, `${key}@${window}`) < (options.keyOutageFraction ?? 0);
}

/**
 * Whether `key` is in an outage at `nowMs`; both consumer replicas agree
 * (seeded, wall clock). An outage is ONE window: a window drawn right after
 * one of the same key is up. With the windows on the wall clock, back-to-back
 * draws once made a key fail for 70 s, its retry delay grew to 60 s and the
 * run's drain timed out with the key still parked (a rig artefact, not a
 * pipeline fault). Outages also end for good once `options.outagesOver()`
 * says the producer has stopped: the drain must be able to finish.
 */
export function inKeyOutage(key: string, nowMs: number, options: ChaosHandlerOptions): boolean {
  if ((options.keyOutageFraction ?? 0) <= 0) return false;
  const window = Math.floor(nowMs / KEY_OUTAGE_WINDOW_MS);
  return outageDraw(key, window, options) && !outageDraw(key, window - 1, options) && !(options.outagesOver?.() ?? false);
}

/** Whether the handler fails this event's first attempt; the same answer in every process. */
export function failsFirstAttempt(eventId: string, options: ChaosHandlerOptions): boolean {
  return options.failFraction > 0 && seededFraction(options.seed, eventId) < options.failFraction;
}

/** Event types whose handler also has the batch form, so both paths run under faults. */
export const BATCH_HANDLED_TYPES: ReadonlySet<string> = new Set(['OrderChanged']);

export function createChaosModule(options: ChaosHandlerOptions): ChaosConsumerModule {
  const record = async (event: HandledEvent<ChaosPayload>, ctx: HandlerContext) => {
    if (options.slow) await misbehaveOnFirstCall(event.eventId, ctx.attempt, ctx.signal, options.slow);
    if (ctx.attempt === 1 && failsFirstAttempt(event.eventId, options)) throw new ChaosTransientFailure(event.eventId);
    if (inKeyOutage(event.partitionKey, Date.now(), options)) throw new ChaosKeyOutage(event.partitionKey);
    return handledRecordOf(event, ctx, event.payload.seq);
  };
  const handler: EventHandler<ChaosPayload> = {
    schema: chaosPayloadSchema,
    handle: async (event, ctx) => recordHandled(ctx.tx, await record(event, ctx)),
  };
  // One INSERT per run; a transient failure (or a slow or hung call) of any
  // event in it fails the run, and the consumer then handles those events one by one.
  const batchHandler: EventHandler<ChaosPayload> = {
    ...handler,
    handleBatch: async (events, ctx) => {
      const records = [];
      for (const event of events) records.push(await record(event, ctx));
      await recordHandled(ctx.tx, records);
    },
  };
  return {
    streams: CHAOS_STREAMS.map((s) => ({ name: s.name, partitions: s.partitions })),
    register(registry) {
      for (const stream of CHAOS_STREAMS) registry.register(stream.eventType, BATCH_HANDLED_TYPES.has(stream.eventType) ? batchHandler : handler);
    },
  };
}

function optionsFromEnv(env: NodeJS.ProcessEnv): ChaosHandlerOptions {
  const seed = Number(env.CHAOS_SEED ?? 1);
  const failFraction = Number(env.CHAOS_FAIL_FRACTION ?? 0.05);
  const keyOutageFraction = Number(env.CHAOS_KEY_OUTAGE_FRACTION ?? 0.1);
  if (!Number.isInteger(seed)) throw new Error(`CHAOS_SEED must be an integer (got ${JSON.stringify(env.CHAOS_SEED)})`);
  if (!(failFraction >= 0 && failFraction <= 1)) {
    throw new Error(`CHAOS_FAIL_FRACTION must be between 0 and 1 (got ${JSON.stringify(env.CHAOS_FAIL_FRACTION)})`);
  }
  if (!(keyOutageFraction >= 0 && keyOutageFraction <= 1)) {
    throw new Error(`CHAOS_KEY_OUTAGE_FRACTION must be between 0 and 1 (got ${JSON.stringify(env.CHAOS_KEY_OUTAGE_FRACTION)})`);
  }
  // The run creates this file when its producer stops (see run.ts).
  const outagesOverFile = env.CHAOS_OUTAGES_OVER_FILE;
  const outagesOver = outagesOverFile ? () => fs.existsSync(outagesOverFile) : undefined;
  return { seed, failFraction, keyOutageFraction, outagesOver, slow: slowHandlerOptionsFromEnv(env, seed) };
}

export const consumerModule = createChaosModule(optionsFromEnv(process.env));
export default consumerModule;
