// Bring a field failure home: record every syscall a VFIO program makes into a trace, one line in
// your VMM, then replay the trace on the simulator with `ioas replay`. Here the program opens a
// container and maps guest RAM around the MSI window.
//
//   node examples/field-trace.mjs [--trace FILE]              on a simulated ARM SMMUv3
//   node examples/field-trace.mjs --group 12 [--trace FILE]   on real hardware, VFIO group 12 (root)
//   ioas replay FILE                                          then, on any machine
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { createSimulator, simSyscalls } from '@ioas/backend-sim';
import { smmu } from '@ioas/backend-smmu';
import { Container, formatRange, IoasError } from '@ioas/core';
import { recordSyscalls } from '@ioas/trace';
import { allocateDmaMemory, libcSyscalls } from '@ioas/vfio';

const { values } = parseArgs({ options: { group: { type: 'string' }, trace: { type: 'string', default: join(tmpdir(), 'ioas-field.jsonl') } } });
const MiB = 1n << 20n;
const machine = values.group === undefined ? createSimulator({ platform: 'arm-smmuv3' }) : undefined;
const group = values.group === undefined ? 4 : Number(values.group);

// The one line: wrap the syscalls the backend would use, and give the backend the wrapped ones.
const syscalls = recordSyscalls(machine === undefined ? libcSyscalls() : simSyscalls(machine), { path: values.trace, label: 'examples/field-trace.mjs' });
const backend = smmu({ syscalls, ...(machine === undefined ? {} : { arch: 'generic', littleEndian: true }) });
try {
  const container = await Container.open({ backend, groups: [group] });
  try {
    const ram = allocateDmaMemory(syscalls, 64n * MiB, 2n * MiB);
    const { mappings } = container.mapRegion({ iova: 0n, memory: ram });
    console.log(`mapped ${mappings.map((mapping) => formatRange(mapping.iova)).join(', ')}`);
    try {
      // Core refuses this before any syscall (the range is mapped already): a trace holds only
      // what reached the kernel, so this refusal is not in it.
      container.map({ iova: 0n, memory: { address: ram.address, length: 0x1000n } });
    } catch (error) {
      if (!IoasError.isInstance(error)) throw error;
      console.log(`refused: ${error.code}`);
    }
  } finally {
    container.close();
  }
} finally {
  syscalls.stop();
}
console.log(`${syscalls.calls} calls recorded in ${values.trace}; replay them with: ioas replay ${values.trace}`);
