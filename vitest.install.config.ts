import { defineConfig } from 'vitest/config';

// The README-contract check (`npm run test:install`): a fresh clone's `npm ci`, its start command, and a
// global install of the packed tarball. Minutes of npm work in one file, in order.
export default defineConfig({
  test: {
    include: ['test/install/**/*.test.ts'],
    fileParallelism: false,
    sequence: { concurrent: false },
    testTimeout: 20 * 60_000,
    hookTimeout: 5 * 60_000,
    reporters: ['default'],
  },
});
