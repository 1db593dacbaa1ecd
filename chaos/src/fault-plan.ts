/**
 * The fault schedule of one chaos run, drawn from its seed: the same seed and
 * duration give the same faults at the same offsets on every machine.
 *
 * Every run contains at least one fault of each kind (a SIGKILL of a publisher
 * and of a consumer, a zombie publisher and consumer, a Redis restart that
 * loses everything and one from an older snapshot that loses the tail — on a
 * Redis Cluster, masters SIGKILLed and failed over —, a WRONGTYPE key planted
 * on one stream, a Postgres fast stop, poison events); longer runs add more,
 * drawn at random. `kinds` narrows a run to some kinds (to rehearse one
 * fault, or to prove the verdict can fail with `planted-loss`, which is never
 * drawn otherwise). Transient handler failures are not scheduled: the
 * handler fails a seeded fraction of first attempts all along; slow and hung
 * handler calls likewise (slow-handlers.ts).
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
   * `SAVE`, `trafficMs` more traffic, `SHUTDOWN NOSAVE`, restart from that
   * dump: Redis comes back older (streams, groups and meta hashes as they were
   * at the SAVE); the publisher must re-append exactly the tail it lost.
   */
  | { kind: 'redis-snapshot-restore'; atMs: number; trafficMs: number }
  /**
   * A string planted on one partition stream's key (the stream moved aside
   * meanwhile) for `heldMs`, then the stream put back: that stream stops with
   * WRONGTYPE, every other stream keeps flowing, then it catches up.
   * `partition` indexes the chaos partition streams, in CHAOS_STREAMS order.
   */
  | { kind: 'wrongtype-key'; atMs: number; partition: number; heldMs: number }
  /**
   * The check's own proof, never drawn unless asked for: consumers frozen, a
   * snapshot restore as above, and Postgres's record of what Redis held
   * (entry ids, partition positions) erased while Redis is down, so the
   * publisher cannot know what was lost. The run must FAIL with lost > 0.
   */
  | { kind: 'planted-loss'; atMs: number; trafficMs: number }
  /**
   * Redis Cluster: SIGKILL the master serving one chaos partition stream; its
   * replica is promoted (possibly missing the last writes); the killed node
   * restarts `downMs` after the failover and rejoins as a replica.
   */
  | { kind: 'redis-master-kill'; atMs: number; downMs: number }
  /**
   * Redis Cluster: SIGSTOP the master serving one chaos partition stream. Its
   * sockets stay open and silent, so its clients get no error at all (a
   * paused VM, a partition that drops packets); its replica is promoted. The
   * node is thawed `downMs` after the failover and rejoins as a replica.
   */
  | { kind: 'redis-master-freeze'; atMs: number; downMs: number }
  /** `pg_ctl stop -m fast` then start, mid-drain: every connection drops, committed data stays. */
  | { kind: 'postgres-restart'; atMs: number }
  /** Produce an event whose payload fails the handler's schema: it must end as a dead letter. */
  | { kind: 'poison'; atMs: number };

export type FaultKind = Fault['kind'];
/**
 * The kinds of a default run (each at least once) and of its extra faults;
 * on a cluster, `redis-restart` becomes `redis-master-kill` and `redis-snapshot-restore` `redis-master-freeze`.
 */
export const FAULT_KINDS: readonly FaultKind[] = ['sigkill', 'zombie', 'redis-restart', 'redis-snapshot-restore', 'wrongtype-key', 'postgres-restart', 'poison'];
/** Kinds a run takes only when named in `kinds` (`--faults`): they make the verdict FAIL on purpose. */
export const PROOF_FAULT_KINDS: readonly FaultKind[] = ['planted-loss'];

export interface FaultPlanOptions {
  seed: number;
  durationMs: number;
  replicas: number;
  /** Lease TTL of the app processes; a zombie stays stopped longer than this. */
  leaseTtlMs: number;
  /** Redis topology of the run; default single (one server). */
  redis?: 'single' | 'cluster';
  /** Only these kinds (each at least once, extras drawn among them); default FAULT_KINDS. */
  kinds?: readonly FaultKind[];
  /** Number of chaos partition streams a `wrongtype-key` fault picks from. */
  partitionStreams?: number;
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
  const redisFault = (kind: 'redis-restart' | 'redis-snapshot-restore'): Template => {
    if (options.redis === 'cluster') return { kind: kind === 'redis-restart' ? 'redis-master-kill' : 'redis-master-freeze', downMs: random.int(1_000, 4_000) };
    return kind === 'redis-restart' ? { kind } : { kind, trafficMs: random.int(1_000, 4_000) };
  };
  const template = (kind: FaultKind, role: AppRole): Template[] => {
    switch (kind) {
      case 'sigkill':
        return [sigkill(role)];
      case 'zombie':
        return [zombie(role)];
      case 'redis-restart':
      case 'redis-snapshot-restore':
        return [redisFault(kind)];
      case 'wrongtype-key':
        return [{ kind, partition: random.int(0, (options.partitionStreams ?? 1) - 1), heldMs: random.int(5_000, 10_000) }];
      case 'planted-loss':
        return [{ kind, trafficMs: random.int(2_000, 3_000) }];
      case 'redis-master-kill':
      case 'redis-master-freeze':
        return [{ kind, downMs: random.int(1_000, 4_000) }];
      case 'postgres-restart':
        return [{ kind }];
      case 'poison':
        return [{ kind }, { kind }];
    }
  };
  const kinds = options.kinds ?? FAULT_KINDS;
  // One of each kind (sigkill and zombie once per role); two poison events.
  const mandatory = kinds.flatMap((kind) => (kind === 'sigkill' || kind === 'zombie' ? [...template(kind, 'publisher'), ...template(kind, 'consumer')] : template(kind, 'publisher')));
  const window = Math.max(1, options.durationMs - 2 * MARGIN_MS);
  const extraCount = Math.max(0, Math.floor((options.durationMs - 60_000) / EXTRA_FAULT_EVERY_MS));
  const extras: Template[] = Array.from({ length: extraCount }, () => {
    const kind = random.pick(kinds);
    return template(kind, random.pick<AppRole>(['publisher', 'consumer']))[0] as Template;
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
    case 'redis-snapshot-restore':
      return `Redis SAVE ${at}, ${(fault.trafficMs / 1000).toFixed(1)} s more traffic, SHUTDOWN NOSAVE, restart from that older snapshot`;
    case 'wrongtype-key':
      return `WRONGTYPE key planted on chaos partition stream #${fault.partition} ${at} for ${(fault.heldMs / 1000).toFixed(1)} s, then the stream put back`;
    case 'planted-loss':
      return `PLANTED LOSS ${at}: consumers frozen, Redis SAVE, ${(fault.trafficMs / 1000).toFixed(1)} s more traffic, SHUTDOWN NOSAVE, Postgres's record of Redis erased, restart from the snapshot (verify must FAIL)`;
    case 'redis-master-kill':
      return `SIGKILL of a Redis Cluster master ${at}, failover to its replica (node back after ${(fault.downMs / 1000).toFixed(1)} s)`;
    case 'redis-master-freeze':
      return `SIGSTOP of a Redis Cluster master ${at}, failover to its replica (SIGCONT ${(fault.downMs / 1000).toFixed(1)} s after)`;
    case 'postgres-restart':
      return `Postgres pg_ctl stop -m fast mid-drain, then start, ${at}`;
    case 'poison':
      return `poison event ${at}`;
  }
}
