// Shared jest settings. Each package's jest.config.js spreads this.
// Workspace packages are mapped to their TypeScript sources so tests never run
// against a stale dist/. Type checking is `pnpm typecheck`'s job; ts-jest only
// transpiles (isolatedModules) to keep test start-up fast.
const crypto = require('node:crypto');
const os = require('node:os');
const path = require('node:path');

const root = __dirname;

// Jest's default cache (<tmpdir>/jest_0) is shared by every checkout on the
// machine, and its haste map is keyed by the config, not by where the files
// are: parallel worktrees ran each other's files (one worktree's chaos test ran
// another's chaos/src/run.ts). A cache per checkout, named by a hash of its
// root path, keeps them apart; --cacheDirectory on the command line still wins.
const cacheDirectory = path.join(os.tmpdir(), `jest-petcover-${crypto.createHash('sha256').update(root).digest('hex').slice(0, 12)}`);

module.exports = {
  cacheDirectory,
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
