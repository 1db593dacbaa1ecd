/**
 * `events verify [--since <time>] [--until <time>] [--group <g>] [--handles <g>=<Type,...>]... [--json]`:
 * reconciles the outbox with what consumer groups handled (verifyPipeline)
 * and exits 0 only when nothing is missing, doubled or out of order.
 * Argument parsing is the events CLI's (cli/events.ts); this is the action.
 */
import type { RedisConnection } from '@petcover/service-kit';
import type { Sql } from '../db';
import { connectCliRedis } from './redis-client';
import { formatVerifyReport } from '../verify/format';
import { verifyPipeline } from '../verify/verify';

export interface VerifyCommandInput {
  sql: Sql;
  /** Used to discover consumer groups from the streams; verify goes on without it when Redis is unreachable. */
  redis: RedisConnection;
  keyPrefix: string;
  since?: Date;
  until?: Date;
  group?: string;
  /** Event types each group handles (`--handles`); see VerifyOptions.handledTypes. */
  handledTypes?: Readonly<Record<string, readonly string[]>>;
  json: boolean;
  stdout: (text: string) => void;
  stderr: (text: string) => void;
}

/** Runs verify and prints the report; returns 0 when reconciled, 1 when a defect was found. */
export async function runVerify(input: VerifyCommandInput): Promise<number> {
  const redis = connectCliRedis(input.redis);
  try {
    let reachable = true;
    await redis.connect().catch((error: Error) => {
      reachable = false;
      input.stderr(`Redis unreachable (${error.message}): consumer groups are discovered from Postgres only`);
    });
    const report = await verifyPipeline(input.sql, reachable ? redis : null, {
      since: input.since,
      until: input.until,
      group: input.group,
      handledTypes: input.handledTypes,
      keyPrefix: input.keyPrefix,
    });
    input.stdout(input.json ? JSON.stringify(report, null, 2) : formatVerifyReport(report));
    return report.ok ? 0 : 1;
  } finally {
    redis.disconnect();
  }
}
