#!/usr/bin/env node
// The bin pnpm links at install time, before dist/ is built: a committed file,
// so a fresh install links it without "Failed to create bin" warnings.
require('../dist/main.js');
