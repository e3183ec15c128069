/**
 * The container family: /dev/vfio/vfio and the group's fd through their lifecycle, and type1 past
 * plain map/unmap. VFIO_GET_API_VERSION, VFIO_CHECK_EXTENSION of every extension before and after
 * SET_IOMMU, VFIO_SET_IOMMU of every type (twice, before a group), VFIO_GROUP_GET_STATUS,
 * SET_CONTAINER and UNSET_CONTAINER (with a device open, twice), GET_DEVICE_FD by good and bad
 * names, VFIO_IOMMU_GET_INFO at every argsz, MAP_DMA and UNMAP_DMA with every flag (v1 and v2),
 * VFIO_IOMMU_DIRTY_PAGES, and closing the container or the group while the other is still in use.
 * A tenth of the sequences first give the group an eventfd as its container (6.12 EBADFD, 6.1
 * EINVAL); on a 6.12 lane a tenth are the `/dev/iommu` compat container instead ({@link compatSequence}).
 *
 * As in the device family, the generator keeps what it expects of the state only to aim two calls
 * in three at success; what they answer is the kernel's.
 */
import type { Step, StepValue } from './steps.js';
import { generator } from '../differential.js';

const PAGE = 0x1000n;
/** The IOVA window the family maps in: low memory, clear of every lane's MSI window and reserved ranges. */
const BASE = 0x10_0000n;
const MAP_FLAGS = { READ: 1, WRITE: 2, VADDR: 4 } as const;
const UNMAP_FLAGS = { DIRTY_BITMAP: 1, ALL: 2, VADDR: 4 } as const;

type Random = ReturnType<typeof generator>;

function pick<T>(random: Random, values: readonly T[]): T {
  return values[random.int(0, values.length - 1)]!;
}

function ioctl(fd: string, name: string, fields?: Record<string, StepValue>, extra: Partial<Extract<Step, { op: 'ioctl' }>> = {}): Step {
  return { op: 'ioctl', fd, ioctl: name, ...(fields === undefined ? {} : { fields }), ...extra };
}

/** The share of sequences that take a variant: the eventfd probe (every kernel), the /dev/iommu compat container (6.12). */
const VARIANT_SHARE = 0.1;

/**
 * The steps of sequence `seed` (type1 only: the iommufd lanes' containers are the iommufd family's).
 * `kernel` is the lane's kernel: on '6.12' a tenth of the sequences give the group a `/dev/iommu`
 * fd as its container ({@link compatSequence}); on '6.1', which has no `/dev/iommu`, never. On
 * every kernel a tenth of the others first give the group an eventfd as its container (6.12
 * drivers/vfio/group.c vfio_group_ioctl_set_container(): EBADFD; 6.1 vfio_main.c: EINVAL). The
 * variants draw from their own generator, so the other sequences are what they always were.
 */
export function containerSequence(seed: number, kernel: '6.1' | '6.12' = '6.1'): Step[] {
  const variant = generator(seed + 0xc0_3a71);
  if (variant.next() < VARIANT_SHARE && kernel === '6.12') return compatSequence(seed);
  const probe = variant.next() < VARIANT_SHARE;
  const random = generator(seed + 0xc0_17a1);
  const steps: Step[] = [{ op: 'mmap', pages: 16, as: 'ram' }];
  const version = random.next() < 0.8 ? 3 : 1;
  // The prologue: a container with the group in it and the IOMMU set, sometimes probed on the way.
  steps.push({ op: 'open', path: '/dev/vfio/vfio', as: 'container' });
  if (random.next() < 0.5) steps.push(ioctl('container', 'VFIO_CHECK_EXTENSION', undefined, { value: pick(random, [1, 3, 4, 5, 6, 8, 9, 10, 11]) }));
  if (random.next() < 0.3) steps.push(ioctl('container', 'VFIO_SET_IOMMU', undefined, { value: version }));
  steps.push({ op: 'open', path: '/dev/vfio/{group}', as: 'group' });
  steps.push(ioctl('group', 'VFIO_GROUP_GET_STATUS', { argsz: 8 }));
  if (probe) {
    // An fd that is no container: 6.12 EBADFD, 6.1 EINVAL, and the group stays out.
    steps.push({ op: 'eventfd', as: 'eventfd' });
    steps.push(ioctl('group', 'VFIO_GROUP_SET_CONTAINER', { fd: { fd: 'eventfd' } }));
    steps.push(ioctl('group', 'VFIO_GROUP_GET_STATUS', { argsz: 8 }));
  }
  steps.push(ioctl('group', 'VFIO_GROUP_SET_CONTAINER', { fd: { fd: 'container' } }));
  // With a container set, any fd is EINVAL first (vfio_group_has_iommu() comes before the fd's kind).
  if (probe) steps.push(ioctl('group', 'VFIO_GROUP_SET_CONTAINER', { fd: { fd: 'eventfd' } }));
  // Sometimes a type the kernel refuses (or, NESTING on arm64 6.1, takes) first: a type is only
  // ever tried with a group in the container, where the refusal is the type's own.
  const probeType = (): void => {
    if (random.next() < 0.25) steps.push(ioctl('container', 'VFIO_SET_IOMMU', undefined, { value: pick(random, [6, 6, 9, 9, 0, 2, 4, 10]) }));
  };
  probeType();
  steps.push(ioctl('container', 'VFIO_SET_IOMMU', undefined, { value: version }));
  let container = true;
  let inContainer = true;
  let device = false;
  const mapped: { iova: bigint; pages: number }[] = [];
  /** Mappings whose vaddr an UNMAP_DMA with VADDR invalidated (a MAP_DMA with VADDR gives it back). */
  const invalid: { iova: bigint; pages: number }[] = [];
  const length = random.int(8, 22);
  for (let step = 0; step < length; step++) {
    const roll = random.next();
    if (roll < 0.06) {
      steps.push(ioctl('container', 'VFIO_GET_API_VERSION', undefined, { value: 0 }));
    } else if (roll < 0.14) {
      steps.push(ioctl('container', 'VFIO_CHECK_EXTENSION', undefined, { value: pick(random, [1, 3, 1, 3, 0, 2, 4, 5, 6, 7, 8, 9, 10, 11, 0xffff_ffff]) }));
    } else if (roll < 0.18) {
      steps.push(ioctl('container', 'VFIO_SET_IOMMU', undefined, { value: pick(random, [0, 1, 2, 3, 4, 6, 8, 9, 10, 42]) }));
    } else if (roll < 0.24) {
      steps.push(ioctl('group', 'VFIO_GROUP_GET_STATUS', { argsz: pick(random, [8, 8, 4, 0, 16]) }));
    } else if (roll < 0.32) {
      steps.push(ioctl('container', 'VFIO_IOMMU_GET_INFO', { argsz: pick(random, [4096, 4096, 16, 24, 23, 0, 120, 116, 40]) }));
    } else if (roll < 0.56 && invalid.length > 0 && random.next() < 0.5) {
      // A new vaddr for an invalidated mapping: exactly its range, or (a probe) another size.
      const mapping = invalid.splice(random.int(0, invalid.length - 1), 1)[0]!;
      const exact = random.next() < 0.8;
      steps.push(ioctl('container', 'VFIO_IOMMU_MAP_DMA', { flags: MAP_FLAGS.VADDR, vaddr: { mapping: 'ram', offset: BigInt(random.int(0, 12)) * PAGE }, iova: mapping.iova, size: BigInt(mapping.pages + (exact ? 0 : 1)) * PAGE }));
      (exact ? mapped : invalid).push(mapping);
    } else if (roll < 0.56) {
      const free = random.next() < 0.7;
      const iova = free ? BASE + BigInt(random.int(0, 15)) * 4n * PAGE : pick(random, [...mapped.map((mapping) => mapping.iova), BASE + 0x800n, 0xfee0_0000n, 1n << 50n]);
      const pages = random.int(1, 4);
      const flags = random.next() < 0.75 ? MAP_FLAGS.READ | MAP_FLAGS.WRITE : pick(random, [MAP_FLAGS.READ, MAP_FLAGS.WRITE, 0, MAP_FLAGS.VADDR, MAP_FLAGS.VADDR | MAP_FLAGS.READ, 8]);
      steps.push(ioctl('container', 'VFIO_IOMMU_MAP_DMA', { flags, vaddr: { mapping: 'ram', offset: BigInt(random.int(0, 12)) * PAGE }, iova, size: BigInt(pages) * PAGE }));
      if (free && flags !== 0 && (flags & ~3) === 0) mapped.push({ iova, pages });
    } else if (roll < 0.72) {
      const mapping = mapped.length > 0 && random.next() < 0.7 ? mapped.splice(random.int(0, mapped.length - 1), 1)[0]! : undefined;
      if (mapping !== undefined && random.next() < 0.2) {
        // The mapping stays, its vaddr invalidated.
        steps.push(ioctl('container', 'VFIO_IOMMU_UNMAP_DMA', { flags: UNMAP_FLAGS.VADDR, iova: mapping.iova, size: BigInt(mapping.pages) * PAGE }));
        invalid.push(mapping);
      } else if (mapping !== undefined) {
        steps.push(ioctl('container', 'VFIO_IOMMU_UNMAP_DMA', { iova: mapping.iova, size: BigInt(mapping.pages) * PAGE }));
      } else {
        switch (random.int(0, 5)) {
          case 0:
            steps.push(ioctl('container', 'VFIO_IOMMU_UNMAP_DMA', { flags: UNMAP_FLAGS.ALL, iova: 0n, size: 0n }));
            mapped.length = 0;
            invalid.length = 0;
            break;
          case 1:
            steps.push(ioctl('container', 'VFIO_IOMMU_UNMAP_DMA', { flags: pick(random, [UNMAP_FLAGS.VADDR, UNMAP_FLAGS.ALL | UNMAP_FLAGS.VADDR, UNMAP_FLAGS.DIRTY_BITMAP | UNMAP_FLAGS.ALL, 8]), iova: BASE, size: 4n * PAGE }));
            break;
          case 2:
            steps.push(ioctl('container', 'VFIO_IOMMU_UNMAP_DMA', { iova: BASE + BigInt(random.int(0, 63)) * PAGE, size: BigInt(random.int(0, 8)) * PAGE }));
            break;
          case 3:
            steps.push(ioctl('container', 'VFIO_IOMMU_UNMAP_DMA', { flags: UNMAP_FLAGS.ALL, iova: PAGE, size: 0n }));
            break;
          case 4:
            steps.push(ioctl('container', 'VFIO_IOMMU_UNMAP_DMA', { iova: BASE, size: 64n * PAGE }));
            mapped.length = 0;
            invalid.length = 0;
            break;
          default:
            steps.push(ioctl('container', 'VFIO_IOMMU_UNMAP_DMA', { argsz: pick(random, [16, 23]), iova: BASE, size: PAGE }));
        }
      }
    } else if (roll < 0.76) {
      steps.push(ioctl('container', 'VFIO_IOMMU_DIRTY_PAGES', { flags: pick(random, [1, 2, 1, 2, 0, 3, 8]) }));
    } else if (roll < 0.86) {
      if (!device) {
        const name = random.next() < 0.75 ? '{edu}' : pick(random, ['{edu} x', '0000:00:99.0', '', '{edu}  ']);
        steps.push(ioctl('group', 'VFIO_GROUP_GET_DEVICE_FD', undefined, { name, as: 'device' }));
        // Trailing spaces name the device too (vfio_pci_core_match()).
        device = name === '{edu}' || name === '{edu}  ';
      } else {
        steps.push({ op: 'close', fd: 'device' });
        device = false;
      }
    } else if (roll < 0.92) {
      if (inContainer && !device && random.next() < 0.6) {
        steps.push(ioctl('group', 'VFIO_GROUP_UNSET_CONTAINER', undefined, { value: 0 }));
        inContainer = false;
        mapped.length = 0;
        invalid.length = 0;
      } else if (!inContainer && container) {
        steps.push(ioctl('group', 'VFIO_GROUP_SET_CONTAINER', { fd: { fd: 'container' } }));
        probeType();
        steps.push(ioctl('container', 'VFIO_SET_IOMMU', undefined, { value: version }));
        inContainer = true;
      } else {
        steps.push(ioctl('group', 'VFIO_GROUP_UNSET_CONTAINER', undefined, { value: 0 }));
      }
    } else {
      steps.push(ioctl('group', 'VFIO_GROUP_GET_STATUS', { argsz: 8 }));
    }
  }
  // The epilogue: everything closed in an order the sequence picks, the group's status read on the way.
  if (device) steps.push({ op: 'close', fd: 'device' });
  if (random.next() < 0.3 && container && inContainer) {
    // The container fd closed while the group is still in it.
    steps.push({ op: 'close', fd: 'container' });
    steps.push(ioctl('group', 'VFIO_GROUP_GET_STATUS', { argsz: 8 }));
    steps.push(ioctl('group', 'VFIO_GROUP_UNSET_CONTAINER', undefined, { value: 0 }));
    steps.push(ioctl('group', 'VFIO_GROUP_GET_STATUS', { argsz: 8 }));
    steps.push({ op: 'close', fd: 'group' });
  } else {
    steps.push({ op: 'close', fd: 'group' });
    steps.push({ op: 'close', fd: 'container' });
  }
  // A fresh open of the group finds it free again.
  steps.push({ op: 'open', path: '/dev/vfio/{group}', as: 'again' });
  steps.push(ioctl('again', 'VFIO_GROUP_GET_STATUS', { argsz: 8 }));
  steps.push({ op: 'close', fd: 'again' });
  if (probe) steps.push({ op: 'close', fd: 'eventfd' });
  return steps;
}

/**
 * A 6.12 sequence whose group's container is a `/dev/iommu` fd (6.12 drivers/vfio/group.c
 * vfio_group_ioctl_set_container(): iommufd_vfio_compat_ioas_create() gives the context a compat
 * IOAS; vfio_df_group_open() binds the device and attaches it to it; the VFIO container ioctls on
 * the `/dev/iommu` fd act on it, drivers/iommu/iommufd/vfio_compat.c), with an eventfd tried as a
 * container on the way (EBADFD, or EINVAL with one set), UNSET_CONTAINER with the device open, and
 * the `/dev/iommu` fd closed while the group holds the context.
 */
export function compatSequence(seed: number): Step[] {
  const random = generator(seed + 0xc0_3a72);
  const steps: Step[] = [{ op: 'mmap', pages: 16, as: 'ram' }];
  steps.push({ op: 'open', path: '/dev/iommu', as: 'iommufd' });
  steps.push({ op: 'open', path: '/dev/vfio/{group}', as: 'group' });
  steps.push({ op: 'eventfd', as: 'eventfd' });
  if (random.next() < 0.5) steps.push(ioctl('iommufd', 'VFIO_IOMMU_GET_INFO', { argsz: 4096 }));
  steps.push(ioctl('group', 'VFIO_GROUP_SET_CONTAINER', { fd: { fd: random.next() < 0.3 ? 'eventfd' : 'iommufd' } }));
  steps.push(ioctl('group', 'VFIO_GROUP_GET_STATUS', { argsz: 8 }));
  let device = false;
  let open = true;
  const mapped: bigint[] = [];
  const length = random.int(10, 22);
  for (let step = 0; step < length; step++) {
    const roll = random.next();
    if (roll < 0.1) {
      steps.push(ioctl('group', 'VFIO_GROUP_SET_CONTAINER', { fd: { fd: pick(random, ['iommufd', 'iommufd', 'eventfd']) } }));
    } else if (roll < 0.16) {
      steps.push(ioctl('group', 'VFIO_GROUP_UNSET_CONTAINER', undefined, { value: 0 }));
    } else if (roll < 0.22) {
      steps.push(ioctl('group', 'VFIO_GROUP_GET_STATUS', { argsz: 8 }));
    } else if (roll < 0.32) {
      if (!device) {
        steps.push(ioctl('group', 'VFIO_GROUP_GET_DEVICE_FD', undefined, { name: '{edu}', as: 'device' }));
        device = true;
      } else {
        steps.push({ op: 'close', fd: 'device' });
        device = false;
      }
    } else if (roll < 0.36) {
      steps.push(ioctl('iommufd', 'VFIO_GET_API_VERSION', undefined, { value: 0 }));
    } else if (roll < 0.42) {
      steps.push(ioctl('iommufd', 'VFIO_CHECK_EXTENSION', undefined, { value: pick(random, [1, 3, 4, 5, 8, 9, 0]) }));
    } else if (roll < 0.47) {
      steps.push(ioctl('iommufd', 'VFIO_SET_IOMMU', undefined, { value: pick(random, [3, 3, 1, 0, 8]) }));
    } else if (roll < 0.53) {
      steps.push(ioctl('iommufd', 'VFIO_IOMMU_GET_INFO', { argsz: pick(random, [4096, 4096, 16, 0]) }));
    } else if (roll < 0.75) {
      const iova = BASE + BigInt(random.int(0, 15)) * 4n * PAGE;
      steps.push(ioctl('iommufd', 'VFIO_IOMMU_MAP_DMA', { flags: MAP_FLAGS.READ | MAP_FLAGS.WRITE, vaddr: { mapping: 'ram', offset: BigInt(random.int(0, 12)) * PAGE }, iova, size: BigInt(random.int(1, 4)) * PAGE }));
      mapped.push(iova);
    } else if (roll < 0.9) {
      const iova = mapped.length > 0 && random.next() < 0.8 ? mapped.splice(random.int(0, mapped.length - 1), 1)[0]! : BASE;
      steps.push(ioctl('iommufd', 'VFIO_IOMMU_UNMAP_DMA', { iova, size: BigInt(random.int(1, 4)) * PAGE }));
    } else if (roll < 0.93 && open) {
      // The context outlives its fd while the group holds it; the fd's role is then a closed fd.
      steps.push({ op: 'close', fd: 'iommufd' });
      open = false;
    } else {
      steps.push(ioctl('group', 'VFIO_GROUP_GET_STATUS', { argsz: 8 }));
    }
  }
  if (device) steps.push({ op: 'close', fd: 'device' });
  steps.push({ op: 'close', fd: 'group' });
  if (open) steps.push({ op: 'close', fd: 'iommufd' });
  steps.push({ op: 'open', path: '/dev/vfio/{group}', as: 'again' });
  steps.push(ioctl('again', 'VFIO_GROUP_GET_STATUS', { argsz: 8 }));
  steps.push({ op: 'close', fd: 'again' });
  steps.push({ op: 'close', fd: 'eventfd' });
  return steps;
}
