/**
 * The repository's jest preset (jest.preset.js, used by every package) gives
 * each checkout its own cache directory: with one shared cache, parallel
 * worktrees on one machine ran each other's files.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const PRESET = path.resolve(__dirname, '..', '..', '..', 'jest.preset.js');

function cacheDirectoryOf(presetFile: string): string {
  // eslint-disable-next-line @typescript-eslint/no-require-imports -- the preset is plain CommonJS, as jest loads it
  return (require(presetFile) as { cacheDirectory: string }).cacheDirectory;
}

test('each checkout gets its own jest cache directory under the temp dir, the same on every run', () => {
  const here = cacheDirectoryOf(PRESET);
  expect(path.dirname(here)).toBe(os.tmpdir());
  expect(path.basename(here)).toMatch(/^jest-petcover-[0-9a-f]{12}$/);

  // Another checkout: the same preset at another root.
  const otherRoot = fs.mkdtempSync(path.join(os.tmpdir(), 'petcover-other-checkout-'));
  try {
    fs.copyFileSync(PRESET, path.join(otherRoot, 'jest.preset.js'));
    const there = cacheDirectoryOf(path.join(otherRoot, 'jest.preset.js'));
    expect(path.dirname(there)).toBe(os.tmpdir());
    expect(there).not.toBe(here);
  } finally {
    fs.rmSync(otherRoot, { recursive: true, force: true });
  }

  jest.isolateModules(() => expect(cacheDirectoryOf(PRESET)).toBe(here));
});
