/**
 * Configuration of the api and the pure parts of its commands; `--help` of
 * each built command.
 */
import { execFile } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { ConfigError } from '@petcover/service-kit';
import { parseFlags, requireUuid, UsageError } from '../src/commands/command-line';
import { formatLogLine } from '../src/commands/log-lines';
import { DEV_AUTH_SECRET, DEV_SIGNATURE_API_KEY, readApiEnv } from '../src/env';

test('defaults suit local development; strict mode requires URLs and AUTH_SECRET', () => {
  const env = readApiEnv({});
  expect(env).toMatchObject({ PORT: 3000, AUTH_SECRET: DEV_AUTH_SECRET, DEV_AUTO_ENROLL_PET: false, SIGNATURE_PROVIDER: 'manual', BODY_LIMIT: '100kb' });
  expect(env).toMatchObject({ CALLBACK_MAX_AGE_SECONDS: 3600, CALLBACK_MAX_FUTURE_SKEW_SECONDS: 300, REQUEST_TIMEOUT_MS: 30_000, HEADERS_TIMEOUT_MS: 10_000 });
  expect(readApiEnv({ DEV_AUTO_ENROLL_PET: '1', PORT: '3100' })).toMatchObject({ DEV_AUTO_ENROLL_PET: true, PORT: 3100 });

  const urls = { DATABASE_URL: 'postgresql://db/petcover', REDIS_URL: 'redis://cache:6379/0' };
  expect(() => readApiEnv({ NODE_ENV: 'production' })).toThrow(/DATABASE_URL and REDIS_URL must be set/);
  expect(() => readApiEnv({ CI_STRICT: '1', ...urls })).toThrow(/AUTH_SECRET must be set/);
  expect(() => readApiEnv({ NODE_ENV: 'production', ...urls, AUTH_SECRET: 'x'.repeat(32), SIGNATURE_PROVIDER: 'dropbox_sign' })).toThrow(/SIGNATURE_API_KEY must be set/);
  expect(() => readApiEnv({ PORT: 'eighty' })).toThrow(ConfigError);
  expect(() => readApiEnv({ AUTH_SECRET: 'short' })).toThrow(/AUTH_SECRET: must be at least 16 characters/);
  expect(() => readApiEnv({ SIGNATURE_PROVIDER: 'docusign' })).toThrow(/SIGNATURE_PROVIDER/);
});

test('command flags: values, booleans, unknown flags and malformed uuids are explained', () => {
  const flags = parseFlags(['--pet-id', 'A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11', '--wait=5', '--no-demo'], { values: ['pet-id', 'wait'], booleans: ['no-demo'], usage: 'usage: x' });
  expect(requireUuid(flags, 'pet-id')).toBe('a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11');
  expect(flags.get('wait')).toBe('5');
  expect(flags.get('no-demo')).toBe(true);
  expect(() => parseFlags(['--pet'], { values: ['pet-id'], usage: 'usage: x' })).toThrow(new UsageError('unknown flag --pet'));
  expect(() => parseFlags(['--pet-id'], { values: ['pet-id'], usage: 'usage: x' })).toThrow('--pet-id needs a value');
  expect(() => requireUuid(parseFlags(['--owner', '123'], { values: ['owner'], usage: 'usage: x' }), 'owner')).toThrow('--owner must be a UUID (got "123")');
  expect(() => requireUuid(new Map(), 'owner')).toThrow('--owner <uuid> is required');
});

test('pino lines become readable lines; other lines pass unchanged', () => {
  const line = JSON.stringify({ level: 30, time: Date.UTC(2026, 0, 2, 3, 4, 5), pid: 1, hostname: 'h', name: 'api', msg: 'api listening', port: 3000 });
  expect(formatLogLine(line)).toBe('03:04:05 INFO  api listening port=3000');
  expect(formatLogLine('RESULT: ENROLLED')).toBe('RESULT: ENROLLED');
  expect(formatLogLine('{not json')).toBe('{not json');
});

test('strict mode refuses the manual provider, DEV_AUTO_ENROLL_PET and every published development secret, in one line', () => {
  const safe = {
    NODE_ENV: 'production',
    DATABASE_URL: 'postgresql://petcover:s3cr3t-from-vault@db/petcover',
    REDIS_URL: 'redis://cache:6379/0',
    AUTH_SECRET: 'a'.repeat(40),
    SIGNATURE_PROVIDER: 'dropbox_sign',
    SIGNATURE_API_KEY: 'b'.repeat(40),
    ADMIN_API_KEY: 'c'.repeat(40),
  };
  expect(readApiEnv(safe)).toMatchObject({ SIGNATURE_PROVIDER: 'dropbox_sign', DEV_AUTO_ENROLL_PET: false });
  const refusal = (env: Record<string, string | undefined>) => {
    try {
      readApiEnv(env);
    } catch (error) {
      expect(error).toBeInstanceOf(ConfigError);
      expect((error as Error).message).not.toContain('\n');
      return (error as Error).message;
    }
    throw new Error('accepted');
  };
  expect(refusal({ ...safe, SIGNATURE_PROVIDER: undefined })).toMatch(/refusing to start in strict mode.*SIGNATURE_PROVIDER is manual \(the default\)/);
  expect(refusal({ ...safe, CI_STRICT: '1', NODE_ENV: undefined, SIGNATURE_PROVIDER: 'manual' })).toMatch(/SIGNATURE_PROVIDER is manual;/);
  expect(refusal({ ...safe, DEV_AUTO_ENROLL_PET: '1' })).toMatch(/DEV_AUTO_ENROLL_PET enrolls without any signature/);
  expect(refusal({ ...safe, SIGNATURE_API_KEY: DEV_SIGNATURE_API_KEY })).toMatch(/SIGNATURE_API_KEY is a development value/);
  expect(refusal({ ...safe, AUTH_SECRET: DEV_AUTH_SECRET })).toMatch(/AUTH_SECRET is a development value/);
  expect(refusal({ ...safe, ADMIN_API_KEY: 'petcover-compose-dev-only-admin-key' })).toMatch(/ADMIN_API_KEY is a development value/);
  expect(refusal({ ...safe, ADMIN_READ_ONLY_KEY: 'petcover-dev-only-read-only-key' })).toMatch(/ADMIN_READ_ONLY_KEY is a development value/);
  expect(refusal({ ...safe, AUTH_SECRET: 'REPLACE_ME_REPLACE_ME' })).toMatch(/AUTH_SECRET is a development value/);
  expect(refusal({ ...safe, DATABASE_URL: 'postgresql://petcover:petcover-dev-only@postgres:5432/petcover' })).toMatch(/the DATABASE_URL password is a development value/);
  // Several at once: all named, still one line.
  expect(refusal({ ...safe, SIGNATURE_PROVIDER: 'manual', DEV_AUTO_ENROLL_PET: 'true', AUTH_SECRET: DEV_AUTH_SECRET })).toMatch(
    /SIGNATURE_PROVIDER is manual.*DEV_AUTO_ENROLL_PET.*AUTH_SECRET is a development value/,
  );
  // Outside strict mode the same values are the development defaults.
  expect(readApiEnv({ SIGNATURE_PROVIDER: 'manual', DEV_AUTO_ENROLL_PET: '1' })).toMatchObject({ SIGNATURE_PROVIDER: 'manual', SIGNATURE_API_KEY: DEV_SIGNATURE_API_KEY });
});

test.each([
  ['check-pet-enrollment', 'usage: check-pet-enrollment --pet-id <uuid> --owner <uuid> [--wait <seconds>]'],
  ['simulate-pet-signature-flow', 'usage: simulate-pet-signature-flow --owner-global-user-id <uuid>'],
  ['dev-token', 'usage: dev-token --owner <uuid>'],
  ['dev', 'usage: petcover-dev [--no-demo]'],
])('%s --help prints its usage and exits 0 without reading any configuration', async (command, usage) => {
  const script = path.join(__dirname, '..', 'dist', 'commands', `${command}.js`);
  // A strict environment without URLs would refuse to start: --help must answer before that.
  const answer = await promisify(execFile)(process.execPath, [script, '--help'], { env: { PATH: process.env.PATH, NODE_ENV: 'production' } });
  expect(answer.stdout.startsWith(usage)).toBe(true);
  expect(answer.stderr).toBe('');
});
