import type { GroupDeclaration } from '../context.js';
import type { ConformanceGroup } from '../types.js';
import { allocateGroup } from './allocate.js';
import { dirtyGroup } from './dirty.js';
import { dmaGroup } from './dma.js';
import { errorsGroup } from './errors.js';
import { geometryGroup } from './geometry.js';
import { hotPlugGroup } from './hot-plug.js';
import { lifecycleGroup } from './lifecycle.js';
import { mapGroup } from './map.js';
import { msiGroup } from './msi.js';
import { rollbackGroup } from './rollback.js';
import { windowsGroup } from './windows.js';

/** Every group's declaration, by name; the suite declares them in `CONFORMANCE_GROUPS` order. */
export const groups: Readonly<Record<ConformanceGroup, GroupDeclaration>> = {
  geometry: geometryGroup,
  map: mapGroup,
  errors: errorsGroup,
  allocate: allocateGroup,
  windows: windowsGroup,
  msi: msiGroup,
  dma: dmaGroup,
  lifecycle: lifecycleGroup,
  rollback: rollbackGroup,
  hotPlug: hotPlugGroup,
  dirty: dirtyGroup,
};
