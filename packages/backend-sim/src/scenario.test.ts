import { describe, expect, it } from 'vitest';
import { runScenario, validateScenario, type Scenario } from './scenario.js';

const valid = (input: unknown): Scenario => {
  const result = validateScenario(input);
  if (!result.ok) throw new Error(JSON.stringify(result.issues));
  return result.scenario;
};

describe('scenarios', () => {
  it('runs the seed example on the P4080: windows, RAM, MSI banks, DMA and MSI, with a trace', async () => {
    const scenario = valid({
      steps: [
        { geometry: { aperture: '512M@0', windows: 8 } },
        { map: { iova: 0, size: '256M', page: '64M' } },
        { 'msi-map': { iova: '0x10000000' } },
        { 'dma-write': { iova: '0xc001000', data: 'hello' } },
        { 'dma-read': { iova: '0xc001000', length: 5 } },
        { 'dma-write': { iova: '0x1c000000', data: 'x' }, expect: 'fault' },
        { msi: null },
        { map: { iova: '0x1000', size: '64M', page: '64M' }, expect: 'misaligned' },
      ],
    });
    const steps: string[] = [];
    const result = await runScenario(scenario, { onStep: (index, total, action) => steps.push(`${index + 1}/${total} ${action}`) });
    expect(result.ok).toBe(true);
    expect(steps[0]).toBe('1/8 geometry');
    expect(result.events.map((event) => event.outcome)).toEqual(['ok', 'ok', 'ok', 'ok', 'ok', 'fault', 'delivered', 'error']);
    expect(result.events[0]!.detail).toBe('aperture 0x0-0x1fffffff: 8 windows of 64 MiB');
    expect(result.events[2]!.detail).toBe('MSI (explicit): 0@0x10000000, 1@0x14000000, 2@0x18000000');
    expect(result.events[4]!.detail).toContain('"hello"');
    expect(result.events[7]).toMatchObject({ code: 'misaligned', expected: true });
    expect([result.mappings, result.bytesMapped, result.interrupts, result.faults.length]).toEqual([1, 256n << 20n, 1, 1]);
  });

  it('attaches and detaches devices with mappings live, and DMA names the device', async () => {
    for (const kernelInterface of ['type1', 'iommufd'] as const) {
      const scenario = valid({
        platform: 'x86-vtd',
        interface: kernelInterface,
        steps: [
          { map: { iova: '256M', size: '1G', page: '2M' } },
          { attach: { device: '0000:00:10.0' } },
          { 'dma-write': { iova: '0x10001000', data: 'from the second', device: '0000:00:10.0' } },
          { 'dma-read': { iova: '0x10001000', length: 15 } },
          { attach: { device: '0000:00:11.0' }, expect: 'reserved' },
          { detach: { device: '0000:00:03.0' } },
          { 'dma-write': { iova: '0x10002000', data: 'blocked' }, expect: 'fault' },
          { 'dma-write': { iova: '0x10002000', data: 'still here', device: '0000:00:10.0' } },
          { detach: { device: '0000:00:10.0' }, expect: 'in-use' },
          { 'dma-read': { iova: '0x1000', length: 4, device: '0000:00:99.0' }, expect: 'fault' },
        ],
      });
      const result = await runScenario(scenario);
      expect(result.events.map((event) => event.outcome), kernelInterface).toEqual(['ok', 'ok', 'ok', 'ok', 'error', 'ok', 'fault', 'ok', 'error', 'error']);
      expect(result.events[1]!.detail).toBe('attached 0000:00:10.0; usable now 0x0-0xfedfffff, 0xfef00000-0x7fffffffff');
      expect(result.events[3]!.detail).toContain('"from the second"');
      expect(result.events[4]!.detail).toMatch(/would reserve direct region 0x3e000000-0x3effffff .* but mapping 0x10000000-0x4fffffff lies in it/);
      expect(result.events[8]!.detail).toMatch(/no device; close\(\) the container instead/);
      // An unknown device is a typed error, and the run stops there.
      expect(result.events[9]).toMatchObject({ code: 'not-found', expected: false });
      expect(result.events[9]!.detail).toMatch(/there is no PCI device 0000:00:99.0 on the x86-vtd/);
      expect(result.ok).toBe(false);
    }
    expect(validateScenario({ steps: [{ attach: { device: '3' } }] })).toMatchObject({ ok: false, issues: [{ path: ['steps', 0, 'attach', 'device'], message: 'a PCI address such as 0000:00:10.0' }] });
  });

  it('stops at the first step whose outcome was not expected', async () => {
    const scenario = valid({ platform: 'arm-smmuv3', steps: [{ map: { iova: '0x8000000', size: '4K' } }, { msi: null }] });
    const result = await runScenario(scenario);
    expect(result.ok).toBe(false);
    expect(result.events).toHaveLength(1);
    expect(result.events[0]).toMatchObject({ outcome: 'error', code: 'reserved', expected: false });
  });

  it('refuses a map before the P4080 has windows with a typed error, not a crash', async () => {
    const result = await runScenario(valid({ steps: [{ map: { iova: 0, size: '64M' }, expect: 'not-ready' }] }));
    expect(result.ok).toBe(true);
    expect(result.events[0]!.detail).toMatch(/setGeometry/);
  });

  it('reports a lost MSI when no bank is mapped on the P4080', async () => {
    const result = await runScenario(valid({ steps: [{ geometry: { aperture: '512M@0', windows: 8 } }, { msi: null, expect: 'lost' }] }));
    expect(result.ok).toBe(true);
    expect(result.events[1]!.detail).toMatch(/VFIO_DEVICE_SET_IRQS/);
  });

  it('gives every problem of a bad scenario with its path', () => {
    const result = validateScenario({ platform: 'z80', steps: [{ map: { size: '12Q' } }, { mapp: {} }, { map: { size: 1 }, unmap: { iova: 0, size: 1 } }, { msi: null, expect: 'fault' }] });
    expect(result.ok).toBe(false);
    if (result.ok) return;
    const issues = result.issues.map((issue) => `${issue.path.join('.')}: ${issue.message}`);
    expect(issues).toContainEqual(expect.stringMatching(/^platform: /));
    expect(issues).toContainEqual(expect.stringMatching(/^steps\.0\.map\.size: 12Q is not a size/));
    expect(issues).toContainEqual(expect.stringMatching(/^steps\.1: .*mapp/));
    expect(issues).toContainEqual(expect.stringMatching(/^steps\.2: a step has exactly one action .* this one has map and unmap/));
    expect(issues).toContainEqual(expect.stringMatching(/^steps\.3\.expect: expect for msi is one of: delivered, lost/));
  });
});
