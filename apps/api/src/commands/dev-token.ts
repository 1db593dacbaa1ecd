#!/usr/bin/env node
/**
 * `dev-token --owner <uuid> [--ttl <seconds>]` (root: `pnpm dev-token`):
 * prints an owner bearer token signed with this environment's AUTH_SECRET
 * (and AUTH_TOKEN_ISSUER / AUTH_TOKEN_AUDIENCE when set), for curl and local
 * tools. Refused in strict mode (NODE_ENV=production, CI_STRICT=1): there,
 * tokens come from the identity provider, never from a shell.
 */
import { ConfigError, EXIT_CONFIG, isStrict } from '@petcover/service-kit';
import { DEFAULT_OWNER_TOKEN_TTL_SECONDS, InvalidOwnerTokenError, signOwnerToken } from '../auth/owner-token';
import { ownerTokenConfigOf, readApiEnv } from '../env';
import { EXIT_USAGE, parseFlags, requireUuid, secondsFlag, UsageError } from './command-line';

const USAGE = 'usage: dev-token --owner <uuid> [--ttl <seconds>]';

async function main(): Promise<void> {
  const flags = parseFlags(process.argv.slice(2), { values: ['owner', 'ttl'], usage: USAGE });
  const owner = requireUuid(flags, 'owner');
  const ttlSeconds = Math.floor(secondsFlag(flags, 'ttl', DEFAULT_OWNER_TOKEN_TTL_SECONDS));
  if (isStrict(process.env)) throw new ConfigError('dev-token is for development: refused when NODE_ENV=production or CI_STRICT=1');
  const env = readApiEnv();
  console.log(await signOwnerToken(ownerTokenConfigOf(env), owner, { ttlSeconds }));
}

main().catch((error: Error) => {
  if (error instanceof UsageError || error instanceof InvalidOwnerTokenError) {
    console.error(`dev-token: ${error.message}\n${USAGE}`);
    process.exit(EXIT_USAGE);
  }
  console.error(`dev-token: ${error.message}`);
  process.exit(error instanceof ConfigError ? EXIT_CONFIG : 1);
});
