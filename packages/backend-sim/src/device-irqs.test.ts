// The VFIO device ioctls of vfio-pci on an edu, spoken in raw bytes, against the kernel sources
// (6.1 and 6.12): drivers/vfio/vfio_main.c vfio_set_irqs_validate_and_prepare(),
// drivers/vfio/pci/vfio_pci_intrs.c (vfio_pci_set_irqs_ioctl() and the per-index functions),
// drivers/vfio/pci/vfio_pci_core.c (vfio_pci_ioctl_get_info(), _get_region_info(), the hot-reset
// ioctls, vfio_pci_core_disable()). Each refusal also checks that nothing changed.
import { ERRNO, IoasError, SYSCALL_FLAGS } from '@ioas/core';
import { describe, expect, it } from 'vitest';
import type { SimKernel } from './platforms.js';
import { type1ByHand } from './__fixtures__/type1-by-hand.js';
import { createSimulator } from './simulator.js';

const NR = { GET_INFO: 107, REGION_INFO: 108, SET_IRQS: 110, HOT_RESET_INFO: 112, HOT_RESET: 113 } as const;
const req = (nr: number) => 0x3b00 + nr;
const SET = { NONE: 0x1, BOOL: 0x2, EVENTFD: 0x4, MASK: 0x8, UNMASK: 0x10, TRIGGER: 0x20 } as const;
const IRQ = { INTX: 0, MSI: 1, MSIX: 2, ERR: 3, REQ: 4 } as const;
/** An fd number open on neither side: fdget() fails, EBADF. */
const CLOSED_FD = 1_000_000;
const CONFIG = 7n << 40n;

function machine(kernel?: SimKernel) {
  const { simulator, sys, edu, container, group } = type1ByHand({ kernel });
  const openDevice = () => {
    const device = sys.ioctl(group, req(106), new TextEncoder().encode(`${edu.address}\0`));
    expect(device).toBeGreaterThan(0);
    return device;
  };
  const device = openDevice();
  const eventfd = () => sys.eventfd(0, SYSCALL_FLAGS.EFD_NONBLOCK | SYSCALL_FLAGS.EFD_CLOEXEC);
  /** The eventfd's count, read and cleared (0 when nothing was signalled). */
  const count = (fd: number): bigint => {
    const buffer = new Uint8Array(8);
    const result = sys.read(fd, buffer);
    if (result === -ERRNO.EAGAIN) return 0n;
    expect(result).toBe(8);
    return new DataView(buffer.buffer).getBigUint64(0, true);
  };
  /** VFIO_DEVICE_SET_IRQS; `data` are s32 fds (DATA_EVENTFD) or u8 bools (DATA_BOOL). */
  const set = (flags: number, index: number, start: number, count: number, data: number[] = [], options: { argsz?: number; on?: number } = {}): number => {
    const element = (flags & 0x7) === SET.BOOL ? 1 : 4;
    const bytes = new Uint8Array(20 + data.length * element);
    const view = new DataView(bytes.buffer);
    view.setUint32(0, options.argsz ?? bytes.length, true);
    view.setUint32(4, flags, true);
    view.setUint32(8, index, true);
    view.setUint32(12, start, true);
    view.setUint32(16, count, true);
    data.forEach((value, i) => (element === 1 ? view.setUint8(20 + i, value) : view.setInt32(20 + i * 4, value, true)));
    return sys.ioctl(options.on ?? device, req(NR.SET_IRQS), bytes);
  };
  const write32 = (offset: bigint, value: number, on = device) => {
    const bytes = new Uint8Array(4);
    new DataView(bytes.buffer).setUint32(0, value, true);
    expect(sys.pwrite(on, bytes, offset)).toBe(4);
  };
  const command = (value: number) => {
    const bytes = new Uint8Array(2);
    new DataView(bytes.buffer).setUint16(0, value, true);
    expect(sys.pwrite(device, bytes, CONFIG + 4n)).toBe(2);
  };
  const eduRaise = () => write32(0x60n, 1);
  const eduAck = () => write32(0x64n, 0xffff_ffff);
  return { simulator, sys, edu, container, group, device, openDevice, eventfd, count, set, command, eduRaise, eduAck };
}

const msiOn = (m: ReturnType<typeof machine>) => m.edu.msiVectors;

describe('VFIO_DEVICE_SET_IRQS header: vfio_main.c vfio_set_irqs_validate_and_prepare()', () => {
  it('argsz below 20, an index past ERR... REQ, an unknown flag bit: EINVAL, MSI left off', () => {
    const m = machine();
    const e = m.eventfd();
    expect(m.set(SET.EVENTFD | SET.TRIGGER, IRQ.MSI, 0, 1, [e], { argsz: 19 })).toBe(-ERRNO.EINVAL);
    expect(m.set(SET.EVENTFD | SET.TRIGGER, 5, 0, 1, [e])).toBe(-ERRNO.EINVAL);
    expect(m.set(SET.EVENTFD | SET.TRIGGER | 0x40, IRQ.MSI, 0, 1, [e])).toBe(-ERRNO.EINVAL);
    expect(msiOn(m)).toBe(0);
  });

  it('count >= U32_MAX - start is EINVAL, even for a count-0 disable of the enabled index', () => {
    const m = machine();
    expect(m.set(SET.EVENTFD | SET.TRIGGER, IRQ.MSI, 0, 1, [m.eventfd()])).toBe(0);
    expect(m.set(SET.NONE | SET.TRIGGER, IRQ.MSI, 0xffff_ffff, 0)).toBe(-ERRNO.EINVAL);
    expect(msiOn(m)).toBe(1);
  });

  it('start and count are bounded by the index\'s vectors with count 0 too: MSI-X and ERR (0 vectors on an edu) take nothing, start 1 is past MSI', () => {
    const m = machine();
    expect(m.set(SET.EVENTFD | SET.TRIGGER, IRQ.MSI, 0, 1, [m.eventfd()])).toBe(0);
    expect(m.set(SET.NONE | SET.TRIGGER, IRQ.MSIX, 0, 0)).toBe(-ERRNO.EINVAL);
    expect(m.set(SET.NONE | SET.TRIGGER, IRQ.ERR, 0, 0)).toBe(-ERRNO.EINVAL);
    expect(m.set(SET.NONE | SET.TRIGGER, IRQ.MSI, 1, 0)).toBe(-ERRNO.EINVAL);
    expect(m.set(SET.EVENTFD | SET.TRIGGER, IRQ.MSI, 0, 2, [m.eventfd(), m.eventfd()])).toBe(-ERRNO.EINVAL);
    expect(msiOn(m)).toBe(1);
  });

  it('a data type that is not exactly one of NONE, BOOL, EVENTFD is EINVAL, before the action is looked at (ENOTTY)', () => {
    const m = machine();
    for (const data of [0, SET.NONE | SET.BOOL, SET.BOOL | SET.EVENTFD]) {
      expect(m.set(data | SET.TRIGGER, IRQ.MSI, 0, 1, [0])).toBe(-ERRNO.EINVAL);
      expect(m.set(data | SET.MASK | SET.UNMASK, IRQ.MSI, 0, 1, [0])).toBe(-ERRNO.EINVAL);
    }
    expect(msiOn(m)).toBe(0);
  });

  it('argsz short of count * element is EINVAL; argsz promising more than the buffer holds is EFAULT (memdup_user), not a thrown exception', () => {
    const m = machine();
    const e = m.eventfd();
    expect(m.set(SET.EVENTFD | SET.TRIGGER, IRQ.MSI, 0, 1, [e], { argsz: 23 })).toBe(-ERRNO.EINVAL);
    // A 20-byte buffer whose argsz claims an eventfd after it.
    expect(m.set(SET.EVENTFD | SET.TRIGGER, IRQ.MSI, 0, 1, [], { argsz: 24 })).toBe(-ERRNO.EFAULT);
    expect(m.set(SET.BOOL | SET.TRIGGER, IRQ.REQ, 0, 1, [], { argsz: 21 })).toBe(-ERRNO.EFAULT);
    expect(msiOn(m)).toBe(0);
  });
});

describe('VFIO_DEVICE_SET_IRQS dispatch: vfio_pci_intrs.c vfio_pci_set_irqs_ioctl()', () => {
  it('no action bit, two action bits, MSI MASK or UNMASK, REQ MASK: ENOTTY, nothing changed', () => {
    const m = machine();
    const e = m.eventfd();
    expect(m.set(SET.EVENTFD | SET.TRIGGER, IRQ.MSI, 0, 1, [e])).toBe(0);
    expect(m.set(SET.NONE, IRQ.MSI, 0, 1)).toBe(-ERRNO.ENOTTY);
    expect(m.set(SET.NONE | SET.MASK | SET.UNMASK, IRQ.INTX, 0, 1)).toBe(-ERRNO.ENOTTY);
    expect(m.set(SET.NONE | SET.MASK | SET.TRIGGER, IRQ.MSI, 0, 0)).toBe(-ERRNO.ENOTTY);
    expect(m.set(SET.NONE | SET.MASK, IRQ.MSI, 0, 1)).toBe(-ERRNO.ENOTTY);
    expect(m.set(SET.NONE | SET.UNMASK, IRQ.MSI, 0, 1)).toBe(-ERRNO.ENOTTY);
    expect(m.set(SET.NONE | SET.MASK, IRQ.REQ, 0, 1)).toBe(-ERRNO.ENOTTY);
    expect(msiOn(m)).toBe(1);
    expect(m.count(e)).toBe(0n);
  });
});

describe('MSI: vfio_pci_intrs.c vfio_pci_set_msi_trigger()', () => {
  it('disabling MSI that is not enabled is EINVAL (only the enabled index is disabled by DATA_NONE count 0)', () => {
    const m = machine();
    expect(m.set(SET.NONE | SET.TRIGGER, IRQ.MSI, 0, 0)).toBe(-ERRNO.EINVAL);
    expect(m.set(SET.EVENTFD | SET.TRIGGER, IRQ.MSI, 0, 1, [m.eventfd()])).toBe(0);
    expect(m.set(SET.NONE | SET.TRIGGER, IRQ.MSI, 0, 0)).toBe(0);
    expect(msiOn(m)).toBe(0);
    expect(m.set(SET.NONE | SET.TRIGGER, IRQ.MSI, 0, 0)).toBe(-ERRNO.EINVAL);
  });

  it('loopback (NONE, BOOL) signals the vector\'s eventfd itself: no device write, no bus master, no interrupt recorded; EINVAL while MSI is off', () => {
    const m = machine();
    const e = m.eventfd();
    expect(m.set(SET.NONE | SET.TRIGGER, IRQ.MSI, 0, 1)).toBe(-ERRNO.EINVAL);
    expect(m.set(SET.BOOL | SET.TRIGGER, IRQ.MSI, 0, 1, [1])).toBe(-ERRNO.EINVAL);
    expect(m.set(SET.EVENTFD | SET.TRIGGER, IRQ.MSI, 0, 1, [e])).toBe(0);
    expect(m.set(SET.NONE | SET.TRIGGER, IRQ.MSI, 0, 1)).toBe(0);
    expect(m.count(e)).toBe(1n);
    expect(m.set(SET.BOOL | SET.TRIGGER, IRQ.MSI, 0, 1, [0])).toBe(0);
    expect(m.count(e)).toBe(0n);
    expect(m.set(SET.BOOL | SET.TRIGGER, IRQ.MSI, 0, 1, [1])).toBe(0);
    expect(m.count(e)).toBe(1n);
    expect(m.simulator.interrupts).toEqual([]);
    expect(m.simulator.faults).toEqual([]);
  });

  it('a device-raised MSI goes through the doorbell to the eventfd once bus master is on', () => {
    const m = machine();
    const e = m.eventfd();
    expect(m.set(SET.EVENTFD | SET.TRIGGER, IRQ.MSI, 0, 1, [e])).toBe(0);
    m.eduRaise();
    expect(m.count(e)).toBe(0n); // bus master off: the edu cannot write its MSI
    m.eduAck();
    m.command(0x6);
    m.eduRaise();
    expect(m.count(e)).toBe(1n);
    expect(m.simulator.interrupts).toHaveLength(1);
  });

  it('any negative fd de-assigns (enables with no eventfd, or drops the vector\'s)', () => {
    const m = machine();
    const e = m.eventfd();
    expect(m.set(SET.EVENTFD | SET.TRIGGER, IRQ.MSI, 0, 1, [-2])).toBe(0);
    expect(msiOn(m)).toBe(1);
    expect(m.set(SET.EVENTFD | SET.TRIGGER, IRQ.MSI, 0, 1, [e])).toBe(0);
    expect(m.set(SET.EVENTFD | SET.TRIGGER, IRQ.MSI, 0, 1, [-7])).toBe(0);
    expect(m.set(SET.NONE | SET.TRIGGER, IRQ.MSI, 0, 1)).toBe(0);
    expect(m.count(e)).toBe(0n);
    expect(msiOn(m)).toBe(1);
  });

  it('enabling with an fd that is not open is EBADF, with one that is no eventfd EINVAL: MSI stays off (vfio_msi_disable after set_block)', () => {
    const m = machine();
    expect(m.set(SET.EVENTFD | SET.TRIGGER, IRQ.MSI, 0, 1, [CLOSED_FD])).toBe(-ERRNO.EBADF);
    expect(msiOn(m)).toBe(0);
    expect(m.set(SET.EVENTFD | SET.TRIGGER, IRQ.MSI, 0, 1, [m.container])).toBe(-ERRNO.EINVAL);
    expect(msiOn(m)).toBe(0);
    expect(m.set(SET.NONE | SET.TRIGGER, IRQ.MSI, 0, 1)).toBe(-ERRNO.EINVAL); // still off
  });

  it('a failed re-assignment drops the vector\'s old eventfd and leaves MSI on (vfio_msi_set_block)', () => {
    const m = machine();
    const e = m.eventfd();
    expect(m.set(SET.EVENTFD | SET.TRIGGER, IRQ.MSI, 0, 1, [e])).toBe(0);
    expect(m.set(SET.EVENTFD | SET.TRIGGER, IRQ.MSI, 0, 1, [CLOSED_FD])).toBe(-ERRNO.EBADF);
    expect(msiOn(m)).toBe(1);
    expect(m.set(SET.NONE | SET.TRIGGER, IRQ.MSI, 0, 1)).toBe(0);
    expect(m.count(e)).toBe(0n);
  });

  it('EVENTFD with count 0: ERANGE while MSI is off (pci_alloc_irq_vectors of 0 vectors), a no-op while it is on', () => {
    const m = machine();
    const e = m.eventfd();
    expect(m.set(SET.EVENTFD | SET.TRIGGER, IRQ.MSI, 0, 0)).toBe(-ERRNO.ERANGE);
    expect(msiOn(m)).toBe(0);
    expect(m.set(SET.EVENTFD | SET.TRIGGER, IRQ.MSI, 0, 1, [e])).toBe(0);
    expect(m.set(SET.EVENTFD | SET.TRIGGER, IRQ.MSI, 0, 0)).toBe(0);
    expect(m.set(SET.NONE | SET.TRIGGER, IRQ.MSI, 0, 1)).toBe(0);
    expect(m.count(e)).toBe(1n);
  });

  it('MSI is refused while INTx is on, and INTx while MSI is on (one irq_type at a time)', () => {
    const m = machine();
    const intx = m.eventfd();
    const msi = m.eventfd();
    expect(m.set(SET.EVENTFD | SET.TRIGGER, IRQ.INTX, 0, 1, [intx])).toBe(0);
    expect(m.set(SET.EVENTFD | SET.TRIGGER, IRQ.MSI, 0, 1, [msi])).toBe(-ERRNO.EINVAL);
    expect(msiOn(m)).toBe(0);
    expect(m.set(SET.NONE | SET.TRIGGER, IRQ.INTX, 0, 0)).toBe(0);
    expect(m.set(SET.EVENTFD | SET.TRIGGER, IRQ.MSI, 0, 1, [msi])).toBe(0);
    expect(m.set(SET.EVENTFD | SET.TRIGGER, IRQ.INTX, 0, 1, [intx])).toBe(-ERRNO.EINVAL);
    expect(m.set(SET.NONE | SET.TRIGGER, IRQ.INTX, 0, 1)).toBe(-ERRNO.EINVAL); // INTx loopback: INTx is not on
    expect(msiOn(m)).toBe(1);
    expect(m.count(intx)).toBe(0n);
  });

  it('a trigger whose fd was closed stays registered: the kernel holds the eventfd_ctx', () => {
    const m = machine();
    const e = m.eventfd();
    expect(m.set(SET.EVENTFD | SET.TRIGGER, IRQ.MSI, 0, 1, [e])).toBe(0);
    expect(m.sys.close(e)).toBe(0);
    expect(m.set(SET.NONE | SET.TRIGGER, IRQ.MSI, 0, 1)).toBe(0);
    expect(msiOn(m)).toBe(1);
  });
});

describe('INTx: vfio_pci_intrs.c vfio_pci_set_intx_trigger(), _mask(), _unmask()', () => {
  it('enable with an eventfd, loopback NONE and BOOL signal it; disable (NONE count 0) turns it off; disabling again is EINVAL', () => {
    const m = machine();
    const e = m.eventfd();
    expect(m.set(SET.NONE | SET.TRIGGER, IRQ.INTX, 0, 0)).toBe(-ERRNO.EINVAL);
    expect(m.set(SET.EVENTFD | SET.TRIGGER, IRQ.INTX, 0, 1, [e])).toBe(0);
    expect(m.set(SET.NONE | SET.TRIGGER, IRQ.INTX, 0, 1)).toBe(0);
    expect(m.set(SET.BOOL | SET.TRIGGER, IRQ.INTX, 0, 1, [0])).toBe(0);
    expect(m.count(e)).toBe(1n);
    expect(m.set(SET.BOOL | SET.TRIGGER, IRQ.INTX, 0, 1, [1])).toBe(0);
    expect(m.count(e)).toBe(1n);
    expect(m.set(SET.NONE | SET.TRIGGER, IRQ.INTX, 0, 0)).toBe(0);
    expect(m.set(SET.NONE | SET.TRIGGER, IRQ.INTX, 0, 1)).toBe(-ERRNO.EINVAL);
    expect(m.set(SET.NONE | SET.TRIGGER, IRQ.INTX, 0, 0)).toBe(-ERRNO.EINVAL);
    expect(m.count(e)).toBe(0n);
  });

  it('count 0 with BOOL or EVENTFD is EINVAL, enabled or not; loopback while off is EINVAL', () => {
    const m = machine();
    const e = m.eventfd();
    expect(m.set(SET.EVENTFD | SET.TRIGGER, IRQ.INTX, 0, 0)).toBe(-ERRNO.EINVAL);
    expect(m.set(SET.BOOL | SET.TRIGGER, IRQ.INTX, 0, 0)).toBe(-ERRNO.EINVAL);
    expect(m.set(SET.NONE | SET.TRIGGER, IRQ.INTX, 0, 1)).toBe(-ERRNO.EINVAL);
    // Still off: MSI can be enabled.
    expect(m.set(SET.EVENTFD | SET.TRIGGER, IRQ.MSI, 0, 1, [e])).toBe(0);
  });

  it('a negative fd enables INTx with no eventfd; EVENTFD while on swaps the trigger; a closed fd is EBADF and changes nothing', () => {
    const m = machine();
    const a = m.eventfd();
    const b = m.eventfd();
    expect(m.set(SET.EVENTFD | SET.TRIGGER, IRQ.INTX, 0, 1, [CLOSED_FD])).toBe(-ERRNO.EBADF);
    expect(m.set(SET.NONE | SET.TRIGGER, IRQ.INTX, 0, 1)).toBe(-ERRNO.EINVAL); // not enabled by the failure
    expect(m.set(SET.EVENTFD | SET.TRIGGER, IRQ.INTX, 0, 1, [-1])).toBe(0);
    expect(m.set(SET.NONE | SET.TRIGGER, IRQ.INTX, 0, 1)).toBe(0); // on, nothing to signal
    expect(m.set(SET.EVENTFD | SET.TRIGGER, IRQ.INTX, 0, 1, [a])).toBe(0);
    expect(m.set(SET.EVENTFD | SET.TRIGGER, IRQ.INTX, 0, 1, [CLOSED_FD])).toBe(-ERRNO.EBADF);
    expect(m.set(SET.NONE | SET.TRIGGER, IRQ.INTX, 0, 1)).toBe(0);
    expect(m.count(a)).toBe(1n);
    expect(m.set(SET.EVENTFD | SET.TRIGGER, IRQ.INTX, 0, 1, [b])).toBe(0);
    expect(m.set(SET.NONE | SET.TRIGGER, IRQ.INTX, 0, 1)).toBe(0);
    expect([m.count(a), m.count(b)]).toEqual([0n, 1n]);
  });

  it('MASK and UNMASK while INTx is off are EINVAL; MASK with an eventfd is ENOTTY ("XXX implement me")', () => {
    const m = machine();
    const e = m.eventfd();
    expect(m.set(SET.NONE | SET.MASK, IRQ.INTX, 0, 1)).toBe(-ERRNO.EINVAL);
    expect(m.set(SET.NONE | SET.UNMASK, IRQ.INTX, 0, 1)).toBe(-ERRNO.EINVAL);
    expect(m.set(SET.EVENTFD | SET.TRIGGER, IRQ.INTX, 0, 1, [e])).toBe(0);
    expect(m.set(SET.EVENTFD | SET.MASK, IRQ.INTX, 0, 1, [e])).toBe(-ERRNO.ENOTTY);
    // Not masked by the refusal: a raise still interrupts.
    m.eduRaise();
    expect(m.count(e)).toBe(1n);
  });

  it('an edu INTx signals once and masks itself (automasked); UNMASK while the line is still asserted signals again and stays masked; after the ack it unmasks', () => {
    const m = machine();
    const e = m.eventfd();
    expect(m.set(SET.EVENTFD | SET.TRIGGER, IRQ.INTX, 0, 1, [e])).toBe(0);
    m.eduRaise();
    m.eduRaise();
    expect(m.count(e)).toBe(1n);
    expect(m.set(SET.NONE | SET.UNMASK, IRQ.INTX, 0, 1)).toBe(0);
    expect(m.count(e)).toBe(1n); // still pending: re-sent, masked again
    m.eduAck();
    expect(m.set(SET.NONE | SET.UNMASK, IRQ.INTX, 0, 1)).toBe(0);
    expect(m.count(e)).toBe(0n);
    m.eduRaise();
    expect(m.count(e)).toBe(1n);
  });

  it('MASK stops device interrupts but not the loopback, which signals whatever the mask', () => {
    const m = machine();
    const e = m.eventfd();
    expect(m.set(SET.EVENTFD | SET.TRIGGER, IRQ.INTX, 0, 1, [e])).toBe(0);
    expect(m.set(SET.BOOL | SET.MASK, IRQ.INTX, 0, 1, [1])).toBe(0);
    m.eduRaise();
    expect(m.count(e)).toBe(0n);
    expect(m.set(SET.NONE | SET.TRIGGER, IRQ.INTX, 0, 1)).toBe(0);
    expect(m.count(e)).toBe(1n);
    expect(m.set(SET.BOOL | SET.UNMASK, IRQ.INTX, 0, 1, [0])).toBe(0); // a 0 bool unmasks nothing
    expect(m.count(e)).toBe(0n);
    expect(m.set(SET.BOOL | SET.UNMASK, IRQ.INTX, 0, 1, [1])).toBe(0); // the line is still up: signalled
    expect(m.count(e)).toBe(1n);
  });

  it('an INTx already asserted at enable interrupts at once (vfio_intx_enable, then vfio_intx_handler)', () => {
    const m = machine();
    const e = m.eventfd();
    m.eduRaise();
    expect(m.set(SET.EVENTFD | SET.TRIGGER, IRQ.INTX, 0, 1, [e])).toBe(0);
    expect(m.count(e)).toBe(1n);
  });

  it('an UNMASK eventfd: a write unmasks and is consumed; a second one is EBUSY, a closed fd EBADF, a non-eventfd EINVAL; -1 drops it; closing it drops it (virqfd.c)', () => {
    const m = machine();
    const trigger = m.eventfd();
    const unmask = m.eventfd();
    const other = m.eventfd();
    expect(m.set(SET.EVENTFD | SET.TRIGGER, IRQ.INTX, 0, 1, [trigger])).toBe(0);
    expect(m.set(SET.EVENTFD | SET.UNMASK, IRQ.INTX, 0, 1, [CLOSED_FD])).toBe(-ERRNO.EBADF);
    expect(m.set(SET.EVENTFD | SET.UNMASK, IRQ.INTX, 0, 1, [m.container])).toBe(-ERRNO.EINVAL);
    expect(m.set(SET.EVENTFD | SET.UNMASK, IRQ.INTX, 0, 1, [unmask])).toBe(0);
    expect(m.set(SET.EVENTFD | SET.UNMASK, IRQ.INTX, 0, 1, [other])).toBe(-ERRNO.EBUSY);
    m.eduRaise();
    expect(m.count(trigger)).toBe(1n);
    m.eduAck();
    const one = new Uint8Array(8);
    new DataView(one.buffer).setBigUint64(0, 1n, true);
    expect(m.sys.write(unmask, one)).toBe(8);
    expect(m.count(unmask)).toBe(0n); // the virqfd read it
    m.eduRaise();
    expect(m.count(trigger)).toBe(1n); // unmasked by the write
    expect(m.set(SET.EVENTFD | SET.UNMASK, IRQ.INTX, 0, 1, [-1])).toBe(0);
    expect(m.set(SET.EVENTFD | SET.UNMASK, IRQ.INTX, 0, 1, [other])).toBe(0);
    expect(m.sys.close(other)).toBe(0);
    expect(m.set(SET.EVENTFD | SET.UNMASK, IRQ.INTX, 0, 1, [unmask])).toBe(0); // the closed one was dropped
  });

  it('a trigger sharing its eventfd with the UNMASK virqfd: every signal wakes the virqfd, which reads the count first (virqfd_wakeup()), so nothing is left to read', () => {
    const m = machine();
    const shared = m.eventfd();
    expect(m.set(SET.EVENTFD | SET.TRIGGER, IRQ.INTX, 0, 1, [shared])).toBe(0);
    expect(m.set(SET.EVENTFD | SET.UNMASK, IRQ.INTX, 0, 1, [shared])).toBe(0);
    expect(m.set(SET.BOOL | SET.TRIGGER, IRQ.INTX, 0, 1, [1])).toBe(0);
    expect(m.count(shared)).toBe(0n);
    expect(m.set(SET.NONE | SET.TRIGGER, IRQ.INTX, 0, 1)).toBe(0);
    expect(m.count(shared)).toBe(0n);
    // Once the virqfd is dropped (-1), the trigger's count stays for the user.
    expect(m.set(SET.EVENTFD | SET.UNMASK, IRQ.INTX, 0, 1, [-1])).toBe(0);
    expect(m.set(SET.NONE | SET.TRIGGER, IRQ.INTX, 0, 1)).toBe(0);
    expect(m.count(shared)).toBe(1n);
  });

  it('INTx disable in the command register (virq_disabled) masks INTx and silences even the loopback; clearing it unmasks (vfio_pci_config.c)', () => {
    const m = machine();
    const e = m.eventfd();
    expect(m.set(SET.EVENTFD | SET.TRIGGER, IRQ.INTX, 0, 1, [e])).toBe(0);
    m.command(0x400);
    m.eduRaise();
    expect(m.set(SET.NONE | SET.TRIGGER, IRQ.INTX, 0, 1)).toBe(0);
    expect(m.count(e)).toBe(0n);
    m.command(0);
    expect(m.count(e)).toBe(1n); // unmasked with the line still up: re-sent
  });
});

describe('REQ: vfio_pci_intrs.c vfio_pci_set_req_trigger(), vfio_pci_set_ctx_trigger_single()', () => {
  for (const kernel of ['6.1', '6.12'] as const) {
    it(`${kernel}: loopback without a trigger is EINVAL; set, signal, clear; EVENTFD count 0 EINVAL; closed fd EBADF`, () => {
      const m = machine(kernel);
      const e = m.eventfd();
      expect(m.set(SET.NONE | SET.TRIGGER, IRQ.REQ, 0, 1)).toBe(-ERRNO.EINVAL);
      expect(m.set(SET.EVENTFD | SET.TRIGGER, IRQ.REQ, 0, 1, [e])).toBe(0);
      expect(m.set(SET.NONE | SET.TRIGGER, IRQ.REQ, 0, 1)).toBe(0);
      expect(m.set(SET.BOOL | SET.TRIGGER, IRQ.REQ, 0, 1, [1])).toBe(0);
      expect(m.count(e)).toBe(2n);
      expect(m.set(SET.EVENTFD | SET.TRIGGER, IRQ.REQ, 0, 0)).toBe(-ERRNO.EINVAL);
      expect(m.set(SET.BOOL | SET.TRIGGER, IRQ.REQ, 0, 0)).toBe(-ERRNO.EINVAL);
      expect(m.set(SET.EVENTFD | SET.TRIGGER, IRQ.REQ, 0, 1, [CLOSED_FD])).toBe(-ERRNO.EBADF);
      expect(m.set(SET.NONE | SET.TRIGGER, IRQ.REQ, 0, 1)).toBe(0); // still the old trigger
      expect(m.count(e)).toBe(1n);
      expect(m.set(SET.NONE | SET.TRIGGER, IRQ.REQ, 0, 0)).toBe(0); // count 0: clear
      expect(m.set(SET.NONE | SET.TRIGGER, IRQ.REQ, 0, 1)).toBe(-ERRNO.EINVAL);
      expect(m.set(SET.EVENTFD | SET.TRIGGER, IRQ.REQ, 0, 1, [e])).toBe(0);
      expect(m.set(SET.EVENTFD | SET.TRIGGER, IRQ.REQ, 0, 1, [-1])).toBe(0);
      expect(m.set(SET.NONE | SET.TRIGGER, IRQ.REQ, 0, 1)).toBe(-ERRNO.EINVAL);
      // REQ does not care about irq_type.
      expect(m.set(SET.EVENTFD | SET.TRIGGER, IRQ.MSI, 0, 1, [m.eventfd()])).toBe(0);
      expect(m.set(SET.EVENTFD | SET.TRIGGER, IRQ.REQ, 0, 1, [e])).toBe(0);
    });
  }

  it('an eventfd of -2: 6.1 answers 0 and keeps the trigger, 6.12 EINVAL (and keeps it)', () => {
    for (const [kernel, expected] of [['6.1', 0], ['6.12', -ERRNO.EINVAL]] as const) {
      const m = machine(kernel);
      const e = m.eventfd();
      expect(m.set(SET.EVENTFD | SET.TRIGGER, IRQ.REQ, 0, 1, [e])).toBe(0);
      expect(m.set(SET.EVENTFD | SET.TRIGGER, IRQ.REQ, 0, 1, [-2])).toBe(expected);
      expect(m.set(SET.NONE | SET.TRIGGER, IRQ.REQ, 0, 1)).toBe(0);
      expect(m.count(e)).toBe(1n);
    }
  });
});

describe('device info, regions, hot reset: vfio_pci_core.c', () => {
  const info = (m: ReturnType<typeof machine>, argsz: number): { result: number; bytes: Uint8Array } => {
    const bytes = new Uint8Array(32).fill(0xa5);
    new DataView(bytes.buffer).setUint32(0, argsz, true);
    return { result: m.sys.ioctl(m.device, req(NR.GET_INFO), bytes), bytes };
  };

  it('GET_INFO on 6.1 (vfio_pci_ioctl_get_info): argsz < 16 EINVAL; 16 bytes back below argsz 20, 20 bytes (cap_offset 0) from 20', () => {
    const m = machine('6.1');
    const short = info(m, 15);
    expect(short.result).toBe(-ERRNO.EINVAL);
    expect(short.bytes.subarray(4)).toEqual(new Uint8Array(28).fill(0xa5));
    for (const argsz of [16, 19]) {
      const { result, bytes } = info(m, argsz);
      expect(result).toBe(0);
      const view = new DataView(bytes.buffer);
      expect([view.getUint32(0, true), view.getUint32(4, true), view.getUint32(8, true), view.getUint32(12, true)]).toEqual([argsz, 0x2, 9, 5]);
      expect(bytes.subarray(16)).toEqual(new Uint8Array(16).fill(0xa5));
    }
    const { bytes } = info(m, 28);
    expect(new DataView(bytes.buffer).getUint32(16, true)).toBe(0);
    expect(bytes.subarray(20)).toEqual(new Uint8Array(12).fill(0xa5));
  });

  it('GET_INFO on 6.12: min(argsz, 24) bytes, the pad after cap_offset zero', () => {
    const m = machine('6.12');
    const seventeen = info(m, 17).bytes;
    expect(seventeen[16]).toBe(0);
    expect(seventeen.subarray(17)).toEqual(new Uint8Array(15).fill(0xa5));
    const { result, bytes } = info(m, 28);
    expect(result).toBe(0);
    expect(bytes.subarray(16, 24)).toEqual(new Uint8Array(8));
    expect(bytes.subarray(24)).toEqual(new Uint8Array(8).fill(0xa5));
    expect(new DataView(bytes.buffer).getUint32(4, true)).toBe(0x2);
  });

  it('GET_REGION_INFO (vfio_pci_ioctl_get_region_info): VGA is EINVAL without has_vga, buffer untouched; cap_offset goes back as the caller gave it', () => {
    const m = machine();
    const region = (index: number) => {
      const bytes = new Uint8Array(32).fill(0xa5);
      const view = new DataView(bytes.buffer);
      view.setUint32(0, 32, true);
      view.setUint32(8, index, true);
      view.setUint32(12, 0xdead, true);
      return { result: m.sys.ioctl(m.device, req(NR.REGION_INFO), bytes), bytes, view };
    };
    const vga = region(8);
    expect(vga.result).toBe(-ERRNO.EINVAL);
    expect(vga.bytes.subarray(16)).toEqual(new Uint8Array(16).fill(0xa5));
    const bar0 = region(0);
    expect(bar0.result).toBe(0);
    expect([bar0.view.getUint32(4, true), bar0.view.getUint32(12, true), bar0.view.getBigUint64(16, true)]).toEqual([0x7, 0xdead, 0x10_0000n]);
    expect(region(9).result).toBe(-ERRNO.EINVAL);
  });

  it('hot reset (vfio_pci_ioctl_get_pci_hot_reset_info, _pci_hot_reset): EINVAL checks first, then ENODEV on an edu of the root bus', () => {
    for (const kernel of ['6.1', '6.12'] as const) {
      const m = machine(kernel);
      const header = (argsz: number, flags = 0, count = 0) => {
        const bytes = new Uint8Array(16);
        const view = new DataView(bytes.buffer);
        view.setUint32(0, argsz, true);
        view.setUint32(4, flags, true);
        view.setUint32(8, count, true);
        return bytes;
      };
      expect(m.sys.ioctl(m.device, req(NR.HOT_RESET_INFO), header(11))).toBe(-ERRNO.EINVAL);
      expect(m.sys.ioctl(m.device, req(NR.HOT_RESET_INFO), header(16))).toBe(-ERRNO.ENODEV);
      expect(m.sys.ioctl(m.device, req(NR.HOT_RESET), header(11))).toBe(-ERRNO.EINVAL);
      expect(m.sys.ioctl(m.device, req(NR.HOT_RESET), header(12, 1, 1))).toBe(-ERRNO.EINVAL);
      expect(m.sys.ioctl(m.device, req(NR.HOT_RESET), header(12, 0, 1))).toBe(-ERRNO.ENODEV);
      // 6.12: a group fd must name groups (count 0 is for cdevs); 6.1 probes the reset first.
      expect(m.sys.ioctl(m.device, req(NR.HOT_RESET), header(12, 0, 0))).toBe(kernel === '6.12' ? -ERRNO.EINVAL : -ERRNO.ENODEV);
    }
  });
});

describe('release: vfio_pci_core_disable() at the last close of the device only', () => {
  it('closing one of two device fds changes nothing; the last close turns MSI off, drops REQ and clears bus master', () => {
    const m = machine();
    const second = m.openDevice();
    const msi = m.eventfd();
    const requested = m.eventfd();
    m.command(0x6);
    expect(m.set(SET.EVENTFD | SET.TRIGGER, IRQ.MSI, 0, 1, [msi])).toBe(0);
    expect(m.set(SET.EVENTFD | SET.TRIGGER, IRQ.REQ, 0, 1, [requested])).toBe(0);
    expect(m.sys.close(second)).toBe(0);
    expect(msiOn(m)).toBe(1);
    expect(m.set(SET.NONE | SET.TRIGGER, IRQ.REQ, 0, 1)).toBe(0);
    expect(m.count(requested)).toBe(1n);
    expect(m.sys.close(m.device)).toBe(0);
    expect(msiOn(m)).toBe(0);
    const again = m.openDevice();
    expect(m.set(SET.NONE | SET.TRIGGER, IRQ.REQ, 0, 1, [], { on: again })).toBe(-ERRNO.EINVAL);
    expect(m.set(SET.NONE | SET.TRIGGER, IRQ.MSI, 0, 0, [], { on: again })).toBe(-ERRNO.EINVAL);
    const command = new Uint8Array(2);
    expect(m.sys.pread(again, command, CONFIG + 4n)).toBe(2);
    expect(command[0]! & 0x4).toBe(0);
  });
});

describe('the kernel option', () => {
  it('x86-vtd and arm-smmuv3 model the 6.1 lanes, p4080 and the option default to 6.12; the option overrides; anything else is invalid-argument', () => {
    expect(createSimulator({ platform: 'x86-vtd' }).kernel).toBe('6.1');
    expect(createSimulator({ platform: 'arm-smmuv3' }).kernel).toBe('6.1');
    expect(createSimulator({ platform: 'p4080' }).kernel).toBe('6.12');
    expect(createSimulator({ platform: 'x86-vtd', kernel: '6.12' }).kernel).toBe('6.12');
    let error: unknown;
    try {
      createSimulator({ platform: 'x86-vtd', kernel: '5.4' as SimKernel });
    } catch (caught) {
      error = caught;
    }
    expect(IoasError.isInstance(error) && error.code === 'invalid-argument' && /kernel/.test(error.message)).toBe(true);
  });
});

describe('hostile arguments: every device ioctl answers with a number', () => {
  it('random bytes and argsz values on the device ioctls never throw out of ioctl (EFAULT where the kernel would fault)', () => {
    for (const kernel of ['6.1', '6.12'] as const) {
      const m = machine(kernel);
      let seed = 12;
      const random = () => {
        seed = (seed * 1_103_515_245 + 12_345) >>> 0;
        return seed;
      };
      const answers = new Set<number>();
      for (let round = 0; round < 3000; round++) {
        const nr = 107 + (random() % 8);
        const bytes = new Uint8Array(random() % 48);
        for (let i = 0; i < bytes.length; i++) bytes[i] = random() & 0xff;
        if (bytes.length >= 4) new DataView(bytes.buffer).setUint32(0, [bytes.length, bytes.length + 4, 20, 24, 32, random()][random() % 6]!, true);
        if (bytes.length >= 20 && nr === NR.SET_IRQS) new DataView(bytes.buffer).setUint32(8, random() % 6, true);
        const result = m.sys.ioctl(m.device, req(nr), bytes);
        expect(Number.isInteger(result)).toBe(true);
        answers.add(result);
      }
      // The checks were reached, not just the first one.
      expect(answers).toContain(-ERRNO.EFAULT);
      expect(answers).toContain(-ERRNO.EINVAL);
    }
  });
});
