/**
 * The VFIO container and group files: `/dev/vfio/vfio` (VFIO_GET_API_VERSION, VFIO_CHECK_EXTENSION,
 * VFIO_SET_IOMMU, then the IOMMU driver's ioctls, in sim-type1.ts) and `/dev/vfio/N` (VFIO_GROUP_*),
 * and the group file's release. Each handler takes the calling process (its fd table and byte order).
 */
import { ERRNO } from '@ioas/core';
import type { SimDevice, SimGroup } from './simulator.js';
import type { GroupFile, SimProcess } from './sim-syscalls.js';
import { iommuIoctl } from './sim-type1.js';
import type { SimVfioContainer } from './vfio-container.js';
import type { SimIommufdContext } from './iommufd.js';
import { KernelError } from './kernel-error.js';

/**
 * `group->iommufd` (6.12 drivers/vfio/group.c): the iommufd context a group file was given as its
 * container by VFIO_GROUP_SET_CONTAINER with a `/dev/iommu` fd (the iommufd VFIO compat path).
 */
const groupIommufd = new WeakMap<GroupFile, SimIommufdContext>();
/** Devices opened through a group holding an iommufd: the context they are bound to and their id there. */
const groupBindings = new WeakMap<SimDevice, { context: SimIommufdContext; id: number }>();

// Request numbers (include/uapi/linux/vfio.h): _IO(VFIO_TYPE ';' = 0x3b, VFIO_BASE 100 + n), as on
// x86 and arm64 (the dispatcher drops PowerPC's direction bit before comparing).
/** _IO(VFIO_TYPE, VFIO_BASE + 0) */
const VFIO_GET_API_VERSION = 0x3b64;
/** _IO(VFIO_TYPE, VFIO_BASE + 1) */
const VFIO_CHECK_EXTENSION = 0x3b65;
/** _IO(VFIO_TYPE, VFIO_BASE + 2) */
const VFIO_SET_IOMMU = 0x3b66;
/** _IO(VFIO_TYPE, VFIO_BASE + 3) */
const VFIO_GROUP_GET_STATUS = 0x3b67;
/** _IO(VFIO_TYPE, VFIO_BASE + 4) */
const VFIO_GROUP_SET_CONTAINER = 0x3b68;
/** _IO(VFIO_TYPE, VFIO_BASE + 5) */
const VFIO_GROUP_UNSET_CONTAINER = 0x3b69;
/** _IO(VFIO_TYPE, VFIO_BASE + 6) */
const VFIO_GROUP_GET_DEVICE_FD = 0x3b6a;

const GROUP_FLAGS = { VIABLE: 0x1, CONTAINER_SET: 0x2 } as const;

/**
 * The ioctls of a `/dev/vfio/vfio` container (6.1 drivers/vfio/container.c vfio_fops_unl_ioctl()):
 * its own three, then, once VFIO_SET_IOMMU chose a driver, the driver's (sim-type1.ts).
 */
export function containerIoctl(proc: SimProcess, container: SimVfioContainer, request: number, argument: number | Uint8Array): number {
  if (request === VFIO_GET_API_VERSION) return 0;
  if (request === VFIO_CHECK_EXTENSION) return container.checkExtension(Number(argument));
  if (request === VFIO_SET_IOMMU) {
    container.setIommu(Number(argument));
    return 0;
  }
  // Before SET_IOMMU the container has no backend to forward to: EINVAL
  // (docs/kernel-rules.md#container-ioctls-before-the-iommu-is-set).
  if (container.iommuType === null) return -ERRNO.EINVAL;
  return iommuIoctl(proc, container, request, argument);
}

/** The ioctls of a `/dev/vfio/N` group fd (6.1 drivers/vfio/vfio_main.c, 6.12 drivers/vfio/group.c vfio_group_fops_unl_ioctl()). */
export function groupIoctl(proc: SimProcess, file: GroupFile, request: number, argument: number | Uint8Array): number {
  const group = file.group;
  switch (request) {
    case VFIO_GROUP_GET_STATUS: {
      const view = proc.argView(proc.bytes(argument), 8);
      // vfio_group_has_iommu(): a container or an iommufd (6.12 group.c, vfio_group_ioctl_get_status()).
      // Out of one, VIABLE needs the group's DMA unclaimed (!iommu_group_dma_owner_claimed()): a
      // device still bound to an iommufd (opened through it, then UNSET) holds the claim.
      const set = group.owner !== undefined || groupIommufd.has(file);
      const claimed = group.devices.some((member) => member.boundTo !== undefined);
      view.setUint32(4, ((group.viable && !claimed) || set ? GROUP_FLAGS.VIABLE : 0) | (set ? GROUP_FLAGS.CONTAINER_SET : 0), proc.little);
      return 0;
    }
    case VFIO_GROUP_SET_CONTAINER: {
      const buffer = proc.bytes(argument);
      if (buffer.byteLength < 4) return -ERRNO.EFAULT;
      const target = proc.files.get(proc.view(buffer).getInt32(0, proc.little));
      if (target === undefined) return -ERRNO.EBADF;
      if (proc.simulator.kernel === '6.1') {
        // 6.1 drivers/vfio/vfio_main.c, vfio_group_ioctl_set_container(): a group in a container
        // EINVAL (addGroup()), then any fd that is not a container EINVAL.
        if (target.kind !== 'container') return -ERRNO.EINVAL;
        target.container.addGroup(group);
        file.container = target.container;
        return 0;
      }
      // 6.12 drivers/vfio/group.c, vfio_group_ioctl_set_container(): EBADF, then a group with a
      // container or an iommufd (vfio_group_has_iommu()) EINVAL, then a container, then an iommufd
      // (iommufd_ctx_from_file()), and any other fd EBADFD.
      if (file.container !== undefined || group.owner !== undefined || groupIommufd.has(file)) {
        proc.simulator.checkInjected('VFIO_GROUP_SET_CONTAINER');
        return -ERRNO.EINVAL;
      }
      if (target.kind === 'container') {
        // A device still bound to an iommufd (opened while the group held one, then UNSET) keeps
        // the group's DMA ownership: iommu_group_claim_dma_owner() EPERM (6.12 drivers/iommu/iommu.c).
        if (group.devices.some((member) => member.boundTo !== undefined)) {
          throw new KernelError(ERRNO.EPERM, 'VFIO_GROUP_SET_CONTAINER', `group ${group.id}'s DMA is owned by an iommufd`);
        }
        target.container.addGroup(group);
        file.container = target.container;
        return 0;
      }
      if (target.kind === 'iommufd') {
        proc.simulator.checkInjected('VFIO_GROUP_SET_CONTAINER');
        target.context.holdForGroup();
        groupIommufd.set(file, target.context);
        return 0;
      }
      proc.simulator.checkInjected('VFIO_GROUP_SET_CONTAINER');
      return -ERRNO.EBADFD;
    }
    case VFIO_GROUP_UNSET_CONTAINER: {
      // EINVAL out of a container, EBUSY with a device fd open; the last group out takes the
      // IOMMU and the mappings (docs/kernel-rules.md#detaching-from-a-live-container).
      const context = groupIommufd.get(file);
      if (context !== undefined) {
        // 6.12 group.c, vfio_group_ioctl_unset_container(): an iommufd is dropped whatever devices
        // are open (they stay bound: the bind holds its own reference on the context).
        proc.simulator.checkInjected('VFIO_GROUP_UNSET_CONTAINER');
        groupIommufd.delete(file);
        context.dropForGroup();
        return 0;
      }
      if (file.container === undefined) {
        proc.simulator.checkInjected('VFIO_GROUP_UNSET_CONTAINER');
        return -ERRNO.EINVAL;
      }
      file.container.unsetGroup(group);
      file.container = undefined;
      return 0;
    }
    case VFIO_GROUP_GET_DEVICE_FD: {
      const buffer = proc.bytes(argument);
      const end = buffer.indexOf(0);
      // strndup_user(arg, PAGE_SIZE): a name with no NUL in its first 4096 bytes is EINVAL.
      if ((end < 0 ? buffer.byteLength : end) >= 4096) return -ERRNO.EINVAL;
      if (end < 0) return -ERRNO.EFAULT;
      const name = new TextDecoder().decode(buffer.subarray(0, end));
      const found = findDeviceByName(group, name);
      if (typeof found === 'number') return -found;
      const device = found;
      const context = groupIommufd.get(file);
      if (context !== undefined) {
        // 6.12 group.c, vfio_df_group_open(): the first open binds the device to the group's
        // iommufd and attaches it to the compat IOAS (iommufd.c, vfio_df_iommufd_bind(),
        // vfio_iommufd_compat_attach_ioas()); a later open of the same device does neither.
        if (device.openCount === 0) groupBindings.set(device, { context, id: context.bindFromGroup(device) });
        group.openDevices++;
        return proc.install({ kind: 'device', device, group: file, cdev: undefined });
      }
      if (file.container === undefined || file.container.iommuType === null) return -ERRNO.EINVAL;
      group.openDevices++;
      return proc.install({ kind: 'device', device, group: file, cdev: undefined });
    }
    default:
      return -ERRNO.ENOTTY;
  }
}

/**
 * VFIO_GROUP_GET_DEVICE_FD's name lookup (6.1 drivers/vfio/vfio_main.c vfio_device_get_from_name(),
 * 6.12 drivers/vfio/group.c): the group's vfio devices only (members bound to another driver or
 * none are not on its device_list), each asked by vfio-pci's match (drivers/vfio/pci/vfio_pci_core.c
 * vfio_pci_core_match()): the name must start with the PCI address; anything after it must start
 * with a space (else no match), and past the spaces only one `vf_token=<uuid>` may follow, which a
 * device that is neither an SR-IOV PF nor a VF refuses (vfio_pci_validate_vf_token()); any other
 * word is EINVAL. So trailing spaces match. No device matching is ENODEV
 * (docs/kernel-rules.md#opening-a-device-from-a-group). Returns the device or an errno.
 */
export function findDeviceByName(group: SimGroup, name: string): SimDevice | number {
  for (const device of group.devices) {
    if (device.driver !== 'vfio-pci' || !name.startsWith(device.address)) continue;
    const rest = name.slice(device.address.length);
    if (rest.length > 0 && rest[0] !== ' ') continue;
    // A vf_token (well formed or not), a second one, or any other word: EINVAL on an edu.
    // Only ' ' separates (a tab is a word).
    if (/[^ ]/.test(rest)) return ERRNO.EINVAL;
    return device;
  }
  return ERRNO.ENODEV;
}

/**
 * A group fd's close: device fds hold a reference on the group file, so its release, which takes
 * the group out of its container, waits for the last of them (docs/kernel-rules.md#detaching-a-group).
 */
export function groupFileClosed(file: GroupFile): void {
  file.closed = true;
  if (file.group.openDevices === 0) releaseGroup(file);
}

/**
 * A device fd from a group fd is closed: it drops its reference on the group file. The device's
 * last close unbinds it from the iommufd it was bound to through the group (6.12 vfio_main.c,
 * vfio_df_close(), vfio_df_device_last_close(): vfio_df_iommufd_unbind()).
 */
export function groupDeviceClosed(file: GroupFile, device?: SimDevice): void {
  if (device !== undefined && device.openCount === 1) {
    const binding = groupBindings.get(device);
    if (binding !== undefined) {
      groupBindings.delete(device);
      binding.context.unbind(binding.id);
    }
  }
  file.group.openDevices--;
  if (file.closed && file.group.openDevices === 0) releaseGroup(file);
}

/**
 * The group file's release, once its fd and every device fd from it are closed: the group leaves
 * its container and `/dev/vfio/N` may be opened again (6.1 drivers/vfio/vfio_main.c, 6.12
 * drivers/vfio/group.c, vfio_group_fops_release()).
 */
function releaseGroup(file: GroupFile): void {
  // 6.12 group.c, vfio_group_fops_release(): the group's iommufd reference is put.
  const context = groupIommufd.get(file);
  if (context !== undefined) {
    groupIommufd.delete(file);
    context.dropForGroup();
  }
  if (file.container !== undefined && file.group.owner === file.container) file.container.removeGroup(file.group);
  file.container = undefined;
  file.group.opened = false;
}
