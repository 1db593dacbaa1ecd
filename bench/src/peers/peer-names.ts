/** Names shared by the peers' producers and worker processes. */
export const GRAPHILE_TASK = 'bench_handle';
export const PG_BOSS_QUEUE = 'bench_handle';
export const BULLMQ_QUEUE = 'bench_handle';
/** BullMQ's job name (its jobs carry one besides the queue's). */
export const BULLMQ_JOB = 'bench';
