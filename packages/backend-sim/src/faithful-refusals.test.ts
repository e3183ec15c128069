// What the simulator's faces refuse, as the kernel (or the real backend in front of it) refuses it:
// issue 13's "accepted when it must be refused" and "trace left after a fault" items.
import { Container, ERRNO, IoasError } from '@ioas/core';
import { describe, expect, it } from 'vitest';
import { sim } from './sim-backend.js';

const MiB = 0x10_0000n;

describe('the p4080 Backend face refuses what backend-pamu refuses', () => {
  it('refuses an unmap that does not cover whole windows, before touching the domain (backend-pamu: misaligned)', async () => {
    const backend = sim({ platform: 'p4080' });
    const simulator = backend.simulator;
    const group = simulator.vfioGroups()[0]!;
    const device = group.devices.find((candidate) => candidate.driver === 'vfio-pci')!;
    using container = await Container.open({ backend, groups: [group.id] });
    container.setGeometry({ aperture: { start: 0n, size: 1024n * MiB }, windowCount: 16 });
    const memory = simulator.memory.allocate(64n * MiB, 64n * MiB);
    container.map({ iova: 0n, memory: { address: memory.address, length: 64n * MiB, contiguousPageSize: 64n * MiB } });
    const error = (() => {
      try {
        container.unmap({ iova: 0x1000n, size: 0x1000n });
      } catch (caught) {
        return caught;
      }
      return undefined;
    })();
    expect(IoasError.isInstance(error) && error.code, String(error)).toBe('misaligned');
    // The record and the hardware still agree: the window is mapped, DMA goes through.
    expect(container.mappings().map((mapping) => mapping.iova)).toEqual([{ start: 0n, last: 64n * MiB - 1n }]);
    expect(device.dmaWrite(0x1000n, new Uint8Array([1, 2, 3]))).toBe(true);
    expect(simulator.faults).toEqual([]);
    void ERRNO;
  });
});
