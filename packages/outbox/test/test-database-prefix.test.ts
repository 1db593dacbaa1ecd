import postgres from 'postgres';
import { withDatabaseName } from '../src';
import { createTestDatabase, randomSuffix, testDatabaseBaseUrl, testDatabaseName } from '../src/testing';

describe('test databases take their name prefix from TEST_DATABASE_PREFIX', () => {
  const saved = process.env.TEST_DATABASE_PREFIX;
  afterEach(() => {
    if (saved === undefined) delete process.env.TEST_DATABASE_PREFIX;
    else process.env.TEST_DATABASE_PREFIX = saved;
  });

  test('a database created by the kit carries the prefix (and its template too)', async () => {
    const prefix = `shared_${randomSuffix().toLowerCase().replace(/[^a-z0-9]/g, '')}`.slice(0, 30);
    process.env.TEST_DATABASE_PREFIX = prefix;
    const admin = postgres(withDatabaseName(testDatabaseBaseUrl(), 'postgres'), { max: 1, onnotice: () => undefined });
    const db = await createTestDatabase();
    try {
      expect(db.name.startsWith(`${prefix}_test_`)).toBe(true);
      const templates = await admin<{ datname: string }[]>`SELECT datname FROM pg_database WHERE datistemplate AND starts_with(datname, ${`${prefix}_tpl_`})`;
      expect(templates).toHaveLength(1);
      await db.drop();
      // The template is this test's own: remove it too.
      for (const { datname } of templates) {
        await admin.unsafe(`ALTER DATABASE "${datname}" WITH IS_TEMPLATE false`);
        await admin.unsafe(`DROP DATABASE "${datname}"`);
      }
    } finally {
      await admin.end();
    }
  });

  test('defaults to petcover', () => {
    delete process.env.TEST_DATABASE_PREFIX;
    expect(testDatabaseName('test')).toMatch(/^petcover_test_/);
  });

  test('refuses a prefix that would need quoting', () => {
    process.env.TEST_DATABASE_PREFIX = 'My-Prefix';
    expect(() => testDatabaseName('test')).toThrow(/TEST_DATABASE_PREFIX must be lower-case letters/);
  });
});
