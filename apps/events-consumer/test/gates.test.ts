import path from 'node:path';
import { domainMigrations } from '@petcover/domain';
import { outboxMigrations } from '@petcover/outbox';
import { describeAppGates } from '@petcover/outbox/testing/app-gates';

describeAppGates({
  name: 'events-consumer',
  main: path.join(__dirname, '..', 'dist', 'main.js'),
  args: ['start'],
  portVariable: 'HEALTH_PORT',
  migrations: [outboxMigrations, domainMigrations],
  env: { CONSUMER_GROUP: 'gates' },
});
