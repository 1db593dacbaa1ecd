/** Our pipeline as a system under test: one publisher and one consumer process. */
import { randomBytes } from 'node:crypto';
import { enqueue } from '@petcover/outbox';
import type { BenchEnvironment } from '../bench-environment';
import { BENCH_EVENT_TYPE } from '../bench-event';
import type { BenchHandlerMode } from '../handler-module';
import { startConsumer, startPublisher, type AppsContext } from '../petcover-apps';
import { stopAll } from '../processes';
import { petcoverEnqueueScript } from '../producer-scripts/petcover-enqueue';
import type { ProducerScript } from '../producer-scripts/producer-script';
import { prefillOutbox } from '../workload';
import type { RunningSystem, SystemUnderTest } from './system';

export interface PetcoverSettings {
  partitions: number;
  concurrency: number;
  batchSize: number;
  pollIntervalSeconds: number;
  leaseTtlSeconds: number;
  handler: BenchHandlerMode;
}

/** The name the report shows: the default (batch) handler is plain `petcover`. */
export function petcoverSystemName(handler: BenchHandlerMode): string {
  return handler === 'batch' ? 'petcover' : 'petcover (per-event handler)';
}

export function petcoverSystem(env: BenchEnvironment, apps: AppsContext, scenario: string, settings: PetcoverSettings): SystemUnderTest {
  return {
    name: petcoverSystemName(settings.handler),
    delivery: 'transactional outbox: the event commits with the domain row; publisher → Redis Streams → consumer',
    usesRedis: true,
    settings: { ...settings },
    async start(): Promise<RunningSystem> {
      const stream = `stream:bench:${scenario}_${randomBytes(3).toString('hex')}`;
      const partitions = { [stream]: settings.partitions };
      const redisPrefix = env.redisPrefix(scenario);
      const consumer = await startConsumer(apps, {
        name: `${scenario}-consumer`,
        redisPrefix,
        group: `bench-${scenario}`,
        concurrency: settings.concurrency,
        partitions,
        batchSize: settings.batchSize,
        handler: settings.handler,
      });
      const publisher = await startPublisher(apps, {
        name: `${scenario}-publisher`,
        redisPrefix,
        partitions,
        batchSize: settings.batchSize,
        pollIntervalSeconds: settings.pollIntervalSeconds,
        leaseTtlSeconds: settings.leaseTtlSeconds,
      });
      const processes = [publisher, consumer];
      try {
        await Promise.all(processes.map((p) => p.waitReady()));
      } catch (error) {
        await stopAll(processes);
        throw error;
      }
      let stopped: Promise<void> | undefined;
      let pgbenchScript: ProducerScript;
      try {
        pgbenchScript = await petcoverEnqueueScript(env.databaseUrl, stream);
      } catch (error) {
        await stopAll(processes);
        throw error;
      }
      return {
        processes,
        pgbenchScript,
        prefill: (count, firstSeq) => prefillOutbox(env.db.sql, [stream], count, firstSeq),
        emit: async (tx, seq) => {
          await enqueue(tx, { stream, type: BENCH_EVENT_TYPE, partitionKey: `entity-${seq % 1024}`, payload: { seq } });
        },
        stop: () => (stopped ??= stopAll(processes)),
      };
    },
  };
}
