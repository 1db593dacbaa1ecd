import path from 'node:path';
import { domainMigrations } from '@petcover/domain';
import { outboxMigrations } from '@petcover/outbox';
import { describeAppGates } from '@petcover/outbox/testing/app-gates';

describeAppGates({
  name: 'api',
  main: path.join(__dirname, '..', 'dist', 'main.js'),
  args: [],
  portVariable: 'PORT',
  migrations: [outboxMigrations, domainMigrations],
  // Owners are served without Redis: it is reported, not blocking (issue 13).
  redisBlocksReadiness: false,
});
