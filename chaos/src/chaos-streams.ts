/**
 * The streams the chaos run produces to and its handler module reads: one
 * partitioned stream (order is kept per partition key across partitions
 * handled by different replicas) and two single-partition streams.
 */
import { formatStreamPartitions } from '@petcover/outbox';
import { z } from 'zod';

export interface ChaosStream {
  name: string;
  eventType: string;
  partitions: number;
}

export const CHAOS_STREAMS: readonly ChaosStream[] = [
  { name: 'stream:chaos:orders', eventType: 'OrderChanged', partitions: 4 },
  { name: 'stream:chaos:payments', eventType: 'PaymentCaptured', partitions: 1 },
  { name: 'stream:chaos:audit', eventType: 'AuditRecorded', partitions: 1 },
];

/** Consumer group of both chaos consumers (two replicas sharing partitions). */
export const CHAOS_GROUP = 'chaos';

/** `STREAM_PARTITIONS` value for publisher and consumer processes. */
export function streamPartitionsEnv(streams: readonly ChaosStream[] = CHAOS_STREAMS): string {
  return formatStreamPartitions(Object.fromEntries(streams.filter((s) => s.partitions > 1).map((s) => [s.name, s.partitions])));
}

/**
 * Payload of every chaos event. A poison event carries `seq: "poison"`, which
 * fails this schema, so the consumer must dead-letter it at once.
 */
export const chaosPayloadSchema = z.object({
  seq: z.number().int().positive(),
  key: z.string().min(1),
});
export type ChaosPayload = z.infer<typeof chaosPayloadSchema>;
