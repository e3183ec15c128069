// A field failure brought home, rehearsed on every lane: record a run on the real kernel (the edu
// driver's DMA both ways with an MSI, and a short differential run of maps and unmaps at chosen
// IOVAs), then replay each trace on the simulator's matching preset, which must answer every call
// as the kernel did. The traces stay in the results share; `node scripts/refresh-traces.mjs`
// checks them in, where packages/trace replays them on any machine.
import { writeFileSync } from 'node:fs';
import { Container } from '@ioas/core';
import { smmu } from '@ioas/backend-smmu';
import { readTraceFile, recordSyscalls, replayTrace } from '@ioas/trace';
import { allocateDmaMemory, libcSyscalls, Sysfs } from '@ioas/vfio';
import { describe, expect, it } from 'vitest';
import { edgesOf, sequence, Side } from './differential.js';
import { EduDriver } from './edu-driver.js';
import { interfaceOf, lane, presetOf, realMachine, type Machine } from './targets.js';

/** Sequences the recorded differential run holds: enough to reach every rule, small enough to check in. */
const RECORDED_SEQUENCES = 12;

/** The real machine, every call through a recorder writing `path`. */
function recordedMachine(path: string, label: string) {
  const syscalls = recordSyscalls(libcSyscalls(), { path, label });
  const { edu, edu2 } = realMachine();
  const machine: Machine = { kind: 'real', syscalls, sysfs: new Sysfs(syscalls), edu, edu2 };
  return { machine, recorder: syscalls };
}

/** Replays the trace at `path` on the lane's preset, keeps the report beside it, and returns it. */
function replayed(path: string, name: 'x86' | 'arm64' | 'iommufd') {
  const report = replayTrace(readTraceFile(path), { platform: presetOf(name) });
  writeFileSync(path.replace(/\.jsonl$/, '.replay.json'), JSON.stringify(report, (_, value: unknown) => (typeof value === 'bigint' ? `0x${value.toString(16)}` : value), 2));
  return report;
}

if (lane === undefined) {
  describe('record on the real kernel, replay on the simulator', () => {
    it.skip('runs only inside the QEMU guest: run `pnpm test:kernel` to boot it (packages/trace replays the checked-in traces everywhere)', () => undefined);
  });
} else {
  const name = lane;
  describe(`record on the real kernel, replay on the simulator, lane ${name}`, () => {
    it('the edu driver: its trace replays on the preset with no divergence', async () => {
      const path = `/tmp/results/trace-${name}-edu.jsonl`;
      const { machine, recorder } = recordedMachine(path, `edu driver, lane ${name}`);
      try {
        const backend = smmu({ syscalls: machine.syscalls, interface: interfaceOf(name) });
        const container = await Container.open({ backend, devices: [machine.edu] });
        const driver = new EduDriver(backend.openDevice(machine.edu));
        try {
          expect(driver.identification()).toBe(0x010000ed);
          driver.enableMsi();
          const memory = allocateDmaMemory(machine.syscalls, 0x2000n);
          const mapping = container.map({ iova: 0x100000n, memory });
          memory.bytes.fill(0x5a, 0, 256);
          await driver.readFromHost(mapping.iova.start, 0, 256);
          await driver.writeToHost(0, mapping.iova.start + 0x1000n, 256, true);
          expect(memory.bytes[0x1000]).toBe(0x5a);
          expect(await driver.waitForInterrupt()).toBeGreaterThanOrEqual(1n);
          container.unmap(mapping);
          memory.free();
        } finally {
          driver.close();
          container.close();
        }
      } finally {
        recorder.stop();
      }
      const report = replayed(path, name);
      expect(report.divergence, JSON.stringify(report.divergence, (_, value: unknown) => (typeof value === 'bigint' ? `0x${value.toString(16)}` : value))).toBeUndefined();
      expect(report.ok).toBe(true);
      expect(report.replayed).toBeGreaterThan(20);
    });

    it(`a differential run of ${RECORDED_SEQUENCES} sequences: its trace replays on the preset with no divergence`, async () => {
      const path = `/tmp/results/trace-${name}-differential.jsonl`;
      const { machine, recorder } = recordedMachine(path, `differential, ${RECORDED_SEQUENCES} sequences, lane ${name}`);
      const { msi, msiEnd, top } = edgesOf(name);
      const answers = new Set<string>();
      try {
        const side = new Side(machine);
        for (let seed = 1; seed <= RECORDED_SEQUENCES; seed++) {
          for (const answer of await side.run(sequence(seed, msi, msiEnd, top, interfaceOf(name) === 'iommufd'))) answers.add(answer.startsWith('ok ') ? 'ok' : answer);
        }
      } finally {
        recorder.stop();
      }
      // The recorded run reaches errors as well as successes, else its agreement would prove little.
      expect([...answers].some((answer) => answer.startsWith('E'))).toBe(true);
      expect(answers.has('ok')).toBe(true);
      const report = replayed(path, name);
      expect(report.divergence, JSON.stringify(report.divergence, (_, value: unknown) => (typeof value === 'bigint' ? `0x${value.toString(16)}` : value))).toBeUndefined();
      expect(report.ok).toBe(true);
    });
  });
}
