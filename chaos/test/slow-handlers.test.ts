import { misbehaveOnFirstCall, slowHandlerBehaviour, slowHandlerOptionsFromEnv } from '../src/slow-handlers';

const ids = Array.from({ length: 4000 }, (_, i) => `0190b7c2-5f3a-7d21-8c4e-${String(i).padStart(12, '0')}`);
const options = { seed: 5, slowFraction: 0.05, hangFraction: 0.05, handlerTimeoutMs: 20 };

describe('slow and hung handler calls', () => {
  test('a seeded, stable fraction of events is slow, another hung; none with fractions 0', () => {
    const slow = ids.filter((id) => slowHandlerBehaviour(id, options) === 'slow');
    const hung = ids.filter((id) => slowHandlerBehaviour(id, options) === 'hung');
    for (const chosen of [slow, hung]) {
      expect(chosen.length).toBeGreaterThan(120);
      expect(chosen.length).toBeLessThan(280);
    }
    expect(slow.filter((id) => hung.includes(id))).toEqual([]);
    expect(ids.filter((id) => slowHandlerBehaviour(id, options) === 'slow')).toEqual(slow);
    expect(ids.some((id) => slowHandlerBehaviour(id, { ...options, slowFraction: 0, hangFraction: 0 }) !== null)).toBe(false);
  });

  test('a slow first call ends when the consumer aborts it; a hung one ignores the abort; retries behave', async () => {
    const slowId = ids.find((id) => slowHandlerBehaviour(id, options) === 'slow')!;
    const hungId = ids.find((id) => slowHandlerBehaviour(id, options) === 'hung')!;

    const aborted = new AbortController();
    const slow = misbehaveOnFirstCall(slowId, 1, aborted.signal, options);
    const hung = misbehaveOnFirstCall(hungId, 1, aborted.signal, options);
    const hungSettled = jest.fn();
    hung.then(hungSettled, hungSettled);
    aborted.abort(new Error('deadline'));
    await expect(slow).rejects.toMatchObject({ name: 'AbortError' });
    // The slow call settled after the abort; the hung one has not, and never will.
    await new Promise((resolve) => setImmediate(resolve));
    expect(hungSettled).not.toHaveBeenCalled();

    const fresh = new AbortController().signal;
    await expect(misbehaveOnFirstCall(slowId, 2, fresh, options)).resolves.toBeUndefined();
    await expect(misbehaveOnFirstCall(hungId, 2, fresh, options)).resolves.toBeUndefined();
  });

  test('env: fractions and deadline are read and checked', () => {
    expect(slowHandlerOptionsFromEnv({ CHAOS_SLOW_FRACTION: '0.01', CHAOS_HANG_FRACTION: '0.02', CHAOS_HANDLER_TIMEOUT_MS: '3000' }, 7)).toEqual({
      seed: 7,
      slowFraction: 0.01,
      hangFraction: 0.02,
      handlerTimeoutMs: 3000,
    });
    expect(slowHandlerOptionsFromEnv({}, 1)).toMatchObject({ slowFraction: 0, hangFraction: 0 });
    expect(() => slowHandlerOptionsFromEnv({ CHAOS_HANG_FRACTION: '2' }, 1)).toThrow('CHAOS_HANG_FRACTION must be between 0 and 1 (got "2")');
  });
});
