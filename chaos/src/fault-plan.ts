/**
 * The fault schedule of one chaos run, drawn from its seed: the same seed and
 * duration give the same faults at the same offsets on every machine.
 *
 * Every run contains at least one fault of each kind (a SIGKILL of a publisher
 * and of a consumer, a zombie publisher and consumer, a Redis restart that
 * loses data — on a Redis Cluster, a master SIGKILLed and failed over —, a
 * Postgres restart, poison events); longer runs add more,
 * drawn at random. Transient handler failures are not scheduled: the handler
 * fails a seeded fraction of first attempts all along.
 */
import { seededRandom } from './seeded-random';

export type AppRole = 'publisher' | 'consumer';

export type Fault =
  /** SIGKILL one app process; it is restarted `downMs` later. */
  | { kind: 'sigkill'; atMs: number; role: AppRole; replica: number; downMs: number }
  /** SIGSTOP one app process past its lease TTL, then SIGCONT: a zombie that must not double or reorder. */
  | { kind: 'zombie'; atMs: number; role: AppRole; replica: number; stoppedMs: number }
  /** Restart Redis without persistence: every stream, group and key is gone. */
  | { kind: 'redis-restart'; atMs: number }
  /**
   * Redis Cluster: SIGKILL the master serving one chaos partition stream; its
   * replica is promoted (possibly missing the last writes); the killed node
   * restarts `downMs` after the failover and rejoins as a replica.
   */
  | { kind: 'redis-master-kill'; atMs: number; downMs: number }
  /** `pg_ctl stop -m fast` then start: every connection drops, committed data stays. */
  | { kind: 'postgres-restart'; atMs: number }
  /** Produce an event whose payload fails the handler's schema: it must end as a dead letter. */
  | { kind: 'poison'; atMs: number };

export type FaultKind = Fault['kind'];
/** The kinds drawn for extra faults; `redis-restart` becomes `redis-master-kill` on a cluster. */
export const FAULT_KINDS: readonly FaultKind[] = ['sigkill', 'zombie', 'redis-restart', 'postgres-restart', 'poison'];

export interface FaultPlanOptions {
  seed: number;
  durationMs: number;
  replicas: number;
  /** Lease TTL of the app processes; a zombie stays stopped longer than this. */
  leaseTtlMs: number;
  /** Redis topology of the run; default single (one server). */
  redis?: 'single' | 'cluster';
}

/** Quiet time at the start (apps warm up) and end (the last fault heals before the drain). */
const MARGIN_MS = 4_000;
/** One extra fault per this much run time beyond the mandatory ones. */
const EXTRA_FAULT_EVERY_MS = 8_000;

/** A fault before it gets its time (Omit distributed over the union). */
type Template = Fault extends infer F ? (F extends Fault ? Omit<F, 'atMs'> : never) : never;

export function planFaults(options: FaultPlanOptions): Fault[] {
  const random = seededRandom(options.seed);
  const replica = () => random.int(0, options.replicas - 1);
  const sigkill = (role: AppRole): Template => ({ kind: 'sigkill', role, replica: replica(), downMs: random.int(500, 2_500) });
  const zombie = (role: AppRole): Template => ({
    kind: 'zombie',
    role,
    replica: replica(),
    stoppedMs: options.leaseTtlMs + random.int(1_000, 3_000),
  });
  const redisFault = (): Template =>
    options.redis === 'cluster' ? { kind: 'redis-master-kill', downMs: random.int(1_000, 4_000) } : { kind: 'redis-restart' };
  const mandatory: Template[] = [
    sigkill('publisher'),
    sigkill('consumer'),
    zombie('publisher'),
    zombie('consumer'),
    redisFault(),
    { kind: 'postgres-restart' },
    { kind: 'poison' },
    { kind: 'poison' },
  ];
  const window = Math.max(1, options.durationMs - 2 * MARGIN_MS);
  const extraCount = Math.max(0, Math.floor((options.durationMs - 60_000) / EXTRA_FAULT_EVERY_MS));
  const extras: Template[] = Array.from({ length: extraCount }, () => {
    const kind = random.pick(FAULT_KINDS);
    const role = random.pick<AppRole>(['publisher', 'consumer']);
    if (kind === 'sigkill') return sigkill(role);
    if (kind === 'zombie') return zombie(role);
    if (kind === 'redis-restart') return redisFault();
    return { kind } as Template;
  });
  const templates = random.shuffle([...mandatory, ...extras]);
  // Evenly spaced slots with jitter inside each slot, so faults overlap rarely but can.
  const slot = window / templates.length;
  return templates.map((t, i) => ({ ...t, atMs: Math.round(MARGIN_MS + i * slot + random.next() * slot * 0.8) }) as Fault);
}

/** `sigkill consumer#1 at 12.3 s (down 1.2 s)`, for the run's log. */
export function describeFault(fault: Fault): string {
  const at = `at ${(fault.atMs / 1000).toFixed(1)} s`;
  switch (fault.kind) {
    case 'sigkill':
      return `SIGKILL ${fault.role}#${fault.replica} ${at} (restarted after ${(fault.downMs / 1000).toFixed(1)} s)`;
    case 'zombie':
      return `SIGSTOP ${fault.role}#${fault.replica} ${at} for ${(fault.stoppedMs / 1000).toFixed(1)} s, then SIGCONT`;
    case 'redis-restart':
      return `Redis restart without persistence ${at}`;
    case 'redis-master-kill':
      return `SIGKILL of a Redis Cluster master ${at}, failover to its replica (node back after ${(fault.downMs / 1000).toFixed(1)} s)`;
    case 'postgres-restart':
      return `Postgres fast restart ${at}`;
    case 'poison':
      return `poison event ${at}`;
  }
}
