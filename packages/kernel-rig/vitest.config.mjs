// Plain JavaScript on purpose: in the guest the repository is read-only, and vite writes a
// compiled copy next to a TypeScript config. The cache goes to the guest's tmpfs.
import { defineConfig } from 'vitest/config';

export default defineConfig({
  cacheDir: '/tmp/vitest-cache',
  test: {
    include: ['src/**/*.test.ts'],
    testTimeout: 600_000,
    hookTimeout: 120_000,
    pool: 'forks',
    fileParallelism: false,
  },
});
