/**
 * The running app's version, from the package.json next to its `dist/`
 * (present in the repo and in the container image). Shown by `events nodes`
 * so a rolling deploy shows which replicas run which build.
 */
import fs from 'node:fs';
import path from 'node:path';

/** `distDir` is the app's `__dirname` in `dist/`; 'unknown' when no package.json is found. */
export function readAppVersion(distDir: string): string {
  try {
    const manifest = JSON.parse(fs.readFileSync(path.join(distDir, '..', 'package.json'), 'utf8')) as { version?: unknown };
    return typeof manifest.version === 'string' ? manifest.version : 'unknown';
  } catch {
    return 'unknown';
  }
}
