import { Writable } from 'node:stream';
import { createLogger } from '../src';

function capture() {
  const lines: string[] = [];
  const destination = new Writable({
    write(chunk, _enc, done) {
      lines.push(String(chunk));
      done();
    },
  });
  return { lines, logger: createLogger({ name: 'test', destination }) };
}

describe('logger never shows secrets', () => {
  const url = 'postgresql://petcover:s3cr3t-pw@db.internal:5432/petcover';

  test('masks a password in a URL anywhere in the line', () => {
    const { lines, logger } = capture();
    logger.info({ databaseUrl: url, nested: { urls: [`redis://:r3dis-pw@cache:6379/0`] } }, `connecting to ${url}`);
    logger.error({ err: new Error(`connect ECONNREFUSED ${url}`) }, 'failed');
    const text = lines.join('');
    expect(text).not.toContain('s3cr3t-pw');
    expect(text).not.toContain('r3dis-pw');
    expect(text).toContain('postgresql://petcover:***@db.internal:5432/petcover');
  });

  test('redacts secret-named keys', () => {
    const { lines, logger } = capture();
    logger.info({ password: 'hunter2', headers: { authorization: 'Bearer abc' } }, 'login');
    expect(lines.join('')).not.toMatch(/hunter2|Bearer abc/);
  });
});
