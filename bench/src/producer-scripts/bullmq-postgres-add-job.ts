/**
 * BullMQ's PostgreSQL backend, producer transaction for pgbench: its SQL
 * function `add_job` (migration 0002, locked in 0011: the function every
 * BullMQ port calls), with the arguments `Queue.add(name, data)` passes
 * (postgres-queue-backend addJob): no id (the backend numbers the job),
 * default options, no priority or delay, added now, one attempt, no parent,
 * no deduplication, no scheduler, FIFO. Inside the producer's transaction:
 * unlike its Redis backend, this one is not a dual write.
 */
import { BULLMQ_JOB, BULLMQ_QUEUE } from '../peers/peer-names';
import type { ProducerScript } from './producer-script';
import { NEXT_SEQ, producerTransactionScript } from './producer-sequence';

/** The schema BullMQ's PostgreSQL backend uses by default. */
export const BULLMQ_SCHEMA = 'bullmq';

/** One `add_job` call whose job data is `{"seq": <seqSql>}`. */
export function bullmqAddJobSql(seqSql: string): string {
  return `SELECT ${BULLMQ_SCHEMA}.add_job('${BULLMQ_QUEUE}', '', '${BULLMQ_JOB}', jsonb_build_object('seq', ${seqSql}), '{}'::jsonb, 0, 0, (extract(epoch FROM clock_timestamp()) * 1000)::bigint, 1, NULL, NULL, NULL, NULL, NULL, false);`;
}

export function bullmqPostgresAddJobScript(): ProducerScript {
  return {
    script: producerTransactionScript(bullmqAddJobSql(NEXT_SEQ)),
    variables: {},
    describe: 'bullmq.add_job(…) (its PostgreSQL backend), then the domain row',
  };
}
