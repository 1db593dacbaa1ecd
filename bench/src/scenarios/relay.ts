/**
 * Relay: a pre-filled outbox (committed at once while the publisher idles)
 * drained into Redis; time until every row is in Redis and marked published.
 */
import { randomBytes } from 'node:crypto';
import { partitionStreamNames, redisStreamKey } from '@petcover/outbox';
import { startPublisher } from '../petcover-apps';
import { ratePerSecond } from '../stats';
import { countRows, millisecondsUntilLatest, prefillOutbox, waitForCount } from '../workload';
import { mebibytes, type ScenarioContext } from './context';

export interface RelayResult {
  streams: number;
  events: number;
  published: number;
  inRedis: number;
  seconds: number | null;
  eventsPerSec: number | null;
  publisherPeakRssMiB: number | null;
  complete: boolean;
}

export async function runRelay(ctx: ScenarioContext, streamCount: number): Promise<RelayResult> {
  const { env, profile } = ctx;
  await env.reset();
  const suffix = randomBytes(3).toString('hex');
  const streams = Array.from({ length: streamCount }, (_, i) => `stream:bench:relay_${suffix}_${i}`);
  const partitions = Object.fromEntries(streams.map((s) => [s, 1]));
  const redisPrefix = env.redisPrefix(`relay${streamCount}`);
  const publisher = await startPublisher(ctx.apps, {
    name: `relay${streamCount}-publisher`,
    redisPrefix,
    partitions,
    batchSize: profile.petcover.publisherBatchSize,
    pollIntervalSeconds: profile.petcover.pollIntervalSeconds,
    leaseTtlSeconds: profile.petcover.leaseTtlSeconds,
  });
  try {
    await publisher.waitReady();
    const events = profile.relayEvents;
    const committedAt = await prefillOutbox(env.db.sql, streams, events);
    ctx.log(`relay ${streamCount} stream(s): ${events} events committed, draining`);
    // Probes stay cheap (XLEN is O(1); the count runs only once Redis has
    // everything) so the harness does not compete with the publisher. The
    // figure itself comes from max(published_at), not from when we looked.
    const redisKeys = streams.flatMap((stream) => partitionStreamNames(stream, 1).map((p) => redisStreamKey(p, redisPrefix)));
    const entriesInRedis = async () => {
      let total = 0;
      for (const key of redisKeys) total += await env.redis.xlen(key);
      return total;
    };
    const unpublished = () => countRows(env.db.sql, 'SELECT count(*) FROM events.outbox_event WHERE published_at IS NULL');
    const deadline = Date.now() + profile.drainTimeoutMs;
    await waitForCount(entriesInRedis, events, profile.drainTimeoutMs, 250);
    await waitForCount(async () => events - (await unpublished()), events, Math.max(1000, deadline - Date.now()), 250);
    const published = events - (await unpublished());
    const ms = await millisecondsUntilLatest(env.db.sql, 'events.outbox_event', 'published_at', committedAt);
    const inRedis = await entriesInRedis();
    const complete = published === events && inRedis === events;
    return {
      streams: streamCount,
      events,
      published,
      inRedis,
      seconds: ms === null ? null : ms / 1000,
      eventsPerSec: ms === null ? null : ratePerSecond(published, ms),
      publisherPeakRssMiB: mebibytes(publisher.peakRssBytes()),
      complete,
    };
  } finally {
    await publisher.stop('SIGTERM');
  }
}
