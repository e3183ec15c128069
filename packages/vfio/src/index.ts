/**
 * @ioas/vfio: the Linux userspace layer of ioas, in three layers: the syscalls (libc through koffi,
 * loaded on first use), the uapi (numbers and layouts named as in the kernel headers) with one
 * function per ioctl, and objects (container, group, device, iommufd context, sysfs, DMA memory).
 *
 * @packageDocumentation
 */
export { allocateDmaMemory, type DmaMemory } from './dma-memory.js';
export { diagnoseHost, type CheckStatus, type HostCheck, type HostDiagnosisOptions } from './host-check.js';
export { IommufdContext, IommufdDevice } from './iommufd-context.js';
export { VfioIoctls, type DeviceInfo, type DirtyBitmapTarget, type HwInfo, type IoctlOptions, type IoctlStruct, type IovaRanges, type IrqInfo, type RegionInfo, type VfioIoctlName } from './ioctl.js';
export { isLibcLoaded, libcSyscalls } from './libc-syscalls.js';
export { describeBlockers, DMA_SAFE_DRIVERS, parseReservedRegions, pciId, Sysfs, type DriverBinding, type GroupInfo, type PciDeviceInfo } from './sysfs.js';
export { abandon, asIoasError, releaseAll, releaseContainer } from './release.js';
export { parseType1Info, type Type1Info, type Type1Migration } from './type1-info.js';
export * as iommufdUapi from './uapi/iommufd.js';
export { hostIoctlArch, IOC_NONE_POWERPC, ioctlNumber, type IoctlArch } from './uapi/ioctl-number.js';
export * as vfioUapi from './uapi/vfio.js';
export { VfioContainer } from './vfio-container.js';
export { VfioDevice } from './vfio-device.js';
export { VfioGroup } from './vfio-group.js';
