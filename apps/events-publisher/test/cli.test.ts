/**
 * Command line and environment parsing: every bad input gets a precise error.
 */
import { spawnSync } from 'node:child_process';
import { ConfigError, EXIT_CONFIG, parseEnv } from '@petcover/service-kit';
import { CliUsageError, parseCli } from '../src/cli';
import { parseStreamPartitions } from '@petcover/outbox';
import { envSchema } from '../src/env';
import { MAIN } from './spawn-publisher';

describe('parseCli', () => {
  test('reads every flag, in seconds where the flag says so', () => {
    expect(
      parseCli(['start', '--log-level', 'debug', '--poll-interval', '1', '--batch-size', '250', '--batch-max-bytes', '65536', '--lease-ttl', '10', '--partitions', 'stream:a:b=4']),
    ).toEqual({ command: 'start', logLevel: 'debug', pollIntervalMs: 1_000, batchSize: 250, batchMaxBytes: 65_536, leaseTtlMs: 10_000, partitions: { 'stream:a:b': 4 } });
    expect(parseCli(['start'])).toEqual({ command: 'start' });
    expect(parseCli(['--help'])).toEqual({ command: 'help' });
  });

  test.each([
    [[], 'missing command: start'],
    [['run'], 'unknown command "run" (expected start)'],
    [['start', 'extra'], 'unexpected argument "extra"'],
    [['start', '--poll-interval', '0'], '--poll-interval must be a number of seconds from 0.05 to 3600 (got "0")'],
    [['start', '--poll-interval', 'abc'], '--poll-interval must be a number of seconds from 0.05 to 3600 (got "abc")'],
    [['start', '--batch-size', '1.5'], '--batch-size must be an integer from 1 to 10000 (got "1.5")'],
    [['start', '--batch-size', '20000'], '--batch-size must be an integer from 1 to 10000 (got "20000")'],
    [['start', '--batch-max-bytes', '100'], '--batch-max-bytes must be an integer from 1024 to 1073741824 (got "100")'],
    [['start', '--lease-ttl=-1'], '--lease-ttl must be a number of seconds from 0.3 to 3600 (got "-1")'],
    [['start', '--log-level', 'loud'], '--log-level must be one of fatal, error, warn, info, debug, trace, silent (got "loud")'],
    [['start', '--partitions', 'stream:a:b=0'], '--partitions "stream:a:b=0": partition count must be an integer from 1 to 1024'],
  ])('%j → CliUsageError %s', (argv, message) => {
    expect(() => parseCli(argv)).toThrow(new CliUsageError(message));
  });

  test('an unknown flag is a usage error naming it', () => {
    expect(() => parseCli(['start', '--bogus'])).toThrow(/Unknown option '--bogus'/);
  });
});

describe('envSchema', () => {
  test('defaults: SPEC URLs, health port 9101, one partition per stream', () => {
    const env = parseEnv(envSchema, {});
    expect(env).toMatchObject({
      DATABASE_URL: 'postgresql://localhost:5432/petcover',
      REDIS_URL: 'redis://localhost:6379/0',
      HEALTH_PORT: 9101,
      REDIS_KEY_PREFIX: '',
      STREAM_PARTITIONS: {},
      OUTBOX_RETENTION_DAYS: 7,
    });
    expect(env.PETCOVER_FAULT).toBeUndefined();
  });

  test('STREAM_PARTITIONS parses a list and rejects bad items precisely', () => {
    expect(parseStreamPartitions('stream:a:b=4, stream:c:d=2')).toEqual({ 'stream:a:b': 4, 'stream:c:d': 2 });
    expect(() => parseEnv(envSchema, { STREAM_PARTITIONS: 'orders=4' })).toThrow(
      new ConfigError('invalid configuration: STREAM_PARTITIONS: "orders=4": expected stream:<context>:<name>=<count>'),
    );
    expect(() => parseEnv(envSchema, { PETCOVER_FAULT: 'explode' })).toThrow(/PETCOVER_FAULT/);
    expect(() => parseEnv(envSchema, { HEALTH_PORT: '70000' })).toThrow(/HEALTH_PORT/);
  });

  test('strict mode without DATABASE_URL: the built app exits 78 with a one-line reason', () => {
    const result = spawnSync(process.execPath, [MAIN, 'start'], { env: { PATH: process.env.PATH, CI_STRICT: '1' }, encoding: 'utf8' });
    expect(result.status).toBe(EXIT_CONFIG);
    expect(result.stderr.trim()).toBe('events-publisher: DATABASE_URL and REDIS_URL must be set when NODE_ENV=production or CI_STRICT=1');
  });

  test('a bad flag: the built app exits 64 and prints the usage', () => {
    const result = spawnSync(process.execPath, [MAIN, 'start', '--batch-size', 'x'], { env: { PATH: process.env.PATH }, encoding: 'utf8' });
    expect(result.status).toBe(64);
    expect(result.stderr).toContain('--batch-size must be an integer');
    expect(result.stderr).toContain('Usage: events-publisher start');
  });
});
