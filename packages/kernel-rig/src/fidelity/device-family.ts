/**
 * The device family: VFIO_DEVICE_GET_INFO, GET_REGION_INFO, GET_IRQ_INFO, SET_IRQS (INTx, MSI,
 * MSI-X, ERR, REQ: every action and data type, the bounds of start and count, eventfds that are
 * closed, not eventfds, -1 and -2), RESET and the hot-reset queries, on the edu bound to vfio-pci,
 * with the interrupts' eventfds read after the signals a SET_IRQS sends itself (DATA_NONE and
 * DATA_BOOL triggers signal synchronously, in the ioctl).
 *
 * The generator tracks what it expects the device's interrupt state to be only to choose calls that
 * should succeed about two times in three; what each call answers is the kernel's to say.
 */
import type { Step, StepValue } from './steps.js';
import { generator } from '../differential.js';

const IRQ = { INTX: 0, MSI: 1, MSIX: 2, ERR: 3, REQ: 4 } as const;
const SET = { DATA_NONE: 1, DATA_BOOL: 2, DATA_EVENTFD: 4, ACTION_MASK: 8, ACTION_UNMASK: 16, ACTION_TRIGGER: 32 } as const;
/** Eventfds a sequence makes at its start. */
const EVENTFDS = ['e0', 'e1', 'e2', 'e3'];

/** The steps that open the edu's device fd as `device` on the lane's interface. */
export function openDevice(kernelInterface: 'type1' | 'iommufd'): Step[] {
  if (kernelInterface === 'iommufd') {
    return [
      { op: 'open', path: '/dev/iommu', as: 'iommufd' },
      { op: 'open', path: '/dev/vfio/devices/{cdev}', as: 'device' },
      { op: 'ioctl', fd: 'device', ioctl: 'VFIO_DEVICE_BIND_IOMMUFD', fields: { iommufd: { fd: 'iommufd' } } },
    ];
  }
  return [
    { op: 'open', path: '/dev/vfio/vfio', as: 'container' },
    { op: 'open', path: '/dev/vfio/{group}', as: 'group' },
    { op: 'ioctl', fd: 'group', ioctl: 'VFIO_GROUP_SET_CONTAINER', fields: { fd: { fd: 'container' } } },
    { op: 'ioctl', fd: 'container', ioctl: 'VFIO_SET_IOMMU', value: 3 },
    { op: 'ioctl', fd: 'group', ioctl: 'VFIO_GROUP_GET_DEVICE_FD', name: '{edu}', as: 'device' },
  ];
}

type Random = ReturnType<typeof generator>;

function pick<T>(random: Random, values: readonly T[]): T {
  return values[random.int(0, values.length - 1)]!;
}

function setIrqs(flags: number, index: number, start: number, count: number, extra: { data?: (number | { fd: string })[]; bytes?: number[]; argsz?: number } = {}): Step {
  const fields: Record<string, StepValue> = { flags, index, start, count };
  if (extra.argsz !== undefined) fields.argsz = extra.argsz;
  return { op: 'ioctl', fd: 'device', ioctl: 'VFIO_DEVICE_SET_IRQS', fields, ...(extra.data ? { data: extra.data } : {}), ...(extra.bytes ? { bytes: extra.bytes } : {}) };
}

/** The steps of sequence `seed`: the device opened, 8 to 24 operations, every eventfd read at the end. */
export function deviceSequence(seed: number, kernelInterface: 'type1' | 'iommufd'): Step[] {
  const random = generator(seed + 0x0d1ce);
  const steps: Step[] = [...openDevice(kernelInterface), ...EVENTFDS.map((as): Step => ({ op: 'eventfd', as }))];
  /** The interrupt type the generator expects to be on. */
  let irq: 'none' | 'intx' | 'msi' = 'none';
  const eventfd = () => ({ fd: pick(random, EVENTFDS) });
  const readAll = () => EVENTFDS.forEach((fd) => steps.push({ op: 'read', fd }));
  const length = random.int(8, 24);
  for (let step = 0; step < length; step++) {
    const roll = random.next();
    if (roll < 0.08) {
      steps.push({ op: 'ioctl', fd: 'device', ioctl: 'VFIO_DEVICE_GET_INFO', fields: { argsz: pick(random, [16, 20, 24, 28, 15]) } });
    } else if (roll < 0.16) {
      steps.push({ op: 'ioctl', fd: 'device', ioctl: 'VFIO_DEVICE_GET_REGION_INFO', fields: { argsz: pick(random, [32, 32, 40, 31]), index: pick(random, [0, 0, 1, 5, 6, 7, 8, 9]), cap_offset: pick(random, [0, 0xdead]) } });
    } else if (roll < 0.24) {
      steps.push({ op: 'ioctl', fd: 'device', ioctl: 'VFIO_DEVICE_GET_IRQ_INFO', fields: { argsz: pick(random, [16, 16, 15, 24]), index: random.int(0, 5) } });
    } else if (roll < 0.27) {
      steps.push({ op: 'ioctl', fd: 'device', ioctl: 'VFIO_DEVICE_RESET', value: 0 });
    } else if (roll < 0.87) {
      // SET_IRQS: two in three should succeed in the expected state, the rest are edges.
      if (random.next() < 0.65) {
        if (irq === 'none') {
          const index = pick(random, [IRQ.MSI, IRQ.MSI, IRQ.INTX]);
          steps.push(setIrqs(SET.DATA_EVENTFD | SET.ACTION_TRIGGER, index, 0, 1, { data: [eventfd()] }));
          irq = index === IRQ.MSI ? 'msi' : 'intx';
        } else {
          const index = irq === 'msi' ? IRQ.MSI : IRQ.INTX;
          switch (random.int(0, 5)) {
            case 0:
              steps.push(setIrqs(SET.DATA_NONE | SET.ACTION_TRIGGER, index, 0, 1));
              readAll();
              break;
            case 1:
              steps.push(setIrqs(SET.DATA_BOOL | SET.ACTION_TRIGGER, index, 0, 1, { bytes: [random.int(0, 1)] }));
              readAll();
              break;
            case 2:
              steps.push(setIrqs(SET.DATA_EVENTFD | SET.ACTION_TRIGGER, index, 0, 1, { data: [eventfd()] }));
              break;
            case 3:
              steps.push(setIrqs(SET.DATA_EVENTFD | SET.ACTION_TRIGGER, index, 0, 1, { data: [-1] }));
              break;
            case 4:
              steps.push(setIrqs(SET.DATA_NONE | (irq === 'intx' ? pick(random, [SET.ACTION_MASK, SET.ACTION_UNMASK]) : SET.ACTION_TRIGGER), index, 0, irq === 'intx' ? 1 : 0));
              if (irq === 'msi') irq = 'none';
              break;
            default:
              steps.push(setIrqs(SET.DATA_NONE | SET.ACTION_TRIGGER, index, 0, 0));
              irq = 'none';
          }
        }
      } else {
        switch (random.int(0, 13)) {
          case 0:
            steps.push(setIrqs(SET.DATA_NONE | SET.ACTION_TRIGGER, pick(random, [IRQ.INTX, IRQ.MSI, IRQ.MSIX, IRQ.ERR, IRQ.REQ]), 0, 0));
            break;
          case 1:
            steps.push(setIrqs(SET.DATA_EVENTFD | SET.ACTION_TRIGGER, irq === 'msi' ? IRQ.INTX : IRQ.MSI, 0, 1, { data: [eventfd()] }));
            break;
          case 2:
            steps.push(setIrqs(SET.DATA_EVENTFD | SET.ACTION_TRIGGER, pick(random, [IRQ.MSIX, IRQ.ERR]), 0, random.int(0, 1), { data: [eventfd()] }));
            break;
          case 3:
            steps.push(setIrqs(SET.DATA_NONE | SET.ACTION_TRIGGER, IRQ.MSI, pick(random, [1, 0xffff_ffff]), random.int(0, 2)));
            break;
          case 4:
            steps.push(setIrqs(pick(random, [0, SET.DATA_NONE, SET.DATA_NONE | SET.DATA_BOOL, 0x40 | SET.DATA_NONE | SET.ACTION_TRIGGER]), IRQ.MSI, 0, 1));
            break;
          case 5:
            steps.push(setIrqs(SET.DATA_NONE | SET.ACTION_MASK | SET.ACTION_UNMASK, IRQ.INTX, 0, 1));
            break;
          case 6:
            steps.push(setIrqs(SET.DATA_NONE | pick(random, [SET.ACTION_MASK, SET.ACTION_UNMASK]), IRQ.MSI, 0, 1));
            break;
          case 7:
            steps.push(setIrqs(SET.DATA_EVENTFD | SET.ACTION_TRIGGER, IRQ.MSI, 0, 1, { data: [pick(random, [{ fd: 'closed' }, { fd: 'device' }, -2])] }));
            break;
          case 8:
            steps.push(setIrqs(SET.DATA_EVENTFD | SET.ACTION_MASK, IRQ.INTX, 0, 1, { data: [eventfd()] }));
            break;
          case 9:
            steps.push(setIrqs(SET.DATA_EVENTFD | SET.ACTION_UNMASK, IRQ.INTX, 0, 1, { data: [eventfd()] }));
            break;
          case 10:
            steps.push(setIrqs(SET.DATA_EVENTFD | SET.ACTION_TRIGGER, IRQ.REQ, 0, 1, { data: [pick(random, [eventfd(), -1, -2])] }));
            break;
          case 11:
            steps.push(setIrqs(SET.DATA_EVENTFD | SET.ACTION_TRIGGER, IRQ.MSI, 0, 1, { data: [eventfd()], argsz: pick(random, [19, 23]) }));
            break;
          case 12:
            steps.push(setIrqs(SET.DATA_EVENTFD | SET.ACTION_TRIGGER, IRQ.MSI, 0, 2, { data: [eventfd(), eventfd()] }));
            break;
          default:
            steps.push(setIrqs(SET.DATA_NONE | SET.ACTION_TRIGGER, pick(random, [IRQ.REQ, IRQ.ERR]), 0, 1));
            readAll();
        }
      }
    } else if (roll < 0.92) {
      // A fresh eventfd in a role: the old one closed first.
      const fd = pick(random, EVENTFDS);
      steps.push({ op: 'close', fd }, { op: 'eventfd', as: fd });
    } else {
      readAll();
    }
  }
  readAll();
  // Closing the device turns its interrupts off; a fresh open finds them off.
  steps.push({ op: 'close', fd: 'device' });
  return steps;
}
