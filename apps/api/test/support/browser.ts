/**
 * Real headless Chromium for page tests (the Debian `chromium` package,
 * driven by playwright-core; `.ci/run` installs it when missing). Each test
 * file gets a screenshot directory, printed once, and `shoot` saves one PNG
 * per step there, numbered in order, so a failure can be looked at.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';

const CANDIDATES = ['/usr/bin/chromium', '/usr/bin/chromium-browser', '/usr/bin/google-chrome', '/usr/bin/google-chrome-stable'];

/** CHROMIUM_PATH, else the first Chromium found in the usual places. Throws naming the fix. */
export function chromiumPath(): string {
  const found = [process.env.CHROMIUM_PATH, ...CANDIDATES].find((candidate): candidate is string => Boolean(candidate) && fs.existsSync(candidate as string));
  if (!found) throw new Error(`no Chromium found (tried CHROMIUM_PATH, ${CANDIDATES.join(', ')}); install it: apt-get install -y chromium (bash .ci/run does)`);
  return found;
}

export async function launchBrowser(): Promise<Browser> {
  // --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start.
  return chromium.launch({ executablePath: chromiumPath(), headless: true, args: ['--no-sandbox', '--disable-dev-shm-usage'] });
}

/** A phone-sized viewport (the pages must work at this width). */
export const PHONE_VIEWPORT = { width: 390, height: 844 };

export interface Screenshots {
  dir: string;
  /** Saves a full-page PNG named `<nn>-<step>.png`; returns its path. */
  shoot(page: Page, step: string): Promise<string>;
}

/** A fresh directory under the system temp dir for `suite`, printed so the run's log says where to look. */
export function screenshotsFor(suite: string): Screenshots {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `petcover-screenshots-${suite}-`));
  process.stdout.write(`screenshots of ${suite}: ${dir}\n`);
  let count = 0;
  return {
    dir,
    async shoot(page, step) {
      count += 1;
      const file = path.join(dir, `${String(count).padStart(2, '0')}-${step.replace(/[^a-z0-9-]+/gi, '-')}.png`);
      await page.screenshot({ path: file, fullPage: true });
      return file;
    },
  };
}
