import { z } from 'zod';
import { baseEnvSchema, ConfigError, parseEnv } from '../src';

const schema = baseEnvSchema({ healthPort: 9101 });

describe('parseEnv', () => {
  test('applies local-development defaults outside strict mode', () => {
    expect(parseEnv(schema, {})).toMatchObject({
      DATABASE_URL: 'postgresql://localhost:5432/petcover',
      REDIS_URL: 'redis://localhost:6379/0',
      HEALTH_PORT: 9101,
      LOG_LEVEL: 'info',
    });
  });
  test.each([{ NODE_ENV: 'production' }, { CI_STRICT: '1' }])('strict mode %p requires both URLs', (env) => {
    expect(() => parseEnv(schema, { ...env, DATABASE_URL: 'postgresql://db/x' })).toThrow(
      new ConfigError('REDIS_URL must be set when NODE_ENV=production or CI_STRICT=1'),
    );
  });
  test('names the invalid field', () => {
    expect(() => parseEnv(schema, { HEALTH_PORT: 'ninety' })).toThrow(/HEALTH_PORT/);
    expect(() => parseEnv(schema.extend({ X: z.enum(['a']) }), { X: 'b' })).toThrow(/X:/);
  });
});

describe('URL schemes', () => {
  test.each([{}, { CI_STRICT: '1' }, { NODE_ENV: 'production' }])('%p: a non-postgres DATABASE_URL is refused at once', (mode) => {
    expect(() => parseEnv(schema, { ...mode, DATABASE_URL: 'sqlite:///x.db', REDIS_URL: 'redis://r:6379/0' })).toThrow(
      /DATABASE_URL: must start with postgres:\/\/ or postgresql:\/\//,
    );
  });
  test.each([{}, { CI_STRICT: '1' }])('%p: a non-redis REDIS_URL is refused at once', (mode) => {
    expect(() => parseEnv(schema, { ...mode, DATABASE_URL: 'postgres://db/x', REDIS_URL: 'http://cache:6379' })).toThrow(
      /REDIS_URL: must start with redis:\/\/ or rediss:\/\//,
    );
  });
  test('accepts postgres://, postgresql://, redis:// and rediss://', () => {
    expect(() => parseEnv(schema, { DATABASE_URL: 'postgres://db/x', REDIS_URL: 'rediss://:pw@cache:6380/1' })).not.toThrow();
    expect(() => parseEnv(schema, { DATABASE_URL: 'postgresql://db/x', REDIS_URL: 'redis://cache' })).not.toThrow();
  });
});
