import path from 'node:path';
import { parseEnv } from '@petcover/service-kit';
import { parseCli, UsageError } from '../src/cli';
import { parseStreamPartitions } from '@petcover/outbox';
import { envSchema } from '../src/env';
import { loadConsumerModule, loadModuleFile, ModuleLoadError } from '../src/load-module';

describe('parseCli', () => {
  test('start with every flag', () => {
    expect(
      parseCli([
        'start', '--group', 'billing', '--concurrency', '8', '--module', './m.js', '--partitions', 'stream:a:b=4,stream:c:d=2',
        '--batch-size', '50', '--lease-ttl', '3', '--max-attempts', '7', '--retry-delay', '20', '--block', '500', '--log-level', 'debug',
        '--handler-timeout', '2.5', '--read-max-bytes', '65536',
      ]),
    ).toEqual({
      command: 'start',
      options: {
        group: 'billing', concurrency: 8, module: './m.js', partitions: { 'stream:a:b': 4, 'stream:c:d': 2 }, batchSize: 50,
        leaseTtlMs: 3000, maxAttempts: 7, retryBaseDelayMs: 20, blockMs: 500, logLevel: 'debug',
        handlerTimeoutMs: 2500, readMaxBytes: 65536,
      },
    });
  });

  test('help, and bad input rejected with a precise UsageError', () => {
    expect(parseCli(['--help'])).toEqual({ command: 'help' });
    const cases: [string[], RegExp][] = [
      [[], /missing command/],
      [['stop'], /unknown command "stop"/],
      [['start', '--concurrency', '0'], /--concurrency must be a positive integer \(got "0"\)/],
      [['start', '--lease-ttl', '1.5'], /--lease-ttl must be a positive integer/],
      [['start', '--group', 'a b'], /--group may hold only/],
      [['start', '--log-level', 'loud'], /--log-level must be one of/],
      [['start', '--partitions', 'stream:a:b=zero'], /--partitions: "stream:a:b=zero": partition count must be an integer from 1 to 1024/],
      [['start', '--module', ' '], /--module needs a path/],
      [['start', '--nope'], /Unknown option '--nope'/],
      [['start', '--handler-timeout', '0'], /--handler-timeout must be a number of seconds from 0.01 to 3600 \(got "0"\)/],
      [['start', '--handler-timeout', 'soon'], /--handler-timeout must be a number of seconds/],
      [['start', '--read-max-bytes', '100'], /--read-max-bytes must be at least 1024 \(got 100\)/],
    ];
    for (const [argv, message] of cases) {
      expect(() => parseCli(argv)).toThrow(UsageError);
      expect(() => parseCli(argv)).toThrow(message);
    }
  });
});

describe('envSchema', () => {
  test('defaults: group events-consumer, health port 9102, no prefix', () => {
    expect(parseEnv(envSchema, {})).toMatchObject({ CONSUMER_GROUP: 'events-consumer', HEALTH_PORT: 9102, REDIS_KEY_PREFIX: '' });
  });

  test('reads group, partitions and prefix; rejects bad values naming the variable', () => {
    expect(parseEnv(envSchema, { CONSUMER_GROUP: 'billing', STREAM_PARTITIONS: 'stream:a:b=4', REDIS_KEY_PREFIX: 'x:' })).toMatchObject({
      CONSUMER_GROUP: 'billing', STREAM_PARTITIONS: { 'stream:a:b': 4 }, REDIS_KEY_PREFIX: 'x:',
    });
    expect(() => parseEnv(envSchema, { CONSUMER_GROUP: 'bad group' })).toThrow(/CONSUMER_GROUP: only letters/);
    expect(() => parseEnv(envSchema, { STREAM_PARTITIONS: 'orders=2' })).toThrow(/STREAM_PARTITIONS: "orders=2": expected stream:<context>:<name>=<count>/);
    expect(() => parseEnv(envSchema, { CI_STRICT: '1' })).toThrow(/DATABASE_URL and REDIS_URL must be set/);
  });

  test('parseStreamPartitions ignores blanks', () => {
    expect(parseStreamPartitions(' stream:a:b=2 , ,stream:c:d=1')).toEqual({ 'stream:a:b': 2, 'stream:c:d': 1 });
  });
});

describe('loading the handler module', () => {
  test('a TypeScript module by path, through tsx', () => {
    process.env.FIXTURE_STREAM = 'stream:fixture:events';
    const module = loadModuleFile(path.join(__dirname, 'fixtures', 'recording-module.ts'));
    expect(module.streams).toEqual([{ name: 'stream:fixture:events', partitions: 1 }]);
  });

  test('a missing file and a module of the wrong shape are refused by name', () => {
    expect(() => loadModuleFile('./does-not-exist.js', __dirname)).toThrow(ModuleLoadError);
    expect(() => loadModuleFile(path.join(__dirname, '..', 'package.json'))).toThrow(/`register` is not a function/);
  });

  test('without --module the domain module is required, with a clear error until the domain exports it', () => {
    let error: unknown;
    let module;
    try {
      module = loadConsumerModule(undefined);
    } catch (caught) {
      error = caught;
    }
    if (error) expect((error as Error).message).toMatch(/domainConsumerModule|@petcover\/domain/);
    else expect(module!.streams.length).toBeGreaterThan(0);
  });
});
