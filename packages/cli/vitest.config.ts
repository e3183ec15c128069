import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['src/**/*.test.ts'],
    // Each test runs the built binary, often several times: a node start is slow on a busy 2-core VM.
    testTimeout: 60_000,
  },
});
