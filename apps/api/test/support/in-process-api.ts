/**
 * The api in this test process (`createApp` on a real port), against the
 * test's own database, Redis and document directory. Defaults are those of
 * a development api with the manual provider and DEV_AUTO_ENROLL_PET; each
 * test file overrides what it exercises (provider, logger, admin router...).
 * `closeAll` closes every server it started.
 */
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import pino from 'pino';
import { Registry } from 'prom-client';
import { createLocalDocumentStore, createManualSignatureProvider, domainMigrations, type WizardDeps } from '@petcover/domain';
import { migrationsCheck, outboxMigrations, postgresCheck, redisCheck } from '@petcover/outbox';
import type { TestDatabase } from '@petcover/outbox/testing';
import type { RedisClient } from '@petcover/service-kit';
import { createApp, type AppDeps } from '../../src/app';

export interface InProcessApiBase {
  database: TestDatabase;
  redis: RedisClient;
  /** Where the document store keeps rendered PDFs. */
  storeDir: string;
  /** Owner tokens' HS256 key. */
  authSecret: string;
}

/** AppDeps to override; `wizard` is merged field by field into the default one. */
export type InProcessApiOverrides = Omit<Partial<AppDeps>, 'wizard'> & { wizard?: Partial<WizardDeps> };

export class InProcessApis {
  private readonly servers: Server[] = [];

  constructor(private readonly base: InProcessApiBase) {}

  /** Starts one api on 127.0.0.1 and a free port; resolves with its base URL. */
  async start(overrides: InProcessApiOverrides = {}): Promise<string> {
    const { database, redis, storeDir, authSecret } = this.base;
    const { wizard, ...rest } = overrides;
    const app = createApp({
      logger: pino({ level: 'silent' }),
      ownerTokens: { secret: authSecret },
      signatureApiKey: 'in-process-signature-key',
      bodyLimit: '100kb',
      readinessChecks: {
        db: postgresCheck(database.sql),
        migrations: migrationsCheck(database.sql, [outboxMigrations, domainMigrations]),
      },
      nonBlockingReadinessChecks: { redis: redisCheck(redis) },
      ownerWritesPerMinute: 1000,
      metricsRegistry: new Registry(),
      ...rest,
      wizard: { db: database.db, documentStore: createLocalDocumentStore(storeDir), signatureProvider: createManualSignatureProvider(), autoEnroll: true, ...wizard },
    });
    const server = app.listen(0, '127.0.0.1');
    await new Promise((resolve) => server.once('listening', resolve));
    this.servers.push(server);
    return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  }

  /** Closes every server started, dropping kept-alive connections. */
  async closeAll(): Promise<void> {
    for (const server of this.servers.splice(0)) {
      server.closeAllConnections();
      await new Promise((resolve) => server.close(resolve));
    }
  }
}
