import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['src/**/*.test.ts'],
    // Property tests render hundreds of random snapshots: seconds on a quiet machine, several times
    // that while turbo runs every package's suite on two cores. A hang still fails, at a minute.
    testTimeout: 60_000,
  },
});
