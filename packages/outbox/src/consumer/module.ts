/**
 * What a consumer deployment runs: the streams it reads and the handlers it
 * registers. The events-consumer app loads one with `--module <path>`; bench
 * and chaos plug their own handlers in the same way.
 */
import type { MigrationSet } from '../migrations';
import { STREAM_NAME_PATTERN } from '../streams';
import type { HandlerRegistry } from './registry';

export interface ConsumerStreamDeclaration {
  /** Logical stream name, `stream:<context>:<name>`. */
  name: string;
  /** Partitions of the stream (default 1); must match the publisher's. */
  partitions?: number;
}

export interface ConsumerModule {
  streams: ConsumerStreamDeclaration[];
  /** Registers every handler; a duplicate registration throws DuplicateHandlerError. */
  register(registry: HandlerRegistry): void;
  /**
   * Migration sets the handlers' own tables need (the outbox's is always
   * checked); `/readyz` fails until they are at head.
   */
  migrations?: readonly MigrationSet[];
}

export class InvalidConsumerModuleError extends Error {
  constructor(
    readonly source: string,
    reason: string,
  ) {
    super(`consumer module ${source} is invalid: ${reason}`);
    this.name = 'InvalidConsumerModuleError';
  }
}

/**
 * Picks the ConsumerModule out of a loaded module's exports (its `default`
 * export or its `consumerModule` export) and checks its shape. Throws
 * InvalidConsumerModuleError naming `source` and what is wrong.
 */
export function resolveConsumerModule(exported: unknown, source: string): ConsumerModule {
  const namespace = (exported ?? {}) as Record<string, unknown>;
  const candidate = (namespace.consumerModule ?? namespace.default ?? exported) as Partial<ConsumerModule> | undefined;
  if (!candidate || typeof candidate !== 'object') {
    throw new InvalidConsumerModuleError(source, 'exports neither `consumerModule` nor a default export');
  }
  if (typeof candidate.register !== 'function') throw new InvalidConsumerModuleError(source, '`register` is not a function');
  if (!Array.isArray(candidate.streams) || candidate.streams.length === 0) {
    throw new InvalidConsumerModuleError(source, '`streams` must be a non-empty array of { name, partitions? }');
  }
  for (const stream of candidate.streams) {
    if (!stream || typeof stream.name !== 'string') throw new InvalidConsumerModuleError(source, 'every stream needs a `name`');
    if (!STREAM_NAME_PATTERN.test(stream.name)) {
      throw new InvalidConsumerModuleError(source, `stream name ${JSON.stringify(stream.name)} does not match stream:<context>:<name>`);
    }
    if (stream.partitions !== undefined && (!Number.isInteger(stream.partitions) || stream.partitions < 1)) {
      throw new InvalidConsumerModuleError(source, `stream ${stream.name}: partitions must be a positive integer`);
    }
  }
  if (candidate.migrations !== undefined && !Array.isArray(candidate.migrations)) {
    throw new InvalidConsumerModuleError(source, '`migrations` must be an array of migration sets');
  }
  return candidate as ConsumerModule;
}
