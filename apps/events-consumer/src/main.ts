#!/usr/bin/env node
// Entry point of events-consumer; built out by its own issue.
console.error('events-consumer: not built yet');
process.exit(1);
