/**
 * Shared by the in-process domain pipeline tests: a database with the outbox
 * and domain migrations, a Redis client and key prefix, a document directory,
 * and `start()`: a publisher plus the domain's two consumer groups
 * (`enrollment` with domainConsumerModule, `enrollment-audit` with
 * enrollmentAuditConsumerModule), as the apps run them. Everything is stopped
 * and removed in afterAll. Call `useDomainPipeline()` once per test file.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { Registry } from 'prom-client';
import { createConsumer, createHandlerRegistry, createPublisher, outboxMigrations, type Consumer, type ConsumerModule, type Publisher } from '@petcover/outbox';
import { createTestDatabase, createTestRedis, deleteKeysWithPrefix, uniqueRedisPrefix, type TestDatabase } from '@petcover/outbox/testing';
import { domainConsumerModule, domainMigrations, enrollmentAuditConsumerModule } from '@petcover/domain';
import type { RedisClient } from '@petcover/service-kit';

export interface DomainPipeline {
  /** The file's database (valid from beforeAll on). */
  readonly database: TestDatabase;
  /** The file's Redis client (valid from beforeAll on). */
  readonly redis: RedisClient;
  /** REDIS_KEY_PREFIX of this file's publisher and consumers. */
  readonly prefix: string;
  /** Where the document store keeps rendered documents. */
  readonly storeDir: string;
  /** Starts the publisher, then the `enrollment` and `enrollment-audit` consumer groups. */
  start(): Promise<void>;
}

export function useDomainPipeline(name: string): DomainPipeline {
  const logger = pino({ level: process.env.TEST_LOG_LEVEL ?? 'silent' });
  const prefix = uniqueRedisPrefix();
  const running: Array<Publisher | Consumer> = [];
  let database: TestDatabase | undefined;
  let redis: RedisClient | undefined;
  let storeDir: string | undefined;

  beforeAll(async () => {
    database = await createTestDatabase({ migrations: [outboxMigrations, domainMigrations] });
    redis = createTestRedis();
    storeDir = fs.mkdtempSync(path.join(os.tmpdir(), `petcover-${name}-`));
  });
  afterAll(async () => {
    await Promise.all(running.map((r) => r.stop()));
    if (redis) {
      await deleteKeysWithPrefix(redis, prefix);
      redis.disconnect();
    }
    await database?.drop();
    if (storeDir) fs.rmSync(storeDir, { recursive: true, force: true });
  });

  const ready = <T>(value: T | undefined, what: string): T => {
    if (value === undefined) throw new Error(`domain pipeline: the ${what} exists only from beforeAll on`);
    return value;
  };

  const pipeline: DomainPipeline = {
    get database() {
      return ready(database, 'test database');
    },
    get redis() {
      return ready(redis, 'Redis client');
    },
    prefix,
    get storeDir() {
      return ready(storeDir, 'document directory');
    },
    async start() {
      const publisher = createPublisher({ sql: pipeline.database.sql, redis: pipeline.redis, logger, registry: new Registry(), keyPrefix: prefix, pollIntervalMs: 200, leaseTtlMs: 3_000 });
      running.push(publisher);
      await publisher.start();
      for (const [group, module] of [['enrollment', domainConsumerModule], ['enrollment-audit', enrollmentAuditConsumerModule]] as Array<[string, ConsumerModule]>) {
        const registry = createHandlerRegistry();
        module.register(registry);
        const consumer = createConsumer({
          db: pipeline.database.db, sql: pipeline.database.sql, redis: pipeline.redis, logger, registry, streams: module.streams, group, keyPrefix: prefix,
          blockMs: 200, leaseTtlMs: 3_000, metricsRegistry: new Registry(),
        });
        running.push(consumer);
        consumer.start();
      }
    },
  };
  return pipeline;
}
