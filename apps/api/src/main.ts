#!/usr/bin/env node
// Entry point of api; built out by its own issue.
console.error('api: not built yet');
process.exit(1);
