import { conformanceSuite } from '@ioas/conformance';
import * as vitest from 'vitest';
import { smmuOnSim } from './__fixtures__/smmu-on-sim.js';

// backend-smmu through the simulator's syscall face (the real ioctl bytes), both kernel interfaces.
conformanceSuite(vitest, 'smmu over sim syscalls: arm-smmuv3, type1v2', smmuOnSim('arm-smmuv3', 'type1'));
conformanceSuite(vitest, 'smmu over sim syscalls: x86-vtd, type1v2', smmuOnSim('x86-vtd', 'type1'));
conformanceSuite(vitest, 'smmu over sim syscalls: arm-smmuv3, iommufd', smmuOnSim('arm-smmuv3', 'iommufd'));
conformanceSuite(vitest, 'smmu over sim syscalls: x86-vtd, iommufd', smmuOnSim('x86-vtd', 'iommufd'));
// iommufd over IOMMUs with hardware dirty bits, which QEMU's lack: the dirty group's precise path.
conformanceSuite(vitest, 'smmu over sim syscalls: arm-smmuv3 with HTTU, iommufd', smmuOnSim('arm-smmuv3', 'iommufd', { hardwareDirty: true }));
conformanceSuite(vitest, 'smmu over sim syscalls: x86-vtd with SLADS, iommufd', smmuOnSim('x86-vtd', 'iommufd', { hardwareDirty: true }));
