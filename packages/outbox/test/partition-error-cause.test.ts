/**
 * What the partition loop calls an error (metric label `cause`, log field):
 * told by where the error came from, since a refused connection reads the
 * same from Redis and from Postgres (chaos once logged a Postgres restart as
 * "redis_unreachable").
 */
import { NoAnswerError } from '../src/backoff';
import { partitionErrorCause } from '../src/consumer/partition-worker';

/** A connection error as node's net module makes it, for either client. */
function refused(port: number): Error {
  return Object.assign(new Error(`connect ECONNREFUSED 127.0.0.1:${port}`), { code: 'ECONNREFUSED', errno: -111, syscall: 'connect' });
}

test('a refused connection is Redis being unreachable when a Redis call threw it, Postgres otherwise', () => {
  expect(partitionErrorCause(refused(6379), true)).toBe('redis_unreachable');
  expect(partitionErrorCause(refused(5432), false)).toBe('postgres_unreachable');
});

test('Redis causes: wrong key type, a connection closed under a command, no answer at all', () => {
  expect(partitionErrorCause(new Error('WRONGTYPE Operation against a key holding the wrong kind of value'), true)).toBe('wrong_key_type');
  expect(partitionErrorCause(new Error('Command aborted due to connection close'), true)).toBe('redis_unreachable');
  expect(partitionErrorCause(new Error('Connection is closed.'), true)).toBe('redis_unreachable');
  expect(partitionErrorCause(new NoAnswerError('Redis XREADGROUP BLOCK on s', 11_000), true)).toBe('redis_no_answer');
  expect(partitionErrorCause(new Error('ERR something else'), true)).toBe('error');
});

test('Postgres causes by SQLSTATE, also when wrapped (drizzle puts the driver error in `cause`)', () => {
  const wrapped = (code: string) => Object.assign(new Error('Failed query: ...'), { cause: Object.assign(new Error('x'), { code }) });
  expect(partitionErrorCause(wrapped('57014'), false)).toBe('statement_timeout');
  expect(partitionErrorCause(wrapped('55P03'), false)).toBe('lock_timeout');
  expect(partitionErrorCause(wrapped('57P01'), false)).toBe('postgres_unreachable');
  expect(partitionErrorCause(wrapped('08006'), false)).toBe('postgres_unreachable');
  expect(partitionErrorCause(Object.assign(new Error('write CONNECTION_CLOSED 127.0.0.1:5432'), { code: 'CONNECTION_CLOSED' }), false)).toBe('postgres_unreachable');
  // A message that merely mentions a Redis word is not a Redis error when Postgres threw it.
  expect(partitionErrorCause(wrapped('23505'), false)).toBe('error');
});
