import { conformanceSuite } from '@ioas/conformance';
import * as vitest from 'vitest';
import { simTarget } from './__fixtures__/sim-target.js';

// The one behaviour suite, on the simulator's Backend face, for every preset and kernel interface.
conformanceSuite(vitest, 'sim p4080 (PAMU type 2)', simTarget('p4080'));
conformanceSuite(vitest, 'sim arm-smmuv3 (type1v2)', simTarget('arm-smmuv3'));
conformanceSuite(vitest, 'sim x86-vtd (type1v2)', simTarget('x86-vtd'));
conformanceSuite(vitest, 'sim arm-smmuv3 (iommufd)', simTarget('arm-smmuv3', 'iommufd'));
conformanceSuite(vitest, 'sim x86-vtd (iommufd)', simTarget('x86-vtd', 'iommufd'));
// An IOMMU with dirty bits (VT-d SLADS, SMMUv3 HTTU), which QEMU's do not emulate: precise dirty tracking.
conformanceSuite(vitest, 'sim arm-smmuv3 with HTTU (iommufd)', simTarget('arm-smmuv3', 'iommufd', { hardwareDirty: true }));
conformanceSuite(vitest, 'sim x86-vtd with SLADS (iommufd)', simTarget('x86-vtd', 'iommufd', { hardwareDirty: true }));
