#!/usr/bin/env node
// `pnpm test [turbo args...]`: every package's tests through turbo with
// --continue, so one failing package does not hide the others' results, then
// a closing line summed over every package:
//   N passed, N failed, N skipped
// A package with a test script that reported nothing (jest crashed, or its
// build failed) counts as one failure, so the line is never green by omission.
// Counts come from tools/jest-summary-reporter.js through $JEST_SUMMARY_DIR
// (a temporary one unless the caller, e.g. .ci/run, sets it).
// `node tools/test-all.js --report <dir>` prints the summary of <dir> only
// (.ci/run: its closing line, after chaos).
'use strict';
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { spawnSync } = require('node:child_process');

const ROOT = path.resolve(__dirname, '..');

function packagesWithTests() {
  const dirs = [];
  for (const group of ['apps', 'packages']) {
    for (const entry of fs.readdirSync(path.join(ROOT, group))) dirs.push(path.join(ROOT, group, entry));
  }
  dirs.push(path.join(ROOT, 'chaos'), path.join(ROOT, 'bench'));
  return dirs.filter((dir) => {
    try {
      return Boolean(JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8')).scripts?.test);
    } catch {
      return false;
    }
  });
}

/** Prints one line per package and the closing total; returns the totals. */
function report(summaryDir, filtered) {
  const totals = { passed: 0, failed: 0, skipped: 0 };
  for (const dir of packagesWithTests()) {
    const name = path.basename(dir);
    const file = path.join(summaryDir, `${name}.json`);
    if (!fs.existsSync(file)) {
      if (filtered) continue;
      console.log(`  ${name}: reported nothing (its build or jest failed; see above) — counted as 1 failed`);
      totals.failed += 1;
      continue;
    }
    const summary = JSON.parse(fs.readFileSync(file, 'utf8'));
    console.log(`  ${name}: ${summary.passed} passed, ${summary.failed} failed, ${summary.skipped} skipped`);
    for (const key of Object.keys(totals)) totals[key] += summary[key];
  }
  console.log(`${totals.passed} passed, ${totals.failed} failed, ${totals.skipped} skipped`);
  return totals;
}

function main() {
  const args = process.argv.slice(2);
  if (args[0] === '--report') {
    const totals = report(args[1], false);
    process.exit(totals.failed > 0 || totals.passed === 0 ? 1 : 0);
  }
  const summaryDir = process.env.JEST_SUMMARY_DIR || fs.mkdtempSync(path.join(os.tmpdir(), 'petcover-test-summary-'));
  fs.mkdirSync(summaryDir, { recursive: true });
  const turbo = spawnSync(path.join(ROOT, 'node_modules', '.bin', 'turbo'), ['run', 'test', '--continue', ...args], {
    cwd: ROOT,
    stdio: 'inherit',
    env: { ...process.env, JEST_SUMMARY_DIR: summaryDir },
  });
  console.log('');
  const totals = report(summaryDir, args.some((arg) => arg.startsWith('--filter')));
  process.exit(turbo.status !== 0 || totals.failed > 0 || totals.passed === 0 ? 1 : 0);
}

main();
