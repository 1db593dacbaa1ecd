/**
 * pg-boss's producer transaction for pgbench: the INSERT `send()` runs (its
 * own statement and parameters, captured from `send()` without a database),
 * in the producer's transaction. pg-boss has no SQL-level add function; this
 * is the SQL its `db` option runs inside a caller's transaction.
 */
import PgBoss from 'pg-boss';
import { PG_BOSS_QUEUE } from '../peers/peer-names';
import { inlineParameters, type CapturedStatement } from './captured-statement';
import type { ProducerScript } from './producer-script';
import { NEXT_SEQ, producerTransactionScript } from './producer-sequence';

/** The statement and values `boss.send(queue, data)` hands its `db`; nothing is sent anywhere. */
export async function capturePgBossSend(data: Record<string, unknown>): Promise<CapturedStatement> {
  // Never started: send() only builds its statement and passes it to the db option.
  const boss = new PgBoss({ connectionString: 'postgres://capture.invalid/none', supervise: false, schedule: false });
  let captured: CapturedStatement | undefined;
  const db: PgBoss.Db = {
    executeSql: async (text: string, values: unknown[]) => {
      captured = { text, values };
      return { rows: [{ id: '00000000-0000-0000-0000-000000000000' }] } as never;
    },
  };
  await boss.send(PG_BOSS_QUEUE, data, { db });
  if (!captured) throw new Error('pg-boss send() ran no statement');
  return captured;
}

export async function pgBossSendScript(): Promise<ProducerScript> {
  const marks = { seq: 987_654_321_012 };
  const captured = await capturePgBossSend(marks);
  let foundData = false;
  const statement = inlineParameters(
    captured,
    (value) => {
      if (value !== null && typeof value === 'object' && JSON.stringify(value) === JSON.stringify(marks)) {
        foundData = true;
        return `jsonb_build_object('seq', ${NEXT_SEQ})::text`;
      }
      return undefined;
    },
    'b',
  );
  if (!foundData) throw new Error("could not find the job's data among pg-boss send()'s parameters");
  return { script: producerTransactionScript(statement.sql), variables: statement.variables, describe: "pg-boss send()'s INSERT (captured), then the domain row" };
}
