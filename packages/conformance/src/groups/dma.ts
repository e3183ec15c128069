import { freeIova, prepare, type GroupDeclaration } from '../context.js';

/**
 * The `dma` group: device DMA landing in host memory through a mapping, and faulting elsewhere or
 * through a read-only mapping.
 */
export const dmaGroup: GroupDeclaration = ({ runner: { it, expect }, target }) => {
  it('lands device DMA in host memory through a mapping, and faults elsewhere leaving memory untouched', async () => {
    if (target.device === undefined) return;
    using container = await target.open();
    const { unit, pageSize } = prepare(container);
    const memory = target.memory(unit, pageSize);
    const mapping = container.map({ memory });
    const device = target.device();
    const payload = new TextEncoder().encode('hello from the device');
    expect(device.dmaWrite(mapping.iova.start + 0x100n, payload)).toBe(true);
    expect(target.readMemory(memory, 0x100n, payload.length)).toEqual(payload);
    target.writeMemory(memory, 0x800n, payload);
    expect(device.dmaRead(mapping.iova.start + 0x800n, payload.length)).toEqual(payload);
    const faults = device.faultCount();
    const unmapped = freeIova(container, unit);
    expect(device.dmaWrite(unmapped, payload)).toBe(false);
    expect(device.faultCount()).toBe(faults + 1);
    container.unmap(mapping);
    expect(device.dmaWrite(mapping.iova.start + 0x100n, new Uint8Array(payload.length))).toBe(false);
    expect(target.readMemory(memory, 0x100n, payload.length)).toEqual(payload);
  });

  it('faults a device write through a read-only mapping', async () => {
    if (target.device === undefined) return;
    using container = await target.open();
    const { unit, pageSize } = prepare(container);
    const memory = target.memory(unit, pageSize);
    const mapping = container.map({ memory, access: { read: true, write: false } });
    const device = target.device();
    expect(device.dmaRead(mapping.iova.start, 16)).toBeDefined();
    expect(device.dmaWrite(mapping.iova.start, new Uint8Array([1, 2, 3]))).toBe(false);
    expect(target.readMemory(memory, 0n, 3)).toEqual(new Uint8Array(3));
  });
};
