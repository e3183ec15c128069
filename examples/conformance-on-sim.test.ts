import { conformanceSuite } from '@ioas/conformance';
import * as vitest from 'vitest';
import { Container } from '@ioas/core';
import { sim } from '@ioas/backend-sim';
import { simHostMemory } from '@ioas/backend-sim/testing';

const backend = sim({ platform: 'arm-smmuv3' });
conformanceSuite(vitest, 'my platform', {
  open: () => Container.open({ backend, groups: [4] }),
  // memory(length, pageSize), readMemory, writeMemory on the simulated machine
  ...simHostMemory(backend.simulator),
});
