import { InvalidConsumerModuleError, resolveConsumerModule } from '../src';

describe('resolveConsumerModule', () => {
  const module = { streams: [{ name: 'stream:billing:invoices', partitions: 2 }], register: () => undefined };

  test('takes the consumerModule export, else the default export', () => {
    expect(resolveConsumerModule({ consumerModule: module }, 'a.js')).toBe(module);
    expect(resolveConsumerModule({ default: module }, 'b.js')).toBe(module);
  });

  test('refuses a wrong shape naming the module and the problem', () => {
    const cases: [unknown, RegExp][] = [
      [{}, /m\.js is invalid: `register` is not a function/],
      [{ consumerModule: { ...module, streams: [] } }, /`streams` must be a non-empty array/],
      [{ consumerModule: { ...module, streams: [{ name: 'invoices' }] } }, /stream name "invoices" does not match/],
      [{ consumerModule: { ...module, streams: [{ name: 'stream:a:b', partitions: 0 }] } }, /partitions must be a positive integer/],
      [{ consumerModule: { ...module, migrations: 'all' } }, /`migrations` must be an array/],
    ];
    for (const [exported, message] of cases) {
      expect(() => resolveConsumerModule(exported, 'm.js')).toThrow(InvalidConsumerModuleError);
      expect(() => resolveConsumerModule(exported, 'm.js')).toThrow(message);
    }
  });
});
