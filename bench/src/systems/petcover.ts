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
  /** Entries per read and per transaction of the consumer. */
  batchSize: number;
  /** Rows per select of the publisher. */
  publisherBatchSize: number;
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
        batchSize: settings.publisherBatchSize,
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
        stages: (since) => petcoverStages(env, since),
        stop: () => (stopped ??= stopAll(processes)),
      };
    },
  };
}

/**
 * Commit → XADD (the Redis entry id's millisecond, Redis and Postgres on one
 * machine clock) and XADD → handler row, per event written since `since`.
 * The entry id has millisecond resolution, so each stage is ± 1 ms.
 */
async function petcoverStages(env: BenchEnvironment, since: string): Promise<Record<string, number[]>> {
  const rows = await env.db.sql<{ appended: number; handled: number }[]>`
    SELECT (split_part(o.redis_entry_id, '-', 1)::float8 - extract(epoch FROM d.written_at) * 1000)::float8 AS appended,
           (extract(epoch FROM h.handled_at) * 1000 - split_part(o.redis_entry_id, '-', 1)::float8)::float8 AS handled
    FROM bench.domain_row d
    JOIN events.outbox_event o ON (o.payload->>'seq')::bigint = d.seq
    JOIN bench.handled h ON h.seq = d.seq
    WHERE d.written_at >= ${since}::timestamptz AND o.redis_entry_id IS NOT NULL`;
  return { 'commit → XADD': rows.map((r) => Number(r.appended)), 'XADD → handler': rows.map((r) => Number(r.handled)) };
}
