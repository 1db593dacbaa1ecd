import path from 'node:path';
import { outboxMigrations } from '@petcover/outbox';
import { describeAppGates } from '@petcover/outbox/testing/app-gates';

describeAppGates({
  name: 'events-publisher',
  main: path.join(__dirname, '..', 'dist', 'main.js'),
  args: ['start'],
  portVariable: 'HEALTH_PORT',
  migrations: [outboxMigrations],
});
