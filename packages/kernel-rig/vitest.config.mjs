// Plain JavaScript on purpose: in the guest the repository is read-only, and vite writes a
// compiled copy next to a TypeScript config. The cache goes to the guest's tmpfs.
import { BaseSequencer } from 'vitest/node';
import { defineConfig } from 'vitest/config';

/**
 * The files in one fixed order, whatever their sizes or timings: real-kernel.test.ts first, since
 * it captures the guest's sysfs tree as booted (fixtures/sysfs-*.json), before other files bind the
 * second edu (on arm64 its IOMMU group appears on bind and stays after unbinding); then by name.
 */
class RigSequencer extends BaseSequencer {
  async sort(files) {
    const rank = (file) => (file.moduleId.endsWith('/real-kernel.test.ts') ? 0 : 1);
    return [...files].sort((a, b) => rank(a) - rank(b) || a.moduleId.localeCompare(b.moduleId));
  }
}

export default defineConfig({
  cacheDir: '/tmp/vitest-cache',
  test: {
    include: ['src/**/*.test.ts'],
    testTimeout: 600_000,
    hookTimeout: 120_000,
    pool: 'forks',
    fileParallelism: false,
    // One process for every file, its modules loaded once: under TCG each file's own imports and
    // transforms took 20 s or more on arm64, where a lane must stay under 8 minutes in all.
    isolate: false,
    sequence: { sequencer: RigSequencer },
  },
});
