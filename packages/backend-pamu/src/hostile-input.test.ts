// backend-pamu's exports type what they are given: a wrong type is an `invalid-argument` IoasError
// naming what is wrong, never a raw TypeError (issue 13).
import { Container, IoasError, planWindows } from '@ioas/core';
import { describe, expect, it } from 'vitest';
import { pamuOnSim } from './__fixtures__/pamu-on-sim.js';
import { applyWindowPlan } from './apply-plan.js';
import { pamu } from './pamu-backend.js';
import { PAMU_PROFILES } from './profiles.js';

const MiB = 1n << 20n;

function caught(run: () => unknown): unknown {
  try {
    run();
  } catch (error) {
    return error;
  }
  return undefined;
}

const label = (value: unknown): string => (JSON.stringify(value, (_, item) => (typeof item === 'bigint' ? `${item}n` : item)) ?? String(value)).slice(0, 80);

describe('applyWindowPlan() on hostile input', async () => {
  const env = pamuOnSim();
  const container = await Container.open({ backend: env.backend, groups: [0] });
  const ram = env.simulator.memory.allocate(256n * MiB, 64n * MiB);
  const memory = { address: ram.address, length: ram.length, contiguousPageSize: 64n * MiB };
  const plan = planWindows({ memory: [{ iova: 0n, size: 256n * MiB, pageSize: 64n * MiB }], msiBanks: 3 });
  const cases: [string, () => unknown, RegExp][] = [
    ...[null, undefined, 5, 'container', {}, { capabilities: null }].map((value): [string, () => unknown, RegExp] => [`container ${label(value)}`, () => applyWindowPlan(value as never, plan, [memory]), /container/]),
    ...[null, undefined, 5, {}, { ...plan, windows: null }, { ...plan, windowSize: 64 }, { ...plan, aperture: { start: -1n, size: 'big' } }, { ...plan, windows: [null] }, { ...plan, windows: [{ ...plan.windows[0]!, memory: 'x' }] }, { ...plan, windowCount: '8' }].map(
      (value): [string, () => unknown, RegExp] => [`plan ${label(value)}`, () => applyWindowPlan(container, value as never, [memory]), /plan/],
    ),
    ...[null, undefined, 'memory', {}, [null], [{ address: 'x', length: 1n }], [{ ...memory, length: -1n }], [{ ...memory, contiguousPageSize: 'big' }]].map((value): [string, () => unknown, RegExp] => [
      `memory ${label(value)}`,
      () => applyWindowPlan(container, plan, value as never),
      /memory/,
    ]),
  ];
  it.each(cases)('%s', (_, run, names) => {
    const before = { mappings: container.mappings().length, geometry: container.geometry() };
    const error = caught(run);
    expect(IoasError.isInstance(error) && error.code, String(error)).toBe('invalid-argument');
    expect((error as Error).message).toMatch(/^applyWindowPlan: /);
    expect((error as Error).message).toMatch(names);
    expect({ mappings: container.mappings().length, geometry: container.geometry() }).toEqual(before);
  });

  it('still applies a valid plan, with numbers where bigints are safe integers', () => {
    const applied = applyWindowPlan(container, plan, [{ address: Number(memory.address), length: Number(memory.length), contiguousPageSize: Number(memory.contiguousPageSize) } as never]);
    expect(applied.mappings).toHaveLength(1);
  });
});

describe('pamu() on hostile options', () => {
  const profile = PAMU_PROFILES['sdk-4.x'];
  const cases: [unknown, RegExp][] = [
    [undefined, /options/],
    [null, /options/],
    ['sdk-4.x', /options/],
    [{}, /profile/],
    [{ profile: 'sdk-9' }, /profile/],
    [{ profile: 7 }, /profile/],
    [{ profile: {} }, /profile/],
    [{ profile: null }, /profile/],
    [{ profile: { ...profile, ioctls: {} } }, /profile\.ioctls/],
    [{ profile: { ...profile, ioctls: { ...profile.ioctls, VFIO_IOMMU_PAMU_SET_ATTR: -1 } } }, /VFIO_IOMMU_PAMU_SET_ATTR/],
    [{ profile: { ...profile, iommuType: '7' } }, /profile\.iommuType/],
    [{ profile: { ...profile, maxWindows: 3 } }, /profile\.maxWindows/],
    [{ profile: { ...profile, msi: { description: 'x', msiir: [1] } } }, /profile\.msi/],
    [{ profile: { ...profile, arch: 'sparc' } }, /profile\.arch/],
    [{ profile: 'sdk-4.x', syscalls: 5 }, /syscalls/],
    [{ profile: 'sdk-4.x', littleEndian: 'yes' }, /littleEndian/],
    [{ profile: 'sdk-4.x', sysfsRoot: 5 }, /sysfsRoot/],
    [{ profile: 'sdk-4.x', stash: { cpu: -1, cache: 3 } }, /stash/],
    [{ profile: 'sdk-4.x', colour: 'red' }, /colour/],
  ];
  it.each(cases.map(([options, names]) => [label(options), options, names] as const))('pamu(%s)', (_, options, names) => {
    const error = caught(() => pamu(options as never));
    expect(IoasError.isInstance(error) && error.code, String(error)).toBe('invalid-argument');
    expect((error as Error).message).toMatch(/^pamu\(\)/);
    expect((error as Error).message).toMatch(names);
  });

  it('still takes a built-in name, a whole profile and the usual options', () => {
    const env = pamuOnSim();
    expect(pamu({ profile: 'sdk-3.8', syscalls: env.syscalls }).profile.iommuType).toBe(2);
    expect(pamu({ profile, syscalls: env.syscalls, littleEndian: false, sysfsRoot: '', stash: { cpu: 0, cache: 3 } }).profile).toBe(profile);
  });
});
