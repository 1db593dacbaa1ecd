// Rendering overlays, installing from the lockfile and `pnpm deploy` are slow
// on a loaded machine; each test states its own deadline.
module.exports = { ...require('../jest.preset.js'), testTimeout: 300_000 };
