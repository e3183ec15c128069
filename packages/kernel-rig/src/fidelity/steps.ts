/**
 * The fidelity engine's step vocabulary: a sequence is a list of steps (open a node, an ioctl by its
 * kernel name with its struct's fields, an eventfd, a read or write of one, a pwrite or pread of a
 * device region, an anonymous mmap, a sysfs read, a close), and `runSteps` runs it through any
 * `Syscalls` face: libc against the real kernel in the rig's guest, or the simulator's face. The
 * same steps on both give two lists of outcomes; `firstDifference` says where they part.
 *
 * Steps never name a file descriptor or an address of one run: an fd is a role (`as: 'device'`,
 * then `fd: 'device'`), a buffer is a named mapping, and the paths of the machine (the edu's IOMMU
 * group, its cdev) are placeholders resolved on each side from its sysfs. What an outcome records is
 * what the kernel decides: the return value or errno, and every byte of the argument after the call
 * but the pointers (which are each side's addresses); an fd the kernel returns is recorded as `fd`.
 */
import { errnoName, IoasError, SYSCALL_FLAGS, type Syscalls } from '@ioas/core';
import { ioctlNumber } from '@ioas/vfio';
import { ioctlSpec, type IoctlField } from '@ioas/trace';

/** A struct field's value in a step: a number, a 64-bit value, an fd role, or a pointer into a named mapping. */
export type StepValue = number | bigint | { readonly fd: string } | { readonly mapping: string; readonly offset?: bigint };

/** One step of a sequence. */
export type Step =
  /** open(2) of a path; `{group}`, `{edu}` and `{cdev}` are the edu's IOMMU group number, PCI address and vfio cdev name on each side. */
  | { readonly op: 'open'; readonly path: string; readonly as?: string }
  | { readonly op: 'close'; readonly fd: string }
  /**
   * An ioctl by its kernel name. A struct argument is `sizeof` bytes, or `argsz` when the step sets
   * that field larger (the rest filled with 0xa5, so that what the kernel writes shows); `fields`
   * sets struct fields (unset ones are 0, `argsz` defaults to the struct's size); `data` appends
   * 32-bit values (eventfds of VFIO_DEVICE_SET_IRQS: fd roles, or numbers such as -1); `bytes`
   * appends raw bytes (SET_IRQS's DATA_BOOL); `words` appends 64-bit values after those (a
   * struct's tail such as VFIO_IOMMU_DIRTY_PAGES's vfio_iommu_type1_dirty_bitmap_get, whose
   * pointers are mappings); `name` passes a string (VFIO_GROUP_GET_DEVICE_FD); `value` passes an
   * integer. An ioctl the codec knows only as raw bytes (IOMMU_VFIO_IOAS) is `bytes` and `words`
   * alone. `as` names the fd a successful call returns.
   */
  | {
      readonly op: 'ioctl';
      readonly fd: string;
      readonly ioctl: string;
      readonly fields?: Readonly<Record<string, StepValue>>;
      readonly data?: readonly (number | { readonly fd: string })[];
      readonly bytes?: readonly number[];
      readonly words?: readonly StepValue[];
      readonly name?: string;
      readonly value?: number;
      readonly as?: string;
    }
  | { readonly op: 'eventfd'; readonly as: string }
  /** A nonblocking read of an eventfd's count (EAGAIN when it is 0), or a write of `value` to it. */
  | { readonly op: 'read'; readonly fd: string }
  | { readonly op: 'write'; readonly fd: string; readonly value: bigint }
  /** pwrite of a little-endian value of `size` bytes (1, 2, 4) at `offset` of vfio-pci region `region` (offset = index << 40). */
  | { readonly op: 'pwrite'; readonly fd: string; readonly region: number; readonly offset: number; readonly size: 1 | 2 | 4; readonly value: number }
  | { readonly op: 'pread'; readonly fd: string; readonly region: number; readonly offset: number; readonly size: 1 | 2 | 4 }
  /**
   * An anonymous shared read/write mapping of `pages` pages, named for pointers; `align` (pages, a
   * power of two) aligns its start, so that the low bits of its addresses are the same on every
   * side (iommufd chooses IOVAs from them).
   */
  | { readonly op: 'mmap'; readonly pages: number; readonly as: string; readonly align?: number }
  /** munmap of a mapping; a pointer into it stays the address it had (a dangling pointer, for EFAULT probes). */
  | { readonly op: 'munmap'; readonly mapping: string }
  /** Writes 64-bit host-order values into a mapping at byte `offset` (input arrays: IOVA ranges, bitmaps). */
  | { readonly op: 'poke'; readonly mapping: string; readonly offset?: number; readonly words: readonly bigint[] }
  /** Reads `length` bytes of a mapping at byte `offset` into the outcome (what the kernel wrote there). */
  | { readonly op: 'peek'; readonly mapping: string; readonly offset?: number; readonly length: number }
  /** A sysfs read; `{group}`, `{edu}` as in open. */
  | { readonly op: 'readFile'; readonly path: string };

/** What a step got: the result (a number, `fd` for a new fd, or an errno name) and, for a struct ioctl, the argument's bytes after the call. */
export interface StepOutcome {
  readonly result: string;
  readonly bytes?: string;
}

/** Where two runs of the same steps part. */
export interface StepDifference {
  /** The step's index in the sequence. */
  readonly index: number;
  readonly step: Step;
  readonly a: StepOutcome;
  readonly b: StepOutcome;
}

const PAGE = 0x1000n;
const HOST_LITTLE = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

function bad(index: number, what: string): never {
  throw new IoasError('invalid-argument', `step ${index}: ${what}`);
}

/** The machine names a step's paths use, read from one side's sysfs. */
interface Places {
  readonly group: string;
  readonly edu: string;
  readonly cdev: string | undefined;
}

function placesOf(syscalls: Syscalls, edu: string): Places {
  const device = `/sys/bus/pci/devices/${edu}`;
  const group = syscalls.readLink(`${device}/iommu_group`).split('/').at(-1)!;
  const cdevs = syscalls.exists(`${device}/vfio-dev`) ? syscalls.readDir(`${device}/vfio-dev`) : [];
  return { group, edu, cdev: cdevs[0] };
}

function resolvePath(path: string, places: Places, index: number): string {
  return path.replace(/\{(group|edu|cdev)\}/g, (_, name: keyof Places) => places[name] ?? bad(index, `${path}: this machine has no ${name}`));
}

function errnoText(status: number | bigint): string {
  return errnoName(-Number(status));
}

/** One run of steps on one face: its fds and mappings by role. */
class Run {
  private readonly fds = new Map<string, number>();
  /** Fds no role names any more (given again, or never given a role): closed at the end. */
  private readonly superseded: number[] = [];
  /** Named mappings: the address steps see, and what mmap gave (`base`, `length`: unmapped at the end, unless `gone`). */
  private readonly mappings = new Map<string, { address: bigint; pages: number; base: bigint; length: bigint; gone: boolean }>();
  private readonly places: Places;

  /** Every role a step of the sequence gives. */
  private readonly roles: Set<string>;

  constructor(
    private readonly syscalls: Syscalls,
    edu: string,
    steps: readonly Step[],
  ) {
    this.places = placesOf(syscalls, edu);
    this.roles = new Set(steps.flatMap((step) => ('as' in step && step.as !== undefined && step.op !== 'mmap' ? [step.as] : [])));
  }

  private fd(role: string, index: number): number {
    const fd = this.fds.get(role);
    if (fd !== undefined) return fd;
    // `closed`, or a role the sequence gives but whose call failed or that it closed: a number no
    // process has open (fdget fails: EBADF), on either side.
    if (role === 'closed' || this.roles.has(role)) return 1_000_000;
    return bad(index, `no step gives the role ${JSON.stringify(role)} (give it with "as")`);
  }

  private named(as: string | undefined, status: number): string {
    if (status < 0) return errnoText(status);
    if (as !== undefined) {
      // A role given again while it still names an open fd: the old fd stays open (as it would in
      // a program), and is closed with the rest at the end, not leaked into the next sequence.
      const previous = this.fds.get(as);
      if (previous !== undefined) this.superseded.push(previous);
      this.fds.set(as, status);
    } else this.superseded.push(status);
    return 'fd';
  }

  run(step: Step, index: number): StepOutcome {
    const syscalls = this.syscalls;
    switch (step.op) {
      case 'open':
        return { result: this.named(step.as, syscalls.open(resolvePath(step.path, this.places, index), SYSCALL_FLAGS.O_RDWR)) };
      case 'close': {
        const status = syscalls.close(this.fd(step.fd, index));
        // Closed: the role now names no open file (a close of it again is EBADF).
        this.fds.delete(step.fd);
        return { result: status < 0 ? errnoText(status) : String(status) };
      }
      case 'eventfd':
        return { result: this.named(step.as, syscalls.eventfd(0, SYSCALL_FLAGS.EFD_NONBLOCK | SYSCALL_FLAGS.EFD_CLOEXEC)) };
      case 'read': {
        const count = new Uint8Array(8);
        const status = syscalls.read(this.fd(step.fd, index), count);
        return { result: status < 0 ? errnoText(status) : `${status}:${new DataView(count.buffer).getBigUint64(0, HOST_LITTLE)}` };
      }
      case 'write': {
        const count = new Uint8Array(8);
        new DataView(count.buffer).setBigUint64(0, step.value, HOST_LITTLE);
        const status = syscalls.write(this.fd(step.fd, index), count);
        return { result: status < 0 ? errnoText(status) : String(status) };
      }
      case 'pwrite':
      case 'pread': {
        if (![1, 2, 4].includes(step.size)) bad(index, `size ${step.size}: 1, 2 or 4`);
        const buffer = new Uint8Array(step.size);
        if (step.op === 'pwrite') for (let byte = 0; byte < step.size; byte++) buffer[byte] = (step.value >>> (8 * byte)) & 0xff;
        const offset = (BigInt(step.region) << 40n) + BigInt(step.offset);
        const fd = this.fd(step.fd, index);
        const status = step.op === 'pwrite' ? syscalls.pwrite(fd, buffer, offset) : syscalls.pread(fd, buffer, offset);
        if (status < 0) return { result: errnoText(status) };
        return step.op === 'pread' ? { result: String(status), bytes: Buffer.from(buffer).toString('hex') } : { result: String(status) };
      }
      case 'mmap': {
        const align = step.align ?? 1;
        if (!Number.isInteger(step.pages) || step.pages < 1 || !Number.isInteger(align) || align < 1 || (align & (align - 1)) !== 0) bad(index, `mmap of ${step.pages} pages aligned to ${align}: a positive count, and a power of two`);
        if (this.mappings.has(step.as)) bad(index, `the mapping ${JSON.stringify(step.as)} exists: name another`);
        const length = BigInt(step.pages + align - 1) * PAGE;
        const base = syscalls.mmap(length, SYSCALL_FLAGS.PROT_READ | SYSCALL_FLAGS.PROT_WRITE, SYSCALL_FLAGS.MAP_SHARED | SYSCALL_FLAGS.MAP_ANONYMOUS, -1, 0n);
        if (base < 0n) return { result: errnoText(base) };
        const boundary = BigInt(align) * PAGE;
        const address = ((base + boundary - 1n) / boundary) * boundary;
        this.mappings.set(step.as, { address, pages: step.pages, base, length, gone: false });
        return { result: 'mapped' };
      }
      case 'munmap': {
        const mapping = this.mapping(step.mapping, index);
        if (mapping.gone) bad(index, `${JSON.stringify(step.mapping)} is unmapped already`);
        const status = syscalls.munmap(mapping.base, mapping.length);
        if (status >= 0) mapping.gone = true;
        return { result: status < 0 ? errnoText(status) : String(status) };
      }
      case 'poke':
      case 'peek': {
        const mapping = this.mapping(step.mapping, index);
        const offset = step.offset ?? 0;
        const length = step.op === 'poke' ? step.words.length * 8 : step.length;
        if (!Number.isInteger(offset) || !Number.isInteger(length) || offset < 0 || length < 0 || offset + length > mapping.pages * Number(PAGE)) bad(index, `bytes ${offset}..${offset + length} are not inside ${JSON.stringify(step.mapping)}`);
        // Touching an unmapped mapping from here would fault this process, not ask the kernel.
        if (mapping.gone) bad(index, `${JSON.stringify(step.mapping)} is unmapped`);
        const memory = syscalls.memory(mapping.address + BigInt(offset), length);
        if (step.op === 'peek') return { result: 'read', bytes: Buffer.from(memory).toString('hex') };
        const view = new DataView(memory.buffer, memory.byteOffset, memory.byteLength);
        step.words.forEach((word, at) => view.setBigUint64(at * 8, BigInt.asUintN(64, word), HOST_LITTLE));
        return { result: 'written' };
      }
      case 'readFile':
        try {
          return { result: 'read', bytes: Buffer.from(syscalls.readFile(resolvePath(step.path, this.places, index))).toString('hex') };
        } catch (error) {
          const code = (error as { code?: unknown }).code;
          return { result: typeof code === 'string' ? code : 'THROWN' };
        }
      case 'ioctl':
        return this.ioctl(step, index);
      default:
        return bad(index, `unknown op ${JSON.stringify((step as { op?: unknown }).op)} (open, close, ioctl, eventfd, read, write, pwrite, pread, mmap, munmap, poke, peek, readFile)`);
    }
  }

  private mapping(name: string, index: number) {
    return this.mappings.get(name) ?? bad(index, `no mapping named ${JSON.stringify(name)}`);
  }

  /** A step's value as the 64-bit number this side passes. */
  private number(value: StepValue, index: number): bigint {
    if (typeof value === 'object' && 'fd' in value) return BigInt(this.fd(value.fd, index));
    if (typeof value === 'object') return this.mapping(value.mapping, index).address + (value.offset ?? 0n);
    return BigInt(value);
  }

  private ioctl(step: Extract<Step, { op: 'ioctl' }>, index: number): StepOutcome {
    const spec = ioctlSpec(step.ioctl) ?? bad(index, `unknown ioctl ${JSON.stringify(step.ioctl)}`);
    const request = ioctlNumber(spec.nr);
    const fd = this.fd(step.fd, index);
    if (spec.argument === 'value') {
      if (step.value === undefined) bad(index, `${spec.name} takes an integer: give "value"`);
      const status = this.syscalls.ioctl(fd, request, step.value);
      return { result: spec.returnsFd && status >= 0 ? this.named(step.as, status) : status < 0 ? errnoText(status) : String(status) };
    }
    if (spec.argument === 'string') {
      if (step.name === undefined) bad(index, `${spec.name} takes a string: give "name"`);
      const bytes = new TextEncoder().encode(`${step.name.replace(/\{(group|edu|cdev)\}/g, (_, name: keyof Places) => this.places[name] ?? '')}\0`);
      const status = this.syscalls.ioctl(fd, request, bytes);
      return { result: spec.returnsFd && status >= 0 ? this.named(step.as, status) : status < 0 ? errnoText(status) : String(status) };
    }
    if (spec.argument !== 'struct' && spec.argument !== 'raw') bad(index, `${spec.name}: ${spec.argument} ioctls are not steps`);
    const fields = step.fields ?? {};
    for (const name of Object.keys(fields)) if (!spec.fields.some((field) => field.name === name)) bad(index, `${spec.name} has no field ${JSON.stringify(name)}`);
    const argsz = fields.argsz;
    const extra = (step.data?.length ?? 0) * 4 + (step.bytes?.length ?? 0) + (step.words?.length ?? 0) * 8;
    if (extra === 0 && spec.sizeof === 0) bad(index, `${spec.name} is raw bytes to this engine: give "bytes" or "words"`);
    const length = Math.max(spec.sizeof + extra, typeof argsz === 'number' ? Math.min(argsz, 4096) : 0);
    const argument = new Uint8Array(length).fill(0xa5, spec.sizeof + extra);
    const view = new DataView(argument.buffer);
    for (const field of spec.fields) this.put(view, field, field.name === 'argsz' && argsz === undefined ? spec.sizeof + extra : fields[field.name], index);
    let at = spec.sizeof;
    /** Where the argument holds an fd of this side (a role in `data`). */
    const roles: number[] = [];
    for (const value of step.data ?? []) {
      if (typeof value !== 'number') roles.push(at);
      view.setInt32(at, typeof value === 'number' ? value : this.fd(value.fd, index), HOST_LITTLE);
      at += 4;
    }
    for (const value of step.bytes ?? []) argument[at++] = value;
    /** Where the argument holds an address of this side (a mapping in `words`). */
    const pointers: number[] = [];
    for (const value of step.words ?? []) {
      if (typeof value === 'object') pointers.push(at);
      view.setBigUint64(at, BigInt.asUintN(64, this.number(value, index)), HOST_LITTLE);
      at += 8;
    }
    const status = this.syscalls.ioctl(fd, request, argument);
    // Pointers and fds are each side's numbers (addresses; the kernel reuses fd numbers, the
    // simulator does not): blanked before the comparison, whatever the kernel did.
    for (const field of spec.fields) if (field.kind === 'pointer' || field.kind === 'iova-ranges' || field.kind === 'fd') argument.fill(0, field.offset, field.offset + field.size);
    for (const role of roles) argument.fill(0, role, role + 4);
    for (const pointer of pointers) argument.fill(0, pointer, pointer + 8);
    const result = spec.returnsFd && status >= 0 ? this.named(step.as, status) : status < 0 ? errnoText(status) : String(status);
    return { result, bytes: Buffer.from(argument).toString('hex') };
  }

  private put(view: DataView, field: IoctlField, value: StepValue | undefined, index: number): void {
    if (value === undefined || field.offset + field.size > view.byteLength) return;
    const number = this.number(value, index);
    switch (field.size) {
      case 1:
        view.setUint8(field.offset, Number(BigInt.asUintN(8, number)));
        return;
      case 2:
        view.setUint16(field.offset, Number(BigInt.asUintN(16, number)), HOST_LITTLE);
        return;
      case 4:
        view.setUint32(field.offset, Number(BigInt.asUintN(32, number)), HOST_LITTLE);
        return;
      case 8:
        view.setBigUint64(field.offset, BigInt.asUintN(64, number), HOST_LITTLE);
        return;
      default:
        bad(index, `field ${field.name} is ${field.size} bytes: steps set 1, 2, 4 or 8`);
    }
  }

  /** Closes what the sequence left open and unmaps what it mapped (not an outcome: cleanup). */
  close(): void {
    for (const fd of [...this.fds.values(), ...this.superseded].reverse()) this.syscalls.close(fd);
    this.fds.clear();
    this.superseded.length = 0;
    for (const { base, length, gone } of this.mappings.values()) if (!gone) this.syscalls.munmap(base, length);
    this.mappings.clear();
  }
}

/**
 * Runs `steps` on `syscalls`, whose machine has the edu at `edu` bound to vfio-pci; returns each
 * step's outcome. Whatever the sequence left open is closed at the end. A step the engine cannot
 * run (an unknown op, ioctl or field, an fd role never given) is an `invalid-argument` IoasError
 * naming the step.
 */
export function runSteps(syscalls: Syscalls, edu: string, steps: readonly Step[]): StepOutcome[] {
  const run = new Run(syscalls, edu, steps);
  try {
    return steps.map((step, index) => run.run(step, index));
  } finally {
    run.close();
  }
}

/** The first step whose outcomes differ, or undefined when every step agrees. */
export function firstDifference(steps: readonly Step[], a: readonly StepOutcome[], b: readonly StepOutcome[]): StepDifference | undefined {
  for (let index = 0; index < steps.length; index++) {
    const left = a[index]!;
    const right = b[index]!;
    if (left.result !== right.result || left.bytes !== right.bytes) return { index, step: steps[index]!, a: left, b: right };
  }
  return undefined;
}

/** A step as people read it. */
export function describeStep(step: Step): string {
  return JSON.stringify(step, (_, value: unknown) => (typeof value === 'bigint' ? `0x${value.toString(16)}` : value));
}


