import { DEFAULT_DATABASE_URL, DEFAULT_REDIS_URL, maskUrlPassword } from '../src';

describe('maskUrlPassword', () => {
  // Each case leaked (all or part of) the password with one of the three maskers this one replaces.
  test.each([
    ['redis without a user', 'redis://:pw-secret@cache:6379/0', 'redis://:***@cache:6379/0'],
    ['postgres without a user', 'postgresql://:pw-secret@db/petcover', 'postgresql://:***@db/petcover'],
    ['user and password', 'postgresql://petcover:pw-secret@db.internal:5432/petcover', 'postgresql://petcover:***@db.internal:5432/petcover'],
    ['rediss with ACL user', 'rediss://default:pw-secret@cache:6380', 'rediss://default:***@cache:6380'],
    ['unencoded @ in the password', 'redis://user:pw@secret@cache:6379', 'redis://user:***@cache:6379'],
    ['unencoded / in the password', 'postgresql://user:pw/secret@db/petcover', 'postgresql://user:***@db/petcover'],
    ['password in the query', 'postgresql://user@db/petcover?sslmode=require&password=pw-secret', 'postgresql://user@db/petcover?sslmode=require&password=***'],
  ])('%s', (_case, url, masked) => {
    expect(maskUrlPassword(url)).toBe(masked);
    expect(maskUrlPassword(url)).not.toContain('secret');
  });

  test('masks every URL inside a message, and each quoted URL on its own', () => {
    const text = `connect ECONNREFUSED postgresql://u:pw-secret@db/x; fallback "redis://:pw-secret@cache:6379" for user@example.com`;
    expect(maskUrlPassword(text)).toBe('connect ECONNREFUSED postgresql://u:***@db/x; fallback "redis://:***@cache:6379" for user@example.com');
  });

  test('leaves URLs without a password alone', () => {
    for (const url of [DEFAULT_DATABASE_URL, DEFAULT_REDIS_URL, 'postgresql://postgres@127.0.0.1:5432/petcover', 'redis://cache:6379/0']) {
      expect(maskUrlPassword(url)).toBe(url);
    }
  });

  test('is idempotent', () => {
    const once = maskUrlPassword('redis://:pw-secret@cache:6379');
    expect(maskUrlPassword(once)).toBe(once);
  });
});

describe('default URLs', () => {
  test('are the ones SPEC §3.3 names', () => {
    expect(DEFAULT_DATABASE_URL).toBe('postgresql://localhost:5432/petcover');
    expect(DEFAULT_REDIS_URL).toBe('redis://localhost:6379/0');
  });
});
