/**
 * Finds the handler module to run: `--module <path>`, or by default the
 * domain's `domainConsumerModule` from @petcover/domain.
 */
import path from 'node:path';
import { resolveConsumerModule, type ConsumerModule } from '@petcover/outbox';

export class ModuleLoadError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'ModuleLoadError';
  }
}

/**
 * Loads a module file (relative paths resolve against `cwd`). A `.ts` file is
 * compiled on the fly through tsx when tsx is installed (development and
 * tests); in production pass compiled JavaScript.
 */
export function loadModuleFile(modulePath: string, cwd = process.cwd()): ConsumerModule {
  const resolved = path.resolve(cwd, modulePath);
  if (/\.[cm]?ts$/.test(resolved)) registerTypeScript(resolved);
  let exported: unknown;
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    exported = require(resolved);
  } catch (error) {
    throw new ModuleLoadError(`cannot load consumer module ${resolved}: ${(error as Error).message}`, { cause: error });
  }
  return resolveConsumerModule(exported, resolved);
}

function registerTypeScript(resolved: string): void {
  let api: { register(): unknown };
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    api = require('tsx/cjs/api') as { register(): unknown };
  } catch {
    throw new ModuleLoadError(`consumer module ${resolved} is TypeScript but tsx is not installed; compile it to JavaScript`);
  }
  api.register();
}

/** The domain's module; a clear error while @petcover/domain does not export one yet. */
export function loadDomainModule(): ConsumerModule {
  let domain: Record<string, unknown>;
  try {
    // Loaded at run time so the app builds before the domain exports its module.
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    domain = require('@petcover/domain') as Record<string, unknown>;
  } catch (error) {
    throw new ModuleLoadError(`cannot load @petcover/domain: ${(error as Error).message}`, { cause: error });
  }
  if (!domain.domainConsumerModule) {
    throw new ModuleLoadError('@petcover/domain does not export domainConsumerModule yet; pass --module <path> to choose the handlers');
  }
  return resolveConsumerModule({ consumerModule: domain.domainConsumerModule }, '@petcover/domain');
}

export function loadConsumerModule(modulePath: string | undefined): ConsumerModule {
  return modulePath === undefined ? loadDomainModule() : loadModuleFile(modulePath);
}
