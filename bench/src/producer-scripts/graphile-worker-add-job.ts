/**
 * graphile-worker's producer transaction for pgbench: its documented SQL API,
 * `graphile_worker.add_job(identifier, payload)` (which NOTIFYs its workers),
 * in the producer's transaction.
 */
import { GRAPHILE_TASK } from '../peers/peer-names';
import type { ProducerScript } from './producer-script';
import { NEXT_SEQ, producerTransactionScript } from './producer-sequence';

export function graphileWorkerAddJobScript(): ProducerScript {
  return {
    script: producerTransactionScript(`SELECT graphile_worker.add_job('${GRAPHILE_TASK}', json_build_object('seq', ${NEXT_SEQ}));`),
    variables: {},
    describe: 'graphile_worker.add_job(…), then the domain row',
  };
}
