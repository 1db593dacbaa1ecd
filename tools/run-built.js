#!/usr/bin/env node
// Usage: node tools/run-built.js <package dir>[,<more package dirs>] <built script> [args...]
// (the script's path is relative to the first package dir)
//
// Runs a built command of a workspace package (`pnpm events`,
// `check-pet-enrollment`, `db:migrate`, ...) without paying for a turbo run
// when nothing changed: turbo's cache check alone costs seconds, a stat of
// the sources a few milliseconds. The package and its workspace dependencies
// are rebuilt through turbo only when one of them is stale (no dist/, or a
// source file newer than its newest dist file). The script then runs in this
// very process (no second node start-up), with its own argv.
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const { spawnSync } = require('node:child_process');

const ROOT = path.resolve(__dirname, '..');
// The build task's inputs, as in turbo.json.
const INPUT_DIRS = ['src', 'drizzle'];
const INPUT_FILE = /^(package\.json|tsconfig.*\.json)$/;

function workspacePackages() {
  const byName = new Map();
  for (const group of ['apps', 'packages']) {
    const dir = path.join(ROOT, group);
    for (const entry of fs.readdirSync(dir)) byName.set(readManifest(path.join(dir, entry))?.name, path.join(dir, entry));
  }
  for (const single of ['chaos', 'bench']) byName.set(readManifest(path.join(ROOT, single))?.name, path.join(ROOT, single));
  byName.delete(undefined);
  return byName;
}

function readManifest(dir) {
  try {
    return JSON.parse(fs.readFileSync(path.join(dir, 'package.json'), 'utf8'));
  } catch {
    return undefined;
  }
}

/** The package dir and the dirs of every workspace package it depends on, transitively. */
function withWorkspaceDependencies(dir, packages, seen = new Set()) {
  if (seen.has(dir)) return seen;
  seen.add(dir);
  const manifest = readManifest(dir) ?? {};
  for (const [name, version] of Object.entries({ ...manifest.dependencies, ...manifest.devDependencies })) {
    if (String(version).startsWith('workspace:') && packages.has(name)) withWorkspaceDependencies(packages.get(name), packages, seen);
  }
  return seen;
}

function newestMtime(dir, filter = () => true) {
  let newest = 0;
  let entries;
  try {
    entries = fs.readdirSync(dir, { withFileTypes: true });
  } catch {
    return 0;
  }
  for (const entry of entries) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) newest = Math.max(newest, newestMtime(full, filter));
    else if (filter(entry.name)) newest = Math.max(newest, fs.statSync(full).mtimeMs);
  }
  return newest;
}

function isStale(dir) {
  const built = newestMtime(path.join(dir, 'dist'));
  if (built === 0) return true;
  let sources = 0;
  for (const name of fs.readdirSync(dir)) {
    if (INPUT_DIRS.includes(name)) sources = Math.max(sources, newestMtime(path.join(dir, name)));
    else if (INPUT_FILE.test(name)) sources = Math.max(sources, fs.statSync(path.join(dir, name)).mtimeMs);
  }
  return sources > built;
}

function main() {
  const [packageDirs, script, ...args] = process.argv.slice(2);
  if (!packageDirs || !script) {
    console.error('usage: node tools/run-built.js <package dir>[,<package dir>...] <built script> [args...]');
    process.exit(64);
  }
  const dirs = packageDirs.split(',').map((d) => path.resolve(ROOT, d));
  const packages = workspacePackages();
  const names = [];
  const needed = new Set();
  for (const dir of dirs) {
    const manifest = readManifest(dir);
    if (!manifest) {
      console.error(`run-built: no package.json in ${dir}`);
      process.exit(64);
    }
    names.push(manifest.name);
    withWorkspaceDependencies(dir, packages, needed);
  }
  if ([...needed].some(isStale)) {
    // stdout stays the command's own: build output goes to stderr.
    const turbo = spawnSync(
      path.join(ROOT, 'node_modules', '.bin', 'turbo'),
      ['run', 'build', ...names.map((name) => `--filter=${name}...`), '--output-logs=errors-only', '--log-prefix=none'],
      { cwd: ROOT, stdio: ['ignore', 2, 2] },
    );
    if (turbo.status !== 0) {
      console.error(`run-built: building ${names.join(', ')} failed (see above)`);
      process.exit(turbo.status ?? 1);
    }
  }
  const target = path.join(dirs[0], script);
  process.argv = [process.argv[0], target, ...args];
  require(target);
}

main();
