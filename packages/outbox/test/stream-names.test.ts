import {
  escapeRedisGlob,
  formatStreamPartitions,
  logicalStreamOf,
  parsePartitionStreamName,
  parseStreamPartitions,
  partitionFor,
  partitionStreamName,
  partitionStreamNames,
  partitionStreamOfKey,
  redisKeyPatterns,
  redisStreamKey,
  redisStreamKeyPattern,
  redisStreamKeys,
  streamDedupeKey,
  streamMetaKey,
} from '../src/streams';
import { OutboxValidationError } from '../src/errors';

describe('stream names: logical ↔ partition', () => {
  test('a name part that looks like a partition suffix is still a logical stream', () => {
    // The bug three disagreeing parsers had: `stream:orders:p1` became `stream:orders`.
    expect(logicalStreamOf('stream:orders:p1')).toBe('stream:orders:p1');
    expect(parsePartitionStreamName('stream:orders:p1')).toEqual({ stream: 'stream:orders:p1', partition: null });
    expect(logicalStreamOf(partitionStreamName('stream:orders:p1', 1, 2))).toBe('stream:orders:p1');
  });

  test.each([
    ['stream:a:b', { stream: 'stream:a:b', partition: null }],
    ['stream:a:b:p0', { stream: 'stream:a:b', partition: 0 }],
    ['stream:a:b:p12', { stream: 'stream:a:b', partition: 12 }],
    ['stream:a:p1:p3', { stream: 'stream:a:p1', partition: 3 }],
    ['stream:a:b.v2-x:p7', { stream: 'stream:a:b.v2-x', partition: 7 }],
  ])('%s parses', (name, parsed) => {
    expect(parsePartitionStreamName(name)).toEqual(parsed);
    expect(logicalStreamOf(name)).toBe(parsed.stream);
  });

  test.each(['', 'orders', 'stream:orders', 'Stream:a:b', 'stream:a:b:p', 'stream:a:b:p01', 'stream:a:b:p1:p2', 'pre:stream:a:b', 'stream:a:b:q1'])(
    '%p is neither a stream nor a partition stream',
    (name) => {
      expect(parsePartitionStreamName(name)).toBeNull();
      expect(() => logicalStreamOf(name)).toThrow(OutboxValidationError);
    },
  );

  test('partition names round-trip; a one-partition stream is named as the stream', () => {
    expect(partitionStreamNames('stream:a:b', 1)).toEqual(['stream:a:b']);
    expect(partitionStreamNames('stream:a:b', 3)).toEqual(['stream:a:b:p0', 'stream:a:b:p1', 'stream:a:b:p2']);
    for (const [p, name] of partitionStreamNames('stream:a:b', 3).entries()) {
      expect(parsePartitionStreamName(name)).toEqual({ stream: 'stream:a:b', partition: p });
    }
  });

  test('a key always lands in the same partition, within range', () => {
    for (const key of ['contract-1', 'contract-2', 'ü']) {
      expect(partitionFor(key, 4)).toBe(partitionFor(key, 4));
      expect(partitionFor(key, 4)).toBeGreaterThanOrEqual(0);
      expect(partitionFor(key, 4)).toBeLessThan(4);
      expect(partitionFor(key, 1)).toBe(0);
    }
  });
});

describe('stream names: Redis keys', () => {
  test('stream keys carry the prefix; side keys hash-tag the whole stream key', () => {
    expect(redisStreamKey('stream:a:b:p1', 'test:')).toBe('test:stream:a:b:p1');
    expect(redisStreamKeys('stream:a:b', 2, 'test:')).toEqual(['test:stream:a:b:p0', 'test:stream:a:b:p1']);
    expect(streamMetaKey('test:stream:a:b')).toBe('{test:stream:a:b}:meta');
    expect(streamDedupeKey('test:stream:a:b')).toBe('{test:stream:a:b}:dedupe');
  });

  test('a key maps back to its partition stream only under its own prefix', () => {
    expect(partitionStreamOfKey('test:stream:a:b:p1', 'test:')).toBe('stream:a:b:p1');
    expect(partitionStreamOfKey('stream:a:b', '')).toBe('stream:a:b');
    expect(partitionStreamOfKey('other:stream:a:b', 'test:')).toBeNull();
    expect(partitionStreamOfKey('{test:stream:a:b}:meta', 'test:')).toBeNull();
    expect(partitionStreamOfKey('test:petcover:consumer-members:g', 'test:')).toBeNull();
  });

  test('SCAN patterns match the prefix literally', () => {
    expect(escapeRedisGlob('a*b?[c]\\')).toBe('a\\*b\\?\\[c\\]\\\\');
    expect(redisKeyPatterns('t*:')).toEqual(['t\\*:*', '{t\\*:*']);
    expect(redisStreamKeyPattern('t?:')).toBe('t\\?:stream:*');
  });
});

describe('STREAM_PARTITIONS', () => {
  test('parse and format are inverses', () => {
    const text = 'stream:a:b=4,stream:c:d=2';
    expect(parseStreamPartitions(text)).toEqual({ 'stream:a:b': 4, 'stream:c:d': 2 });
    expect(formatStreamPartitions(parseStreamPartitions(text))).toBe(text);
    expect(formatStreamPartitions({})).toBe('');
  });

  test.each(['stream:a=2', 'stream:a:b', 'stream:a:b=0', 'stream:a:b=1025', 'stream:a:b=x'])('%p is refused with the item named', (text) => {
    expect(() => parseStreamPartitions(text)).toThrow(text);
  });
});
