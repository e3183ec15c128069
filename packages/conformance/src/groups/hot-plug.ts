import { ERRNO, IoasError, type Container, type Mapping } from '@ioas/core';
import { codeExpecter, prepare, type GroupDeclaration } from '../context.js';
import type { ConformanceDevice, ConformanceExpect, ConformanceTarget } from '../types.js';

/** What attach and detach must leave as it was when they fail. */
function observable(container: Container) {
  return { members: container.members(), geometry: container.geometry(), reserved: container.reserved(), usable: container.usable(), mappings: container.mappings(), stats: container.stats() };
}

/** Device DMA at `offset` into `mapping`, both ways, the bytes checked in host memory. */
function checkDma(expect: ConformanceExpect, target: ConformanceTarget, device: ConformanceDevice, mapping: Mapping, offset: bigint, label: string): void {
  const payload = new TextEncoder().encode(`DMA from ${label}`);
  expect(device.dmaWrite(mapping.iova.start + offset, payload), `${label} writes at offset ${offset}`).toBe(true);
  expect(target.readMemory(mapping.memory, offset, payload.length), `what ${label} wrote`).toEqual(payload);
  expect(device.dmaRead(mapping.iova.start + offset, payload.length), `${label} reads back`).toEqual(payload);
}

/**
 * The `hotPlug` group: groups and devices joining and leaving a live container. A second member
 * attached with mappings live shares them (DMA from both devices), the first detached leaves the
 * mappings to the second, a newcomer whose reserved region holds a mapping is refused with nothing
 * changed, the last member cannot leave, and a fault at every kernel call of attach and detach
 * leaves nothing behind. Backends without `capabilities.hotPlug` refuse with `unsupported`.
 */
export const hotPlugGroup: GroupDeclaration = ({ runner: { it, expect }, target }) => {
  const expectCode = codeExpecter(expect);
  const hotPlug = target.hotPlug;

  it('refuses attach and detach with unsupported where members are fixed', async () => {
    using container = await target.open();
    if (container.capabilities.hotPlug === true) return;
    expectCode(() => container.attach({ groups: [0] }), 'unsupported');
    expectCode(() => container.detach({ groups: [0] }), 'unsupported');
  });

  it('attaches a second member with mappings live: both devices DMA through the shared mapping; the first leaves, the second keeps it', async () => {
    if (hotPlug === undefined) return;
    using container = await target.open();
    if (container.capabilities.hotPlug !== true) return;
    const { unit, pageSize } = prepare(container);
    const memory = target.memory(unit, pageSize);
    const mapping = container.map({ memory });
    const first = target.device?.();
    const second = hotPlug.second();
    const joined = container.attach(second.members);
    expect(joined.devices.length).toBeGreaterThan(0);
    expect(joined.devices.every((device) => container.members().devices.includes(device)), 'the newcomers are members').toBe(true);
    expect(container.mappings()).toEqual([mapping]);
    if (first !== undefined) checkDma(expect, target, first, mapping, 0x100n, 'the first device');
    if (second.device !== undefined) checkDma(expect, target, second.device, mapping, 0x200n, 'the second device');
    const left = container.detach(hotPlug.first());
    expect(container.members().devices.some((device) => left.devices.includes(device))).toBe(false);
    expect(container.mappings()).toEqual([mapping]);
    if (second.device !== undefined) checkDma(expect, target, second.device, mapping, 0x300n, 'the second device');
    // The device that left no longer reaches the container's mappings.
    if (first !== undefined) expect(first.dmaWrite(mapping.iova.start + 0x400n, new Uint8Array([1]))).toBe(false);
    expect(container.unmap(mapping)).toBe(mapping.memory.length);
  });

  it('refuses a newcomer whose reserved region holds a mapping, before the kernel, changing nothing', async () => {
    const conflicting = hotPlug?.conflicting;
    if (conflicting === undefined) return;
    using container = await target.open();
    if (container.capabilities.hotPlug !== true) return;
    const { pageSize } = prepare(container);
    const { members, inside } = conflicting();
    const mapping = container.map({ iova: inside.start, memory: target.memory(inside.size, pageSize) });
    const before = observable(container);
    const files = target.kernelState?.().openFiles;
    const error = expectCode(() => container.attach(members), 'reserved');
    expect(error.message).toContain(`mapping 0x${mapping.iova.start.toString(16)}`);
    expect(observable(container)).toEqual(before);
    if (files !== undefined) expect(target.kernelState!().openFiles).toBe(files);
    // Whether the newcomer may join once the mapping is gone is the kernel's to say: a device with a
    // `direct` region is never assigned (docs/kernel-rules.md#devices-that-need-a-direct-mapping-cannot-be-assigned).
    container.unmap(mapping);
  });

  it('refuses to detach the last member, and a member that is not in the container', async () => {
    if (hotPlug === undefined) return;
    using container = await target.open();
    if (container.capabilities.hotPlug !== true) return;
    expectCode(() => container.detach(hotPlug.first()), 'in-use');
    const second = hotPlug.second();
    expectCode(() => container.detach(second.members), 'not-found');
    container.attach(second.members);
    expectCode(() => container.attach(second.members), 'in-use');
    container.detach(second.members);
    expect(container.members().devices.length).toBeGreaterThan(0);
  });

  it('leaves nothing behind when any kernel call of attach or detach fails', async () => {
    const inject = target.injectFault;
    const state = target.kernelState;
    if (hotPlug === undefined || inject === undefined || state === undefined) return;
    using container = await target.open();
    if (container.capabilities.hotPlug !== true) return;
    const { unit, pageSize } = prepare(container);
    container.map({ memory: target.memory(unit, pageSize) });
    const second = hotPlug.second();
    const maxSteps = 64;
    for (const operation of ['attach', 'detach'] as const) {
      const before = observable(container);
      const files = state().openFiles;
      for (let step = 0; ; step++) {
        expect(step, `${operation} still fails with no fault left to inject`).toBeLessThan(maxSteps);
        inject(ERRNO.EIO, step);
        try {
          if (operation === 'attach') container.attach(second.members);
          else container.detach(hotPlug.first());
        } catch (error) {
          expect(IoasError.isInstance(error), String(error)).toBe(true);
          expect(observable(container), `after ${operation} failed at kernel call ${step + 1}`).toEqual(before);
          expect(state().openFiles, `files open after ${operation} failed at kernel call ${step + 1}`).toBe(files);
          continue;
        }
        target.clearFaults?.();
        break;
      }
      // Still usable: it maps and unmaps.
      const mapping = container.map({ memory: target.memory(unit, pageSize) });
      container.unmap(mapping);
    }
  });
};
