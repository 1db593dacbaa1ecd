// Shared jest settings. Each package's jest.config.js spreads this.
// Workspace packages are mapped to their TypeScript sources so tests never run
// against a stale dist/. Type checking is `pnpm typecheck`'s job; ts-jest only
// transpiles (isolatedModules) to keep test start-up fast.
const path = require('node:path');

const root = __dirname;
module.exports = {
  testEnvironment: 'node',
  testMatch: ['<rootDir>/test/**/*.test.ts'],
  transform: {
    '^.+\\.ts$': ['ts-jest', { tsconfig: path.join(root, 'tsconfig.base.json'), diagnostics: false }],
  },
  moduleNameMapper: {
    '^@petcover/outbox$': path.join(root, 'packages/outbox/src/index.ts'),
    '^@petcover/outbox/testing$': path.join(root, 'packages/outbox/src/testing/index.ts'),
    '^@petcover/outbox/testing/app-gates$': path.join(root, 'packages/outbox/src/testing/app-gates.ts'),
    '^@petcover/outbox/verify$': path.join(root, 'packages/outbox/src/verify/index.ts'),
    '^@petcover/domain$': path.join(root, 'packages/domain/src/index.ts'),
    '^@petcover/domain/testing$': path.join(root, 'packages/domain/src/testing/index.ts'),
    '^@petcover/service-kit$': path.join(root, 'packages/service-kit/src/index.ts'),
    '^@petcover/service-kit/tracing$': path.join(root, 'packages/service-kit/src/tracing.ts'),
  },
  testTimeout: 60_000,
  reporters: ['default', path.join(root, 'tools/jest-summary-reporter.js')],
};
