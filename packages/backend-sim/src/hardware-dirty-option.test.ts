import { IoasError } from '@ioas/core';
import { describe, expect, it } from 'vitest';
import { PLATFORMS } from './platforms.js';
import { sim } from './sim-backend.js';
import { createSimulator } from './simulator.js';

describe('hardwareDirty: the preset field and the simulator option', () => {
  it('is false on every preset: QEMU emulates no VT-d SLADS, no SMMUv3 HTTU, and the PAMU has none', () => {
    for (const preset of Object.values(PLATFORMS)) expect(preset.hardwareDirty).toBe(false);
    expect(createSimulator({ platform: 'x86-vtd' }).hardwareDirty).toBe(false);
  });

  it('is taken from the option, else from the preset', () => {
    expect(createSimulator({ platform: 'arm-smmuv3', hardwareDirty: true }).hardwareDirty).toBe(true);
    expect(createSimulator({ platform: { ...PLATFORMS['x86-vtd'], hardwareDirty: true } }).hardwareDirty).toBe(true);
    expect(createSimulator({ platform: { ...PLATFORMS['x86-vtd'], hardwareDirty: true }, hardwareDirty: false }).hardwareDirty).toBe(false);
    expect(sim({ platform: 'x86-vtd', interface: 'iommufd', hardwareDirty: true }).simulator.hardwareDirty).toBe(true);
  });

  it('refuses a wrong value, and hardware dirty bits on the PAMU, with invalid-argument naming the option', () => {
    const refused = (run: () => unknown, pattern: RegExp): void => {
      try {
        run();
      } catch (error) {
        expect(IoasError.isInstance(error) && error.code).toBe('invalid-argument');
        expect((error as Error).message).toMatch(pattern);
        return;
      }
      throw new Error('not refused');
    };
    refused(() => createSimulator({ platform: 'x86-vtd', hardwareDirty: 'yes' as unknown as boolean }), /hardwareDirty/);
    refused(() => createSimulator({ platform: 'p4080', hardwareDirty: true }), /hardwareDirty: the PAMU/);
    refused(() => createSimulator({ platform: { ...PLATFORMS.p4080, hardwareDirty: true } }), /platform\.hardwareDirty/);
    refused(() => sim({ platform: 'p4080', hardwareDirty: true }), /^sim\(\): invalid options: hardwareDirty/);
    refused(() => createSimulator({ platform: { ...PLATFORMS['x86-vtd'], vtdRegisters: { cap: -1n, ecap: 0n } } }), /vtdRegisters/);
  });
});
