import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { describe, expect, it } from 'vitest';
import { SimMemory } from './sim-memory.js';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

/** Collects, then lets the FinalizationRegistry callbacks run. */
async function collect(): Promise<void> {
  for (let round = 0; round < 3; round++) {
    gc();
    await new Promise((resolve) => setTimeout(resolve, 0));
  }
}

describe('SimMemory registered buffers', () => {
  it('keeps a registered buffer addressable while it lives, at one address, its bytes shared', async () => {
    const memory = new SimMemory();
    const buffer = new Uint8Array(8192);
    const address = memory.register(buffer);
    expect(memory.register(buffer)).toBe(address);
    await collect();
    memory.write(address + 4096n, new Uint8Array([7]));
    expect(buffer[4096]).toBe(7);
    expect(memory.region(address)?.length).toBe(8192n);
  });

  it('drops the region of a buffer the collector took, as the process memory goes with its owner', async () => {
    const memory = new SimMemory();
    const addresses = Array.from({ length: 64 }, () => memory.register(new Uint8Array(1 << 20)));
    await collect();
    // 64 MiB of buffers held only by the simulator before: none is left.
    expect(addresses.filter((address) => memory.region(address) !== undefined)).toEqual([]);
    expect(() => memory.read(addresses[0]!, 1)).toThrow(/EFAULT|bad address/);
  });
});
