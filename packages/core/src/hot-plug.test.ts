import { describe, expect, it } from 'vitest';
import { scriptedBackend, SMMU_RESERVED, type ScriptedOptions } from './__fixtures__/scripted-backend.js';
import { Container } from './container.js';
import { ERRNO } from './errno.js';
import { IoasError } from './errors.js';
import type { BackendV1 } from './spi.js';
import type { ReservedRange } from './types.js';

const MiB = 1n << 20n;
const GiB = 1n << 30n;

/** An RMRR-style direct region of the newcomer (group 1), inside where guest RAM goes. */
const RMRR: ReservedRange = { start: 0x7d00_0000n, last: 0x7dff_ffffn, kind: 'direct', source: 'sysfs', origin: '/sys/kernel/iommu_groups/1/reserved_regions' };
const RELAXABLE: ReservedRange = { start: 0n, last: 0xff_ffffn, kind: 'direct-relaxable', source: 'sysfs', origin: '/sys/kernel/iommu_groups/2/reserved_regions' };

const GROUPS: NonNullable<ScriptedOptions['groups']> = {
  0: { devices: ['0000:00:03.0'] },
  1: { devices: ['0000:00:10.0'], reserved: [RMRR] },
  2: { devices: ['0000:00:1f.0', '0000:00:1f.2'], reserved: [RELAXABLE] },
  // Behind a second IOMMU with a 32-bit input range, which the backend can tell beforehand.
  3: { devices: ['0000:01:00.0'], ranges: [{ start: 0n, last: 0xffff_ffffn }], previewRanges: true },
  // The same, but the backend cannot tell: only the kernel refuses.
  4: { devices: ['0000:02:00.0'], ranges: [{ start: 0n, last: 0xffff_ffffn }] },
};

async function open(options: ScriptedOptions = {}) {
  const { backend, state } = scriptedBackend({ reserved: SMMU_RESERVED, capabilities: { hotPlug: true }, groups: GROUPS, ...options });
  const container = await Container.open({ backend, groups: [0] });
  return { container, state: state() };
}

/** Where the tests map "guest RAM": from 256 MiB, above the SW MSI window. */
const RAM = 0x1000_0000n;
const memory = (length: bigint) => ({ address: 0x7f00_0000_0000n, length });

/** Asserts `run` throws an IoasError with `code` and leaves the container and the backend as they were. */
function expectRefused(container: Container, state: { calls: string[]; members: Set<number> }, run: () => unknown, code: string, message?: RegExp): IoasError {
  const before = { members: container.members(), usable: container.usable(), reserved: container.reserved(), mappings: container.mappings(), stats: container.stats(), kernel: [...state.members] };
  let thrown: unknown;
  try {
    run();
  } catch (error) {
    thrown = error;
  }
  expect(IoasError.isInstance(thrown), `expected an IoasError, got ${String(thrown)}`).toBe(true);
  const error = thrown as IoasError;
  expect(error.code).toBe(code);
  if (message) expect(error.message).toMatch(message);
  expect({ members: container.members(), usable: container.usable(), reserved: container.reserved(), mappings: container.mappings(), stats: container.stats(), kernel: [...state.members] }).toEqual(before);
  return error;
}

describe('Container.attach', () => {
  it('adds a group to the live container: reserved ranges and usable space follow, mappings stay', async () => {
    const { container, state } = await open();
    container.map({ iova: RAM, memory: memory(GiB) });
    const joined = container.attach({ groups: [1] });
    expect(joined).toEqual({ groups: [1], devices: ['0000:00:10.0'] });
    expect(container.members()).toEqual({ groups: [0, 1], devices: ['0000:00:03.0', '0000:00:10.0'] });
    expect(state.calls.slice(-4)).toEqual(['previewAttach 1', 'attach 1', 'getGeometry', 'getReserved']);
    expect(container.reserved()).toContainEqual(RMRR);
    expect(container.usable().some((range) => range.start <= RMRR.start && RMRR.last <= range.last)).toBe(false);
    expect(container.mappings()).toHaveLength(1);
    // The newly reserved range is refused to maps and never handed out by the allocator.
    expect(() => container.map({ iova: RMRR.start, memory: memory(MiB) })).toThrow(/direct region 0x7d000000-0x7dffffff \(from sysfs/);
    const allocated = container.allocate({ size: 0x3000_0000n, limit: 0x8000_0000n });
    expect(allocated.every((range) => range.last < RMRR.start || range.start > RMRR.last)).toBe(true);
  });

  it('takes devices: a device brings its whole group (as the backend resolves it)', async () => {
    const { container } = await open();
    expect(container.attach({ devices: ['0000:00:1f.2'] })).toEqual({ groups: [2], devices: ['0000:00:1f.0', '0000:00:1f.2'] });
  });

  it('refuses, before the backend attaches, a mapping inside the newcomer\'s reserved region, naming both', async () => {
    const { container, state } = await open();
    container.map({ iova: RAM, memory: memory(2n * GiB) });
    const error = expectRefused(container, state, () => container.attach({ groups: [1] }), 'reserved');
    expect(error.message).toBe(
      'attach: IOMMU group 1 with device 0000:00:10.0 would reserve direct region 0x7d000000-0x7dffffff (from sysfs, /sys/kernel/iommu_groups/1/reserved_regions), but mapping 0x10000000-0x8fffffff lies in it; unmap or release it first',
    );
    expect(state.calls).not.toContain('attach 1');
  });

  it('refuses conflicts with allocations and windows too', async () => {
    const { container, state } = await open();
    container.allocate({ size: 3n * GiB, limit: 4n * GiB });
    expectRefused(container, state, () => container.attach({ groups: [1] }), 'reserved', /but allocation 0x[0-9a-f]+-0x[0-9a-f]+ lies in it/);
    for (const range of container.snapshot().allocations) container.release({ start: BigInt(range.start), last: BigInt(range.last) });
    container.createWindow({ start: 0x7c00_0000n, size: 64n * MiB });
    expectRefused(container, state, () => container.attach({ groups: [1] }), 'reserved', /but window 0x7c000000-0x7fffffff lies in it/);
  });

  it('lets a relaxable direct region overlap mappings, as the kernel does', async () => {
    const { container } = await open();
    container.map({ iova: 0, memory: memory(64n * MiB) });
    container.attach({ groups: [2] });
    expect(container.reserved()).toContainEqual(RELAXABLE);
    expect(container.mappings()).toHaveLength(1);
  });

  it('refuses a mapping outside the newcomer\'s aperture when the backend can tell it beforehand', async () => {
    const { container, state } = await open();
    container.map({ iova: 8n * GiB, memory: memory(MiB) });
    expectRefused(container, state, () => container.attach({ groups: [3] }), 'out-of-range', /IOMMU group 3 with device 0000:01:00.0 can translate only 0x0-0xffffffff, but mapping 0x200000000-0x2000fffff lies outside/);
    expect(state.calls).not.toContain('attach 3');
  });

  it('when the backend cannot tell, the kernel\'s refusal comes back typed and nothing changes', async () => {
    const { container, state } = await open();
    container.map({ iova: 8n * GiB, memory: memory(MiB) });
    state.failNext('attach', ERRNO.EINVAL);
    const error = expectRefused(container, state, () => container.attach({ groups: [4] }), 'kernel');
    expect(error.errno).toBe(ERRNO.EINVAL);
    // Once the mapping is gone the same attach succeeds, and the geometry shrinks to what it translates.
    container.unmap({ start: 8n * GiB, size: MiB });
    container.attach({ groups: [4] });
    expect(container.geometry().aperture).toEqual({ start: 0n, last: 0xffff_ffffn });
    expect(container.usable().at(-1)!.last).toBe(0xffff_ffffn);
  });

  it('refuses members already in, unknown groups and bad input, changing nothing', async () => {
    const { container, state } = await open();
    expectRefused(container, state, () => container.attach({ groups: [0] }), 'in-use', /^attach: device 0000:00:03.0 is already in this container$/);
    expectRefused(container, state, () => container.attach({ devices: ['0000:00:03.0'] }), 'in-use', /already in this container/);
    expectRefused(container, state, () => container.attach({ groups: [9] }), 'not-found', /no IOMMU group 9/);
    expectRefused(container, state, () => container.attach({}), 'invalid-argument', /at least one IOMMU group or device/);
    expectRefused(container, state, () => container.attach({ groups: [-1] }), 'invalid-argument');
    expectRefused(container, state, () => container.attach(null as never), 'invalid-argument');
    expectRefused(container, state, () => container.attach({ devices: [''] }), 'invalid-argument');
  });

  it('undoes the attach when the geometry read after it fails', async () => {
    const { container, state } = await open();
    state.failNext('getReserved', ERRNO.EIO);
    expect(() => container.attach({ groups: [1] })).toThrow(expect.objectContaining({ code: 'kernel', errno: ERRNO.EIO }));
    expect([...state.members]).toEqual([0]);
    expect(state.calls.slice(-2)).toEqual(['getReserved', 'detach 1']);
    expect(container.reserved()).toEqual(SMMU_RESERVED);
  });

  it('is unsupported on a backend whose members are fixed, and closed after close()', async () => {
    const { backend, state } = scriptedBackend({ reserved: SMMU_RESERVED });
    const fixed = await Container.open({ backend, devices: ['0000:00:03.0'] });
    expect(() => fixed.attach({ groups: [1] })).toThrow(expect.objectContaining({ code: 'unsupported', message: expect.stringMatching(/fixes a container's groups and devices/) }));
    expect(() => fixed.detach({ groups: [1] })).toThrow(expect.objectContaining({ code: 'unsupported' }));
    expect(fixed.members()).toEqual({ groups: [], devices: ['0000:00:03.0'] });
    expect(state().calls).toEqual(['open ', 'getGeometry', 'getReserved']);
    const { container } = await open();
    container.close();
    expect(() => container.attach({ groups: [1] })).toThrow(expect.objectContaining({ code: 'closed' }));
    expect(() => container.members()).toThrow(expect.objectContaining({ code: 'closed' }));
  });

  it('refuses a handle that declares hot-plug without the methods', async () => {
    const { backend } = scriptedBackend({ capabilities: { hotPlug: true }, groups: GROUPS });
    const broken: BackendV1 = {
      ...backend,
      open: async (request) => {
        const handle = await backend.open(request);
        delete handle.doPreviewAttach;
        return handle;
      },
    };
    await expect(Container.open({ backend: broken, groups: [0] })).rejects.toMatchObject({ code: 'backend-contract', message: /lacks doPreviewAttach/ });
  });
});

describe('Container.detach', () => {
  it('removes a group: mappings stay and the usable space grows back', async () => {
    const { container, state } = await open();
    const usable = container.usable();
    container.attach({ groups: [1] });
    container.map({ iova: RAM, memory: memory(GiB) });
    expect(container.detach({ devices: ['0000:00:10.0'] })).toEqual({ groups: [1], devices: ['0000:00:10.0'] });
    expect(state.calls.slice(-3)).toEqual(['detach 1', 'getGeometry', 'getReserved']);
    expect(container.usable()).toEqual(usable);
    expect(container.mappings()).toHaveLength(1);
    expect(container.members()).toEqual({ groups: [0], devices: ['0000:00:03.0'] });
    // The first member can leave once another is in.
    container.attach({ groups: [2] });
    container.detach({ groups: [0] });
    expect(container.members().groups).toEqual([2]);
  });

  it('refuses to detach the last member, or one not in the container', async () => {
    const { container, state } = await open();
    expectRefused(container, state, () => container.detach({ groups: [0] }), 'in-use', /would leave the container with no device; close\(\) the container instead/);
    container.attach({ groups: [1] });
    expectRefused(container, state, () => container.detach({ groups: [0, 1] }), 'in-use', /no device/);
    expectRefused(container, state, () => container.detach({ groups: [2] }), 'not-found', /^detach: devices 0000:00:1f.0, 0000:00:1f.2 are not in this container \(members: IOMMU groups 0, 1 with devices 0000:00:03.0, 0000:00:10.0\)$/);
  });

  it('passes the backend\'s refusal through typed, changing nothing', async () => {
    const { container, state } = await open();
    container.attach({ groups: [1] });
    state.failNext('detach', ERRNO.EBUSY);
    const error = expectRefused(container, state, () => container.detach({ groups: [1] }), 'kernel');
    expect(error.errno).toBe(ERRNO.EBUSY);
  });
});
