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
