/**
 * Shared by the in-process consumer tests (consumer, parking, bounds, halted
 * keys, dead letters): one test database with a `test_effect` table, one
 * Redis client, tracked key prefixes, and consumers started with short test
 * timings and stopped after each test. `useConsumerHarness()` registers the
 * jest hooks, so call it once at the top of a test file.
 */
import { sql } from 'drizzle-orm';
import type { RedisClient } from '@petcover/service-kit';
import pino, { type Logger } from 'pino';
import { createConsumer, type Consumer, type ConsumerOptions, type HandledEvent, type HandlerContext } from '../src';
import { createTestDatabase, createTestRedis, trackedRedisPrefixes, waitFor, type TestDatabase } from '../src/testing';

/** One row a test handler writes in the consumer's transaction: the effect whose count and order the tests check. */
export interface EffectRow {
  event_id: string;
  partition_key: string;
  seq: number;
  attempt: number;
}

/** The options every test consumer starts with; a file or a test overrides what it studies. */
export const TEST_CONSUMER_DEFAULTS = {
  blockMs: 200,
  leaseTtlMs: 2_000,
  retryBaseDelayMs: 10,
  retryMaxDelayMs: 50,
} satisfies Partial<ConsumerOptions>;

export interface ConsumerHarnessOptions {
  /** Pool size of the test database (handler transactions and the test's own queries share it). */
  poolSize?: number;
  /** Applied over TEST_CONSUMER_DEFAULTS for every consumer of the file. */
  consumerDefaults?: Partial<ConsumerOptions>;
}

export type TestConsumerOptions = Partial<ConsumerOptions> & Pick<ConsumerOptions, 'registry' | 'streams'>;

export interface ConsumerHarness {
  /** The file's database (valid from beforeAll on). */
  readonly testDb: TestDatabase;
  /** The file's Redis client (valid from beforeAll on). */
  readonly redis: RedisClient;
  /** Silent unless TEST_LOG_LEVEL is set. */
  readonly logger: Logger;
  /** A fresh Redis key prefix, deleted in afterAll. */
  nextPrefix(): string;
  /** Starts a consumer on the file's database and Redis; stopped after the test. */
  startConsumer(options: TestConsumerOptions): Consumer;
  /** Writes one effect row per event, in order, in the handler's transaction. */
  recordEffects<P extends { seq: number }>(ctx: HandlerContext, events: readonly HandledEvent<P>[]): Promise<unknown>;
  effectsOf(group: string): Promise<EffectRow[]>;
  /** Waits (with a deadline) until `group` has at least `count` effects; returns them. */
  waitForEffects(group: string, count: number, timeoutMs?: number): Promise<EffectRow[]>;
  /** XPENDING count of `group` on the Redis stream `key`. */
  pendingOf(key: string, group: string): Promise<number>;
  /** Sum of a consumer metric's values, optionally only those with `labels`. */
  metricSum(consumer: Consumer, name: string, labels?: Record<string, string>): Promise<number>;
}

export function useConsumerHarness(options: ConsumerHarnessOptions = {}): ConsumerHarness {
  let testDb: TestDatabase | undefined;
  let redis: RedisClient | undefined;
  const running: Consumer[] = [];
  const prefixes = trackedRedisPrefixes();
  const logger = pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' });
  const defaults = { ...TEST_CONSUMER_DEFAULTS, ...options.consumerDefaults };

  beforeAll(async () => {
    testDb = await createTestDatabase({ poolSize: options.poolSize ?? 20 });
    redis = createTestRedis();
    await testDb.sql`CREATE TABLE test_effect (
      id bigserial PRIMARY KEY, group_name text NOT NULL, event_id uuid NOT NULL, partition_key text NOT NULL,
      seq int NOT NULL, attempt int NOT NULL)`;
  });
  afterEach(async () => {
    await Promise.all(running.splice(0).map((c) => c.stop()));
  });
  afterAll(async () => {
    if (redis) {
      await prefixes.deleteAll(redis);
      redis.disconnect();
    }
    await testDb?.drop();
  });

  const harness: ConsumerHarness = {
    get testDb() {
      if (!testDb) throw new Error('consumer harness: the test database exists only from beforeAll on');
      return testDb;
    },
    get redis() {
      if (!redis) throw new Error('consumer harness: the Redis client exists only from beforeAll on');
      return redis;
    },
    logger,
    nextPrefix: prefixes.next,
    startConsumer(consumerOptions) {
      const consumer = createConsumer({ db: harness.testDb.db, sql: harness.testDb.sql, redis: harness.redis, logger, ...defaults, ...consumerOptions });
      running.push(consumer);
      consumer.start();
      return consumer;
    },
    recordEffects(ctx, events) {
      return ctx.tx.execute(sql`
        INSERT INTO test_effect (group_name, event_id, partition_key, seq, attempt)
        SELECT ${ctx.group}, e.event_id, e.partition_key, e.seq, ${ctx.attempt}
        FROM unnest(${`{${events.map((e) => e.eventId).join(',')}}`}::uuid[], ${`{${events.map((e) => JSON.stringify(e.partitionKey)).join(',')}}`}::text[],
                    ${`{${events.map((e) => e.payload.seq).join(',')}}`}::int[]) WITH ORDINALITY AS e(event_id, partition_key, seq, n)
        ORDER BY e.n`);
    },
    effectsOf(group) {
      return harness.testDb.sql<EffectRow[]>`
        SELECT event_id::text, partition_key, seq, attempt FROM test_effect WHERE group_name = ${group} ORDER BY id`;
    },
    waitForEffects(group, count, timeoutMs = 30_000) {
      return waitFor(async () => {
        const rows = await harness.effectsOf(group);
        return rows.length >= count ? rows : null;
      }, { timeoutMs, description: `${count} effects for group ${group}` });
    },
    async pendingOf(key, group) {
      const [count] = (await harness.redis.xpending(key, group)) as [number, ...unknown[]];
      return Number(count);
    },
    async metricSum(consumer, name, labels = {}) {
      const metric = (await consumer.metricsRegistry.getMetricsAsJSON()).find((m) => m.name === name);
      return (metric?.values ?? [])
        .filter((v) => Object.entries(labels).every(([k, value]) => (v.labels as Record<string, unknown>)[k] === value))
        .reduce((sum, v) => sum + Number(v.value), 0);
    },
  };
  return harness;
}
