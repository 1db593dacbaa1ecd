#!/usr/bin/env node
// Entry point of events-publisher; built out by its own issue.
console.error('events-publisher: not built yet');
process.exit(1);
