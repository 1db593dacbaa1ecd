/**
 * The chaos run's producer: commits events at a steady rate, one to three per
 * transaction, across the chaos streams and a fixed set of partition keys.
 *
 * It runs its transactions one after another on one connection, so the
 * outbox id order of one key's events is also their commit order — the order
 * the pipeline must keep. (Concurrent writers of one entity would serialise
 * on the entity's row in a real domain.) While Postgres is down it backs off
 * and then resumes at the steady rate, dropping the backlog it could not
 * write rather than bursting.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { connectDatabase, enqueue, enqueueMany, type DatabaseHandle, type OutboxEventInput } from '@petcover/outbox';
import { CHAOS_STREAMS, type ChaosStream } from './chaos-streams';
import type { SeededRandom } from './seeded-random';

/** Keys per stream: enough for every partition to see several keys. */
const KEYS_PER_STREAM: Record<string, number> = {
  'stream:chaos:orders': 40,
  'stream:chaos:payments': 12,
  'stream:chaos:audit': 6,
};
const TICK_MS = 50;
/**
 * A transaction slower than this is abandoned with its pool: a connection
 * cut by a Postgres restart can leave a query waiting forever in the driver,
 * and the producer must keep its steady rate regardless.
 */
const TRANSACTION_TIMEOUT_MS = 10_000;

class TransactionTimeoutError extends Error {
  constructor() {
    super(`transaction did not settle within ${TRANSACTION_TIMEOUT_MS} ms; reconnecting`);
    this.name = 'TransactionTimeoutError';
  }
}

export interface ProducerStats {
  committedTransactions: number;
  /** Events in transactions that returned from COMMIT (the outbox is the truth; this is a cross-check). */
  committedEvents: number;
  poisonEvents: string[];
  failedTransactions: number;
}

export class ChaosProducer {
  readonly stats: ProducerStats = { committedTransactions: 0, committedEvents: 0, poisonEvents: [], failedTransactions: 0 };
  private database: DatabaseHandle;
  private readonly seqByKey = new Map<string, number>();
  private readonly controller = new AbortController();
  private loop: Promise<void> | undefined;
  private stopping: Promise<void> | undefined;
  private failing = false;

  constructor(
    private readonly databaseUrl: string,
    private readonly random: SeededRandom,
    private readonly ratePerSecond: number,
    private readonly log: (line: string) => void,
  ) {
    this.database = this.connect();
  }

  private connect(): DatabaseHandle {
    return connectDatabase(this.databaseUrl, { max: 1, applicationName: 'chaos-producer', connectTimeoutSeconds: 2 });
  }

  /** Runs `work` in a transaction, bounded by TRANSACTION_TIMEOUT_MS; on timeout the pool is replaced. */
  private async inTransaction<T>(work: (tx: Parameters<Parameters<DatabaseHandle['db']['transaction']>[0]>[0]) => Promise<T>): Promise<T> {
    const database = this.database;
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new TransactionTimeoutError()), TRANSACTION_TIMEOUT_MS);
    });
    try {
      return await Promise.race([database.db.transaction(work), timeout]);
    } catch (error) {
      if (error instanceof TransactionTimeoutError && this.database === database) {
        this.database = this.connect();
        void database.close(0).catch(() => undefined);
      }
      throw error;
    } finally {
      clearTimeout(timer);
    }
  }

  start(): void {
    this.loop ??= this.run(this.controller.signal);
  }

  /** Stops producing (the transaction in hand completes) and closes the connection. Idempotent. */
  stop(): Promise<void> {
    this.stopping ??= (async () => {
      this.controller.abort();
      // Bounded: a transaction in hand settles within its own timeout.
      await this.loop?.catch(() => undefined);
      await Promise.race([this.database.close(2), sleep(5_000)]).catch(() => undefined);
    })();
    return this.stopping;
  }

  /** Commits one event whose payload fails the handler's schema; retries until Postgres takes it. */
  async producePoison(signal: AbortSignal): Promise<string> {
    const stream = this.random.pick(CHAOS_STREAMS);
    const key = this.pickKey(stream);
    for (;;) {
      if (this.controller.signal.aborted) throw new Error('producer stopped before the poison event was committed');
      try {
        const enqueued = await this.inTransaction((tx) =>
          enqueue(tx, { stream: stream.name, type: stream.eventType, partitionKey: key, payload: { seq: 'poison', key } }),
        );
        this.stats.poisonEvents.push(enqueued.eventId);
        return enqueued.eventId;
      } catch {
        await sleep(250, undefined, { signal });
      }
    }
  }

  private pickKey(stream: ChaosStream): string {
    const keys = KEYS_PER_STREAM[stream.name] ?? 4;
    return `${stream.name.split(':')[2]}-${this.random.int(1, keys)}`;
  }

  private nextEvent(): OutboxEventInput {
    const stream = this.random.pick(CHAOS_STREAMS);
    const key = this.pickKey(stream);
    const seq = (this.seqByKey.get(`${stream.name}/${key}`) ?? 0) + 1;
    this.seqByKey.set(`${stream.name}/${key}`, seq);
    return { stream: stream.name, type: stream.eventType, partitionKey: key, payload: { seq, key } };
  }

  private async run(signal: AbortSignal): Promise<void> {
    const started = Date.now();
    let produced = 0;
    while (!signal.aborted) {
      const due = Math.floor(((Date.now() - started) / 1000) * this.ratePerSecond);
      // After an outage, resume the steady rate instead of bursting the backlog.
      if (due - produced > this.ratePerSecond) produced = due - this.ratePerSecond;
      if (produced >= due) {
        await sleep(TICK_MS, undefined, { signal }).catch(() => undefined);
        continue;
      }
      const events = Array.from({ length: Math.min(due - produced, this.random.int(1, 3)) }, () => this.nextEvent());
      try {
        await this.inTransaction((tx) => enqueueMany(tx, events));
        this.stats.committedTransactions++;
        this.stats.committedEvents += events.length;
        produced += events.length;
        if (this.failing) this.log('producer: Postgres takes writes again');
        this.failing = false;
      } catch (error) {
        this.stats.failedTransactions++;
        if (!this.failing) this.log(`producer: transaction failed (${(error as Error).message}); backing off`);
        this.failing = true;
        await sleep(100 + this.random.int(0, 200), undefined, { signal }).catch(() => undefined);
      }
    }
  }
}
