import { conformanceSuite } from '@ioas/conformance';
import * as vitest from 'vitest';
import { pamuOnSim } from './__fixtures__/pamu-on-sim.js';

// backend-pamu through the simulator's P4080 syscall face: PowerPC ioctl numbers, big-endian
// structs, and the SDK driver's silent failures reproduced.
conformanceSuite(vitest, 'pamu over sim syscalls: p4080, sdk-4.x (type 7)', pamuOnSim().target);
conformanceSuite(vitest, 'pamu over sim syscalls: p4080, sdk-3.12 (type 2)', pamuOnSim({ pamuType: 2, profile: 'sdk-3.12' }).target);
