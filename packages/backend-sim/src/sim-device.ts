/**
 * vfio-pci's device fd for the simulated edu devices: the device ioctls (GET_INFO, REGION_INFO,
 * IRQ_INFO, SET_IRQS with INTx, MSI and REQ, RESET, the hot reset pair, and a cdev's
 * BIND/ATTACH/DETACH_IOMMUFD), pread/pwrite of config space and BAR0 (the edu's registers and DMA
 * engine), and the device's release at its last close. Each handler takes the calling process (its
 * fd table and byte order).
 */
import { ERRNO } from '@ioas/core';
import { KernelError } from './kernel-error.js';
import type { SimDevice, Simulator } from './simulator.js';
import type { DeviceFile, EventfdFile, SimProcess } from './sim-syscalls.js';

// Request numbers (include/uapi/linux/vfio.h): _IO(VFIO_TYPE ';' = 0x3b, VFIO_BASE 100 + n), as on
// x86 and arm64 (the dispatcher drops PowerPC's direction bit before comparing).
/** _IO(VFIO_TYPE, VFIO_BASE + 7) */
const VFIO_DEVICE_GET_INFO = 0x3b6b;
/** _IO(VFIO_TYPE, VFIO_BASE + 8) */
const VFIO_DEVICE_GET_REGION_INFO = 0x3b6c;
/** _IO(VFIO_TYPE, VFIO_BASE + 9) */
const VFIO_DEVICE_GET_IRQ_INFO = 0x3b6d;
/** _IO(VFIO_TYPE, VFIO_BASE + 10) */
const VFIO_DEVICE_SET_IRQS = 0x3b6e;
/** _IO(VFIO_TYPE, VFIO_BASE + 11) */
const VFIO_DEVICE_RESET = 0x3b6f;
/** _IO(VFIO_TYPE, VFIO_BASE + 12) */
const VFIO_DEVICE_GET_PCI_HOT_RESET_INFO = 0x3b70;
/** _IO(VFIO_TYPE, VFIO_BASE + 13) */
const VFIO_DEVICE_PCI_HOT_RESET = 0x3b71;
/** _IO(VFIO_TYPE, VFIO_BASE + 18) */
const VFIO_DEVICE_BIND_IOMMUFD = 0x3b76;
/** _IO(VFIO_TYPE, VFIO_BASE + 19) */
const VFIO_DEVICE_ATTACH_IOMMUFD_PT = 0x3b77;
/** _IO(VFIO_TYPE, VFIO_BASE + 20) */
const VFIO_DEVICE_DETACH_IOMMUFD_PT = 0x3b78;

const DEVICE_FLAGS = { RESET: 0x1, PCI: 0x2 } as const;
const REGION_FLAGS = { READ: 0x1, WRITE: 0x2, MMAP: 0x4 } as const;
const IRQ_INFO = { EVENTFD: 0x1, MASKABLE: 0x2, AUTOMASKED: 0x4, NORESIZE: 0x8 } as const;
const IRQ_SET = { DATA_NONE: 0x1, DATA_BOOL: 0x2, DATA_EVENTFD: 0x4, ACTION_MASK: 0x8, ACTION_UNMASK: 0x10, ACTION_TRIGGER: 0x20 } as const;
const PCI_REGION = { BAR0: 0, CONFIG: 7, VGA: 8, COUNT: 9 } as const;
const PCI_IRQ = { INTX: 0, MSI: 1, MSIX: 2, ERR: 3, REQ: 4, COUNT: 5 } as const;
/**
 * Vectors per IRQ index, as vfio_pci_get_irq_count() counts them for an edu (every simulated PCI
 * device is one): INTx 1 (interrupt pin A), MSI 1 (its MSI capability's one vector), MSI-X 0 (no
 * capability), ERR 0 (not PCIe), REQ 1. An index past the last counts 0.
 */
const IRQ_COUNT = [1, 1, 0, 0, 1] as const;
/** PCI_COMMAND bits the simulator acts on: bus master (DMA, MSI writes) and INTx disable. */
const PCI_COMMAND = { MASTER: 0x4, INTX_DISABLE: 0x400 } as const;
/** vfio-pci places region i at file offset i << 40 (VFIO_PCI_OFFSET_SHIFT); callers treat it as opaque. */
const REGION_SHIFT = 40n;
const EDU_BAR0_SIZE = 0x10_0000n;

/**
 * A device's interrupt state in vfio-pci (struct vfio_pci_core_device): which of INTx, MSI or
 * nothing is on (`irq_type`), INTx's trigger, mask and unmask virqfd, MSI's vectors, the REQ
 * trigger and the virtual INTx-disable bit (`virq_disabled`). Triggers are the eventfds themselves,
 * as the kernel holds an eventfd_ctx: closing the fd does not unregister them.
 */
export interface DeviceIrqs {
  type: 'none' | 'intx' | 'msi';
  intxTrigger: EventfdFile | undefined;
  intxMasked: boolean;
  /** The INTx unmask eventfd (vfio_virqfd_enable): a write to it unmasks. */
  unmask: EventfdFile | undefined;
  /** One entry per enabled MSI vector: its eventfd, or undefined when de-assigned. */
  msi: (EventfdFile | undefined)[];
  req: EventfdFile | undefined;
  virqDisabled: boolean;
}

/** The edu's BAR0 registers and DMA buffer (QEMU hw/misc/edu.c); `intxLine`: edu asserts its INTx pin (raised while MSI is off, until acked). */
export interface EduRegisters {
  liveness: number;
  interruptStatus: number;
  intxLine: boolean;
  dmaSource: bigint;
  dmaDestination: bigint;
  dmaCount: bigint;
  dmaCommand: bigint;
  buffer: Uint8Array;
}

/** What each VFIO_DEVICE_SET_IRQS action handler gets. */
interface IrqArgs {
  readonly device: SimDevice;
  readonly state: DeviceIrqs;
  readonly start: number;
  readonly count: number;
  /** The one DATA_ flag. */
  readonly data: number;
  /** The whole argument: the data starts at byte 20. */
  readonly view: DataView;
}

/**
 * The ioctls of a vfio device fd (drivers/vfio/pci/vfio_pci_core.c vfio_pci_core_ioctl(); on a
 * cdev, first drivers/vfio/device_cdev.c's BIND/ATTACH/DETACH_IOMMUFD), for an edu on the root bus.
 */
export function deviceIoctl(proc: SimProcess, file: DeviceFile, request: number, argument: number | Uint8Array): number {
  const { device, cdev } = file;
  if (request === VFIO_DEVICE_BIND_IOMMUFD && (cdev !== undefined || proc.simulator.kernel === '6.12')) {
    // 6.12 drivers/vfio/device_cdev.c, vfio_df_ioctl_bind_iommufd(), on any device fd (vfio_main.c
    // dispatches it first; 6.1 has no cdevs, and vfio-pci answers a group's device fd ENOTTY), in order: argsz, flags or iommufd < 0 EINVAL; a group-obtained fd
    // EINVAL; /dev/vfio/N open EBUSY (group.c, vfio_device_block_group()); this fd bound already
    // EINVAL; then the iommufd fd (EBADF, EBADFD) and the bind itself.
    const view = proc.argView(proc.bytes(argument), 16);
    const fd = view.getInt32(8, proc.little);
    if (view.getUint32(4, proc.little) !== 0 || fd < 0 || cdev === undefined) return -ERRNO.EINVAL;
    const group = device.group === undefined ? undefined : proc.simulator.group(device.group);
    if (group?.opened) return -ERRNO.EBUSY;
    if (cdev.iommufd !== undefined) return -ERRNO.EINVAL;
    const target = proc.files.get(fd);
    if (target === undefined) return -ERRNO.EBADF;
    if (target.kind !== 'iommufd') return -ERRNO.EBADFD;
    cdev.id = target.context.bind(device);
    cdev.iommufd = target.context;
    view.setUint32(12, cdev.id, proc.little);
    return 0;
  }
  if (cdev !== undefined) {
    // Before bind every other device ioctl is EINVAL (docs/kernel-rules.md#binding-a-device-cdev).
    if (cdev.iommufd === undefined) return -ERRNO.EINVAL;
    if (request === VFIO_DEVICE_ATTACH_IOMMUFD_PT) {
      const view = proc.argView(proc.bytes(argument), 12);
      if (view.getUint32(4, proc.little) !== 0) return -ERRNO.EINVAL;
      // The kernel writes back the id of the domain it attached to (docs/kernel-rules.md#attaching-and-detaching-a-device).
      view.setUint32(8, cdev.iommufd.attach(cdev.id, view.getUint32(8, proc.little)), proc.little);
      return 0;
    }
    if (request === VFIO_DEVICE_DETACH_IOMMUFD_PT) {
      const view = proc.argView(proc.bytes(argument), 8);
      if (view.getUint32(4, proc.little) !== 0) return -ERRNO.EINVAL;
      cdev.iommufd.detach(cdev.id);
      return 0;
    }
  }
  switch (request) {
    case VFIO_DEVICE_GET_INFO: {
      // vfio_pci_ioctl_get_info() (drivers/vfio/pci/vfio_pci_core.c): argsz < 16 is EINVAL; the
      // reply is 16 bytes, or 20 (cap_offset 0) when argsz >= 20 on 6.1; min(argsz, 24) on 6.12,
      // whose struct has a zeroed pad after cap_offset. No caps on a conventional PCI device.
      const buffer = proc.bytes(argument);
      const view = proc.argView(buffer, 16);
      const argsz = view.getUint32(0, proc.little);
      const length = proc.simulator.kernel === '6.1' ? (argsz >= 20 ? 20 : 16) : Math.min(argsz, 24);
      if (buffer.byteLength < length) return -ERRNO.EFAULT; // copy_to_user past the caller's memory
      const out = new DataView(new ArrayBuffer(24));
      out.setUint32(0, argsz, proc.little);
      out.setUint32(4, DEVICE_FLAGS.PCI, proc.little);
      out.setUint32(8, PCI_REGION.COUNT, proc.little);
      out.setUint32(12, PCI_IRQ.COUNT, proc.little);
      buffer.set(new Uint8Array(out.buffer, 0, length));
      return 0;
    }
    case VFIO_DEVICE_GET_REGION_INFO: {
      const view = proc.argView(proc.bytes(argument), 32);
      const index = view.getUint32(8, proc.little);
      // vfio_pci_ioctl_get_region_info(): VGA (index 8) only with has_vga, which an edu (class
      // 0x00ff) has not; past the last region, EINVAL.
      if (index >= PCI_REGION.COUNT || index === PCI_REGION.VGA) return -ERRNO.EINVAL;
      let size = 0n;
      let flags = 0;
      if (index === PCI_REGION.BAR0 && device.edu) {
        size = EDU_BAR0_SIZE;
        flags = REGION_FLAGS.READ | REGION_FLAGS.WRITE | REGION_FLAGS.MMAP;
      } else if (index === PCI_REGION.CONFIG) {
        size = 0x100n;
        flags = REGION_FLAGS.READ | REGION_FLAGS.WRITE;
      }
      // Without caps the kernel never assigns cap_offset: the caller's value goes back as it was.
      view.setUint32(4, flags, proc.little);
      view.setBigUint64(16, size, proc.little);
      view.setBigUint64(24, BigInt(index) << REGION_SHIFT, proc.little);
      return 0;
    }
    case VFIO_DEVICE_GET_IRQ_INFO: {
      const view = proc.argView(proc.bytes(argument), 16);
      const index = view.getUint32(8, proc.little);
      if (index >= PCI_IRQ.COUNT || index === PCI_IRQ.ERR) return -ERRNO.EINVAL; // ERR needs PCIe
      const count = index === PCI_IRQ.MSIX ? 0 : 1;
      const flags = index === PCI_IRQ.INTX ? IRQ_INFO.EVENTFD | IRQ_INFO.MASKABLE | IRQ_INFO.AUTOMASKED : IRQ_INFO.EVENTFD | IRQ_INFO.NORESIZE;
      view.setUint32(4, flags, proc.little);
      view.setUint32(12, count, proc.little);
      return 0;
    }
    case VFIO_DEVICE_SET_IRQS:
      return setIrqs(proc, device, proc.bytes(argument));
    case VFIO_DEVICE_RESET:
      return -ERRNO.EINVAL; // edu does not advertise VFIO_DEVICE_FLAGS_RESET
    case VFIO_DEVICE_GET_PCI_HOT_RESET_INFO:
      // vfio_pci_ioctl_get_pci_hot_reset_info(): argsz < 12 is EINVAL; then neither a slot nor a
      // bus reset can be done for an edu on the root bus (no bridge, no hotplug slot): ENODEV.
      proc.argView(proc.bytes(argument), 12);
      return -ERRNO.ENODEV;
    case VFIO_DEVICE_PCI_HOT_RESET: {
      // vfio_pci_ioctl_pci_hot_reset(): argsz < 12 or flags is EINVAL; 6.12 also refuses a group
      // count on a cdev and none on a group fd (`!!hdr.count == vfio_device_cdev_opened()`); then ENODEV.
      const view = proc.argView(proc.bytes(argument), 12);
      if (view.getUint32(4, proc.little) !== 0) return -ERRNO.EINVAL;
      if (proc.simulator.kernel === '6.12' && (view.getUint32(8, proc.little) !== 0) === (cdev !== undefined)) return -ERRNO.EINVAL;
      return -ERRNO.ENODEV;
    }
    default:
      return -ERRNO.ENOTTY;
  }
}

/**
 * VFIO_DEVICE_SET_IRQS (docs/kernel-rules.md#setting-irqs), in the kernel's order: the header
 * (vfio_main.c vfio_set_irqs_validate_and_prepare(): EINVAL), the data copied in (EFAULT), the
 * index and action dispatched (vfio_pci_intrs.c vfio_pci_set_irqs_ioctl(): ENOTTY), then the
 * action itself. Nothing is written back.
 */
function setIrqs(proc: SimProcess, device: SimDevice, buffer: Uint8Array): number {
  const view = proc.argView(buffer, 20);
  const argsz = view.getUint32(0, proc.little);
  const flags = view.getUint32(4, proc.little);
  const index = view.getUint32(8, proc.little);
  const start = view.getUint32(12, proc.little);
  const count = view.getUint32(16, proc.little);
  // vfio_set_irqs_validate_and_prepare(): max is vfio_pci_get_irq_count(index), 0 past the last.
  const max = IRQ_COUNT[index as 0] ?? 0;
  if (index >= PCI_IRQ.COUNT || count >= 0xffff_ffff - start || (flags & ~0x3f) !== 0) return -ERRNO.EINVAL;
  // Bounds apply to count 0 too: an index with no vectors (MSI-X, ERR on an edu) takes nothing.
  if (start >= max || start + count > max) return -ERRNO.EINVAL;
  const data = flags & (IRQ_SET.DATA_NONE | IRQ_SET.DATA_BOOL | IRQ_SET.DATA_EVENTFD);
  const element = data === IRQ_SET.DATA_NONE ? 0 : data === IRQ_SET.DATA_BOOL ? 1 : data === IRQ_SET.DATA_EVENTFD ? 4 : -1;
  if (element < 0) return -ERRNO.EINVAL;
  if (argsz - 20 < count * element) return -ERRNO.EINVAL;
  // memdup_user() of the data argsz promises: past the caller's buffer it faults.
  if (20 + count * element > buffer.byteLength) return -ERRNO.EFAULT;
  const action = flags & (IRQ_SET.ACTION_MASK | IRQ_SET.ACTION_UNMASK | IRQ_SET.ACTION_TRIGGER);
  const args: IrqArgs = { device, state: irqState(device), start, count, data, view };
  // vfio_pci_set_irqs_ioctl(): exactly one action, and one the index has; else ENOTTY.
  if (index === PCI_IRQ.INTX) {
    if (action === IRQ_SET.ACTION_MASK) return intxMaskIoctl(proc, args);
    if (action === IRQ_SET.ACTION_UNMASK) return intxUnmaskIoctl(proc, args);
    if (action === IRQ_SET.ACTION_TRIGGER) return intxTrigger(proc, args);
  } else if (index === PCI_IRQ.MSI || index === PCI_IRQ.MSIX) {
    // MSI-X has no vectors on an edu, so the bounds above refuse it first.
    if (action === IRQ_SET.ACTION_TRIGGER) return msiTrigger(proc, args);
  } else if (index === PCI_IRQ.REQ) {
    if (action === IRQ_SET.ACTION_TRIGGER) return reqTrigger(proc, args);
  }
  // ERR: TRIGGER only on PCIe (pci_is_pcie()); an edu is conventional PCI (and ERR counts 0 vectors).
  return -ERRNO.ENOTTY;
}

function irqState(device: SimDevice): DeviceIrqs {
  device.irqs ??= { type: 'none', intxTrigger: undefined, intxMasked: false, unmask: undefined, msi: [], req: undefined, virqDisabled: false };
  return device.irqs;
}

/** The eventfd behind `fd`, as eventfd_ctx_fdget() finds it: EBADF when not open, EINVAL when not an eventfd. */
function eventfdOf(proc: SimProcess, fd: number): EventfdFile {
  const file = proc.files.get(fd);
  if (file === undefined) throw new KernelError(ERRNO.EBADF, 'VFIO_DEVICE_SET_IRQS', `fd ${fd} is not open`);
  if (file.kind !== 'eventfd') throw new KernelError(ERRNO.EINVAL, 'VFIO_DEVICE_SET_IRQS', `fd ${fd} is not an eventfd`);
  return file;
}

/**
 * eventfd_signal(): the count grows, whether or not an fd still names it, and the eventfd's waiters
 * wake: an INTx unmask virqfd on the same eventfd reads the count at once (virqfd_wakeup()), so a
 * trigger that shares its eventfd with the unmask leaves nothing for the user to read.
 */
function signalEventfd(file: EventfdFile | undefined): void {
  if (file === undefined) return;
  file.count += 1n;
  file.virqfd?.();
}

/** Set while an unmask virqfd runs: its re-signal of a still-pending INTx does not wake it again at once (the kernel's runs from a workqueue). */
let waking = false;

/** The INTx unmask virqfd goes (vfio_virqfd_disable()): its eventfd wakes nothing any more. */
function dropUnmask(state: DeviceIrqs): void {
  if (state.unmask !== undefined) state.unmask.virqfd = undefined;
  state.unmask = undefined;
}

/** The INTx unmask virqfd of `device` registered on `file` (vfio_virqfd_enable()). */
function setUnmask(device: SimDevice, state: DeviceIrqs, file: EventfdFile): void {
  dropUnmask(state);
  state.unmask = file;
  // virqfd_wakeup(): eventfd_ctx_do_read() empties the count, then vfio_pci_intx_unmask_handler()
  // runs, and vfio_send_intx_eventfd() signals again when the line is still asserted.
  file.virqfd = () => {
    if (waking) return;
    waking = true;
    try {
      file.count = 0n;
      if (intxUnmaskHandler(device, state)) sendIntx(state);
    } finally {
      waking = false;
    }
  };
}

// --- INTx (vfio_pci_intrs.c) ----------------------------------------------------------------

/** vfio_pci_set_intx_trigger(). */
function intxTrigger(proc: SimProcess, { device, state, start, count, data, view }: IrqArgs): number {
  if (state.type === 'intx' && count === 0 && data === IRQ_SET.DATA_NONE) {
    intxDisable(state);
    return 0;
  }
  if (!(state.type === 'intx' || state.type === 'none') || start !== 0 || count !== 1) return -ERRNO.EINVAL;
  if (data === IRQ_SET.DATA_EVENTFD) {
    // Any negative fd means no eventfd: INTx is enabled (or stays on) with no trigger.
    const fd = view.getInt32(20, proc.little);
    const trigger = fd >= 0 ? eventfdOf(proc, fd) : undefined;
    if (state.type === 'intx') {
      state.intxTrigger = trigger; // vfio_intx_set_signal()
      return 0;
    }
    // vfio_intx_enable(): masked from the start when INTx is disabled in the command register.
    state.type = 'intx';
    state.intxTrigger = trigger;
    state.intxMasked = state.virqDisabled;
    intxCheck(device, state); // a line already asserted interrupts as soon as the handler is in
    return 0;
  }
  if (state.type !== 'intx') return -ERRNO.EINVAL;
  // Loopback: vfio_send_intx_eventfd(), whatever the mask.
  if (data === IRQ_SET.DATA_NONE || view.getUint8(20) !== 0) sendIntx(state);
  return 0;
}

/** vfio_pci_set_intx_mask(). */
function intxMaskIoctl(proc: SimProcess, { state, start, count, data, view }: IrqArgs): number {
  if (state.type !== 'intx' || start !== 0 || count !== 1) return -ERRNO.EINVAL;
  if (data === IRQ_SET.DATA_EVENTFD) return -ERRNO.ENOTTY; // "XXX implement me"
  if (data === IRQ_SET.DATA_NONE || view.getUint8(20) !== 0) state.intxMasked = true;
  return 0;
}

/** vfio_pci_set_intx_unmask(). */
function intxUnmaskIoctl(proc: SimProcess, { device, state, start, count, data, view }: IrqArgs): number {
  if (state.type !== 'intx' || start !== 0 || count !== 1) return -ERRNO.EINVAL;
  if (data === IRQ_SET.DATA_EVENTFD) {
    const fd = view.getInt32(20, proc.little);
    if (fd < 0) {
      dropUnmask(state); // vfio_virqfd_disable()
      return 0;
    }
    // vfio_virqfd_enable(): EBADF, EINVAL (not an eventfd), then EBUSY when one is registered.
    const file = eventfdOf(proc, fd);
    if (state.unmask !== undefined) return -ERRNO.EBUSY;
    setUnmask(device, state, file);
    // A count already pending runs the handler at once (without reading the count).
    if (file.count > 0n && intxUnmaskHandler(device, state)) sendIntx(state);
    return 0;
  }
  if (data === IRQ_SET.DATA_NONE || view.getUint8(20) !== 0) {
    if (intxUnmaskHandler(device, state)) sendIntx(state);
  }
  return 0;
}

/**
 * vfio_pci_intx_unmask_handler(): a masked INTx (not disabled in the command register) unmasks,
 * unless the device still asserts the line: then it stays masked and the caller signals again
 * (returns true).
 */
function intxUnmaskHandler(device: SimDevice, state: DeviceIrqs): boolean {
  if (state.type !== 'intx' || !state.intxMasked || state.virqDisabled) return false;
  const pending = device.eduRegisters?.intxLine === true;
  state.intxMasked = pending;
  return pending;
}

/** vfio_send_intx_eventfd(): INTx on and not disabled in the command register. */
function sendIntx(state: DeviceIrqs): void {
  if (state.type === 'intx' && !state.virqDisabled) signalEventfd(state.intxTrigger);
}

/** vfio_intx_handler(): an unmasked INTx whose line is asserted masks itself and signals. */
function intxCheck(device: SimDevice, state: DeviceIrqs): void {
  if (state.type !== 'intx' || state.intxMasked || device.eduRegisters?.intxLine !== true) return;
  state.intxMasked = true;
  sendIntx(state);
}

/** vfio_intx_disable(): the unmask virqfd and the trigger dropped. */
function intxDisable(state: DeviceIrqs): void {
  state.type = 'none';
  state.intxTrigger = undefined;
  state.intxMasked = false;
  dropUnmask(state);
}

// --- MSI (vfio_pci_intrs.c) -----------------------------------------------------------------

/** vfio_pci_set_msi_trigger(). */
function msiTrigger(proc: SimProcess, { device, state, start, count, data, view }: IrqArgs): number {
  if (state.type === 'msi' && count === 0 && data === IRQ_SET.DATA_NONE) {
    msiDisable(device, state);
    return 0;
  }
  if (!(state.type === 'msi' || state.type === 'none')) return -ERRNO.EINVAL;
  if (data === IRQ_SET.DATA_EVENTFD) {
    const fds = Array.from({ length: count }, (_, vector) => view.getInt32(20 + vector * 4, proc.little));
    if (state.type === 'msi') return msiSetBlock(proc, state, start, fds);
    // vfio_msi_enable(): pci_alloc_irq_vectors(pdev, 1, start + count) refuses 0 vectors (ERANGE).
    const vectors = start + count;
    if (vectors === 0) return -ERRNO.ERANGE;
    // The kernel programs the doorbell (it may refuse: PAMU without a bank window).
    device.enableMsi(Array.from({ length: vectors }, (_, vector) => () => signalEventfd(state.msi[vector])));
    state.type = 'msi';
    state.msi = new Array<EventfdFile | undefined>(vectors).fill(undefined);
    const result = msiSetBlock(proc, state, start, fds);
    if (result !== 0) msiDisable(device, state);
    return result;
  }
  // Loopback (DATA_NONE / DATA_BOOL): the kernel signals the vectors' eventfds itself.
  if (state.type !== 'msi') return -ERRNO.EINVAL;
  if (proc.simulator.kernel === '6.1' && start + count > state.msi.length) return -ERRNO.EINVAL;
  for (let vector = start; vector < start + count; vector++) {
    if (data === IRQ_SET.DATA_NONE || view.getUint8(20 + vector - start) !== 0) signalEventfd(state.msi[vector]);
  }
  return 0;
}

/**
 * vfio_msi_set_block(): each vector's old eventfd is dropped first, then a negative fd leaves it
 * without one; a failure de-assigns the vectors from `start` to the one that failed, MSI staying on.
 */
function msiSetBlock(proc: SimProcess, state: DeviceIrqs, start: number, fds: readonly number[]): number {
  if (proc.simulator.kernel === '6.1' && (start >= state.msi.length || start + fds.length > state.msi.length)) return -ERRNO.EINVAL;
  for (let i = 0; i < fds.length; i++) {
    const vector = start + i;
    state.msi[vector] = undefined;
    const fd = fds[i]!;
    if (fd < 0) continue;
    try {
      state.msi[vector] = eventfdOf(proc, fd);
    } catch (error) {
      for (let undo = start; undo < vector; undo++) state.msi[undo] = undefined;
      if (error instanceof KernelError) return -error.errno;
      throw error;
    }
  }
  return 0;
}

/** vfio_msi_disable(). */
function msiDisable(device: SimDevice, state: DeviceIrqs): void {
  device.disableMsi();
  state.type = 'none';
  state.msi = [];
}

// --- REQ (vfio_pci_intrs.c) -----------------------------------------------------------------

/** vfio_pci_set_req_trigger() and vfio_pci_set_ctx_trigger_single(). */
function reqTrigger(proc: SimProcess, { state, start, count, data, view }: IrqArgs): number {
  if (start !== 0 || count > 1) return -ERRNO.EINVAL;
  if (data === IRQ_SET.DATA_NONE) {
    if (state.req === undefined) return -ERRNO.EINVAL;
    if (count === 1) signalEventfd(state.req);
    else state.req = undefined;
    return 0;
  }
  if (count === 0) return -ERRNO.EINVAL;
  if (data === IRQ_SET.DATA_BOOL) {
    if (view.getUint8(20) !== 0) signalEventfd(state.req);
    return 0;
  }
  const fd = view.getInt32(20, proc.little);
  if (fd === -1) {
    state.req = undefined;
    return 0;
  }
  if (fd >= 0) {
    state.req = eventfdOf(proc, fd);
    return 0;
  }
  // fd <= -2: 6.1 ignores it (returns 0, nothing changes); 6.12 falls through to EINVAL.
  return proc.simulator.kernel === '6.1' ? 0 : -ERRNO.EINVAL;
}

// --- device regions ---------------------------------------------------------------------------

/** pread/pwrite of a device fd: the region is `offset >> VFIO_PCI_OFFSET_SHIFT` (config space, the edu's BAR0). */
export function regionAccess(proc: SimProcess, fd: number, buffer: Uint8Array, offset: bigint, write: boolean): number {
  const file = proc.files.get(fd);
  if (file === undefined) return -ERRNO.EBADF;
  if (file.kind !== 'device') return -ERRNO.EINVAL;
  if (file.cdev !== undefined && file.cdev.iommufd === undefined) return -ERRNO.EINVAL;
  const index = Number(offset >> REGION_SHIFT);
  const at = Number(offset & ((1n << REGION_SHIFT) - 1n));
  if (index === PCI_REGION.CONFIG) {
    const config = configSpace(file.device);
    if (at >= config.length) return 0;
    const count = Math.min(buffer.byteLength, config.length - at);
    if (write) {
      // Only the command register (offset 4) is writable in this model.
      for (let byte = 0; byte < count; byte++) if (at + byte === 4 || at + byte === 5) config[at + byte] = buffer[byte]!;
      if (at <= 5 && at + count > 4) commandWritten(proc, file.device, config);
    } else {
      buffer.set(config.subarray(at, at + count));
    }
    return count;
  }
  if (index === PCI_REGION.BAR0 && file.device.edu) return eduAccess(proc, file.device, buffer, at, write);
  return -ERRNO.EINVAL;
}

/**
 * A write to PCI_COMMAND: the INTx-disable bit sets or clears virq_disabled, masking or unmasking
 * INTx (drivers/vfio/pci/vfio_pci_config.c vfio_basic_config_write(), "Emulate INTx disable").
 */
function commandWritten(proc: SimProcess, device: SimDevice, config: Uint8Array): void {
  const disabled = ((config[4]! | (config[5]! << 8)) & PCI_COMMAND.INTX_DISABLE) !== 0;
  const state = irqState(device);
  if (disabled && !state.virqDisabled) {
    state.virqDisabled = true;
    if (state.type === 'intx') state.intxMasked = true; // vfio_pci_intx_mask()
  } else if (!disabled && state.virqDisabled) {
    state.virqDisabled = false;
    if (intxUnmaskHandler(device, state)) sendIntx(state); // vfio_pci_intx_unmask()
  }
}

/**
 * The edu raises an interrupt (QEMU hw/misc/edu.c edu_raise_irq()): an MSI when the kernel enabled
 * MSI in it (a memory write, so bus master is needed), else its INTx pin, which stays asserted
 * until the status is acked.
 */
function eduRaise(device: SimDevice, state: { interruptStatus: number; intxLine: boolean }, busMaster: boolean): void {
  if (state.interruptStatus === 0) return;
  // The MSI enable bit of the edu's capability: set when the kernel enabled MSI for it.
  if (device.msiVectors > 0) {
    if (busMaster) device.raiseMsi(0);
    return;
  }
  state.intxLine = true;
  if (device.irqs !== undefined) intxCheck(device, device.irqs);
}

function configSpace(device: SimDevice): Uint8Array {
  let config = device.configSpace;
  if (config === undefined) {
    config = new Uint8Array(256);
    const view = new DataView(config.buffer);
    // PCI config space is little-endian whatever the CPU.
    view.setUint16(0, device.vendor, true);
    view.setUint16(2, device.deviceId, true);
    view.setUint8(0x0b, 0x00);
    device.configSpace = config;
  }
  return config;
}

/** The edu device's BAR0 registers (docs/kernel-rules.md#edu-registers): identification, liveness, DMA engine, interrupts. */
function eduAccess(proc: SimProcess, device: SimDevice, buffer: Uint8Array, at: number, write: boolean): number {
  const state = (device.eduRegisters ??= { liveness: 0, interruptStatus: 0, intxLine: false, dmaSource: 0n, dmaDestination: 0n, dmaCount: 0n, dmaCommand: 0n, buffer: new Uint8Array(4096) });
  const size = buffer.byteLength;
  if (size !== 4 && size !== 8) return -ERRNO.EINVAL;
  // MMIO registers are little-endian on the PCI bus.
  const view = proc.view(buffer);
  const value = size === 8 ? view.getBigUint64(0, true) : BigInt(view.getUint32(0, true));
  const busMaster = (configSpace(device)[4]! & 0x4) !== 0;
  if (write) {
    switch (at) {
      case 0x04:
        state.liveness = Number(value & 0xffff_ffffn);
        break;
      case 0x60:
        state.interruptStatus |= Number(value & 0xffff_ffffn);
        eduRaise(device, state, busMaster);
        break;
      case 0x64:
        // edu_lower_irq(): the pin goes down once no status bit is left (and MSI is off).
        state.interruptStatus &= ~Number(value & 0xffff_ffffn);
        if (state.interruptStatus === 0 && device.msiVectors === 0) state.intxLine = false;
        break;
      case 0x80:
        state.dmaSource = value;
        break;
      case 0x88:
        state.dmaDestination = value;
        break;
      case 0x90:
        state.dmaCount = value;
        break;
      case 0x98:
        state.dmaCommand = value;
        if ((value & 1n) !== 0n) eduDma(proc, device, state, busMaster);
        break;
      default:
        break;
    }
    return size;
  }
  let result = 0n;
  switch (at) {
    case 0x00:
      result = 0x0100_00edn;
      break;
    case 0x04:
      result = BigInt(~state.liveness >>> 0);
      break;
    case 0x24:
      result = BigInt(state.interruptStatus >>> 0);
      break;
    case 0x80:
      result = state.dmaSource;
      break;
    case 0x88:
      result = state.dmaDestination;
      break;
    case 0x90:
      result = state.dmaCount;
      break;
    case 0x98:
      result = state.dmaCommand;
      break;
    default:
      result = 0n;
  }
  if (size === 8) view.setBigUint64(0, result, true);
  else view.setUint32(0, Number(result & 0xffff_ffffn), true);
  return size;
}

/** The edu DMA engine: between its 4 KiB buffer at device address 0x40000 and host IOVAs, done at once. */
function eduDma(proc: SimProcess, device: SimDevice, state: EduRegisters, busMaster: boolean): void {
  const toRam = (state.dmaCommand & 2n) !== 0n;
  const count = Number(state.dmaCount);
  const bufferBase = 0x40000n;
  // edu masks DMA addresses to 28 bits (docs/kernel-rules.md#edu-dma-address-mask).
  const mask = (1n << 28n) - 1n;
  if (count === 4096) {
    // QEMU 7.2's edu aborts the whole VM on a DMA of exactly 4096 bytes (off-by-one;
    // docs/kernel-rules.md#edu-dma-of-4096-bytes).
    proc.simulator.oopses.push('edu: QEMU 7.2 aborts the VM on a DMA of exactly 4096 bytes; keep transfers <= 4095');
  } else if (busMaster && count > 0 && count < 4096) {
    if (toRam) {
      const from = Number(state.dmaSource - bufferBase);
      device.dmaWrite(state.dmaDestination & mask, state.buffer.subarray(from, from + count));
    } else {
      const bytes = device.dmaRead(state.dmaSource & mask, count);
      if (bytes !== undefined) state.buffer.set(bytes, Number(state.dmaDestination - bufferBase));
    }
  }
  state.dmaCommand &= ~1n;
  if ((state.dmaCommand & 4n) !== 0n) {
    state.interruptStatus |= 0x100;
    eduRaise(device, state, busMaster);
  }
}

/**
 * A device fd's release: only the last close of the device turns it off (6.1 vfio_main.c
 * vfio_device_fops_release(), 6.12 vfio_df_close(): close_device when open_count is 1), which
 * vfio_pci_core_disable() does: bus master cleared, the enabled IRQ type disabled, virq_disabled
 * reset, the ERR and REQ triggers dropped (vfio_pci_core.c).
 */
export function deviceClosed(device: SimDevice): void {
  device.openCount--;
  if (device.openCount > 0) return;
  device.openCount = 0;
  const state = device.irqs;
  if (state !== undefined) {
    if (state.type === 'intx') intxDisable(state);
    if (state.type === 'msi') msiDisable(device, state);
  }
  device.irqs = undefined;
  const config = device.configSpace;
  if (config !== undefined) {
    config[4]! &= ~PCI_COMMAND.MASTER;
    config[5]! &= ~(PCI_COMMAND.INTX_DISABLE >> 8);
  }
}

/**
 * An eventfd's fd is closed: an INTx unmask eventfd's virqfd goes (EPOLLHUP, drivers/vfio/virqfd.c
 * virqfd_wakeup()); a trigger stays registered, as the kernel holds its eventfd_ctx.
 */
export function eventfdClosed(simulator: Simulator, file: EventfdFile): void {
  for (const device of simulator.devices()) if (device.irqs?.unmask === file) dropUnmask(device.irqs);
}

/**
 * A write to an eventfd wakes its waiters as a signal does: an INTx unmask virqfd on it reads the
 * count and unmasks (drivers/vfio/virqfd.c virqfd_wakeup(); the kernel re-signals a still-pending
 * INTx from a workqueue, here at once).
 */
export function eventfdWritten(file: EventfdFile): void {
  file.virqfd?.();
}
