// Recorded runs for the replay and scenario tests: a container opened through the smmu backend on a
// simulated machine, recorded with recordSyscalls, and helpers to edit a trace by hand.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createSimulator, simSyscalls, type PlatformName, type Simulator } from '@ioas/backend-sim';
import { smmu, type SmmuBackend } from '@ioas/backend-smmu';
import { Container, type ContainerSnapshot, type Syscalls } from '@ioas/core';
import { allocateDmaMemory, VfioDevice } from '@ioas/vfio';
import { ioctlSpec } from '../ioctl-codec.js';
import { recordSyscalls, type TraceFileFormat } from '../recorder.js';

const scratch = mkdtempSync(join(tmpdir(), 'ioas-replay-'));
let runs = 0;

/** A path for a recording of the test's own. */
export function scratchPath(name: string): string {
  return join(scratch, name);
}

/** Removes the recordings (afterAll). */
export function removeRecordings(): void {
  rmSync(scratch, { recursive: true, force: true });
}

/** The edu device each preset binds to vfio-pci at start. */
export const EDU: Readonly<Record<PlatformName, string>> = { 'x86-vtd': '0000:00:03.0', 'arm-smmuv3': '0000:00:02.0', p4080: '0000:01:00.0' };

/** What a run gets: the recording face (which also notes the fd of each path it opened), the machine, the backend, the container. */
export interface RunContext {
  readonly syscalls: Syscalls;
  readonly machine: Simulator;
  readonly backend: SmmuBackend;
  readonly container: Container;
  readonly address: string;
  /** The fd the last open of each path returned. */
  readonly opened: ReadonlyMap<string, number>;
}

/** A recorded run: the trace's text, and the container as the run left it. */
export interface RecordedRun {
  readonly path: string;
  readonly text: string;
  readonly snapshot: ContainerSnapshot;
}

/** Records `run` on a fresh simulated `platform`, through a container of its edu device on `iface`. */
export async function recordRun(
  platform: PlatformName,
  iface: 'type1' | 'iommufd',
  run: (context: RunContext) => void | Promise<void>,
  format: TraceFileFormat = 'journal',
): Promise<RecordedRun> {
  const machine = createSimulator({ platform });
  const path = join(scratch, `run-${++runs}.trace`);
  const recorder = recordSyscalls(simSyscalls(machine), { path, label: `${platform} ${iface}`, format });
  const opened = new Map<string, number>();
  // The recorder's methods are closures: a face that inherits them and notes opens is a whole Syscalls.
  const syscalls = Object.create(recorder) as Syscalls;
  syscalls.open = (file, flags) => {
    const fd = recorder.open(file, flags);
    opened.set(file, fd);
    return fd;
  };
  const backend = smmu({ syscalls, interface: iface, arch: 'generic', littleEndian: true });
  const address = EDU[platform];
  const container = await Container.open({ backend, devices: [address] });
  let snapshot: ContainerSnapshot;
  try {
    await run({ syscalls, machine, backend, container, address, opened });
    snapshot = container.snapshot();
  } finally {
    container.close();
    recorder.stop();
  }
  return { path, text: readFileSync(path, 'utf8'), snapshot };
}

/** edu's registers (QEMU docs/specs/edu.rst) and DMA command bits, as examples/edu-driver.mjs uses them. */
const REG = { ID: 0x00n, RAISE: 0x60n, STATUS: 0x24n, ACK: 0x64n, SRC: 0x80n, DST: 0x88n, COUNT: 0x90n, CMD: 0x98n };
const CMD = { START: 1n, TO_RAM: 2n, IRQ: 4n };
const EDU_BUFFER = 0x40000n;

/**
 * The edu driver flow of examples/edu-driver.mjs: BAR0 reads, bus mastering, MSI on an eventfd, a
 * DMA round trip through a mapping, the eventfd read, teardown. Returns the interrupts counted.
 */
export function eduDriver({ syscalls, backend, container, address }: RunContext): bigint {
  const device = backend.openDevice(address);
  try {
    device.read32(0, REG.ID);
    device.enableBusMaster();
    const [eventfd] = device.enableMsi(1);
    const memory = allocateDmaMemory(syscalls, 0x2000n);
    const mapping = container.map({ memory, iova: 0x10_0000n });
    const message = new TextEncoder().encode('copied by the edu device, through the IOMMU, twice');
    syscalls.memory(memory.address, message.length).set(message);
    const dma = (from: bigint, to: bigint, count: number, toRam: boolean) => {
      device.write64(0, REG.SRC, from);
      device.write64(0, REG.DST, to);
      device.write64(0, REG.COUNT, BigInt(count));
      device.write64(0, REG.CMD, CMD.START | CMD.IRQ | (toRam ? CMD.TO_RAM : 0n));
      for (let spin = 0; (device.read64(0, REG.CMD) & CMD.START) !== 0n; spin++) if (spin > 1000) throw new Error('edu DMA did not finish');
      device.write32(0, REG.ACK, device.read32(0, REG.STATUS));
    };
    dma(mapping.iova.start, EDU_BUFFER, message.length, false);
    dma(EDU_BUFFER, mapping.iova.start + 0x1000n, message.length, true);
    const interrupts = VfioDevice.readEventfd(device.ioctls, eventfd!);
    device.disableIrqs();
    container.unmap(mapping);
    memory.free();
    return interrupts;
  } finally {
    device.close();
  }
}

/** A trace's lines as objects: the header first. */
export function traceLines(text: string): Record<string, unknown>[] {
  return text
    .split('\n')
    .filter((line) => line !== '')
    .map((line) => JSON.parse(line) as Record<string, unknown>);
}

/** The text of lines. */
export function traceText(lines: readonly Record<string, unknown>[]): string {
  return lines.map((line) => `${JSON.stringify(line)}\n`).join('');
}

/** The first call line for which `match` holds; throws when there is none. */
export function findCall(text: string, match: (call: Record<string, unknown>) => boolean): Record<string, unknown> {
  const found = traceLines(text).slice(1).find(match);
  if (found === undefined) throw new Error('no such call in the trace');
  return found;
}

/** The trace with call `n` replaced by what `change` makes of it. */
export function editCall(text: string, n: number, change: (call: Record<string, unknown>) => Record<string, unknown>): string {
  return traceText(traceLines(text).map((line) => (line.n === n ? change(structuredClone(line)) : line)));
}

/** The generic (non-PowerPC) request number of an ioctl: `_IO(';', nr)`. */
export const request = (name: string) => (0x3b << 8) | ioctlSpec(name)!.nr;

function struct(size: number, fill: (view: DataView) => void): Uint8Array {
  const bytes = new Uint8Array(size);
  fill(new DataView(bytes.buffer));
  return bytes;
}

/** struct vfio_iommu_type1_dma_map, read and write. */
export const mapDma = (vaddr: bigint, iova: bigint, size: bigint) =>
  struct(32, (view) => {
    view.setUint32(0, 32, true);
    view.setUint32(4, 3, true);
    view.setBigUint64(8, vaddr, true);
    view.setBigUint64(16, iova, true);
    view.setBigUint64(24, size, true);
  });

/** struct iommu_ioas_map with FIXED_IOVA | WRITEABLE | READABLE. */
export const ioasMap = (ioas: number, vaddr: bigint, iova: bigint, length: bigint) =>
  struct(40, (view) => {
    view.setUint32(0, 40, true);
    view.setUint32(4, 7, true);
    view.setUint32(8, ioas, true);
    view.setBigUint64(16, vaddr, true);
    view.setBigUint64(24, length, true);
    view.setBigUint64(32, iova, true);
  });
