// A type1v2 container opened by hand on any Syscalls face (group 3 of the x86-vtd preset), with the
// real request numbers and structs: the tests' and the crash child's workload, written once. Plain
// JavaScript so that the crash child (a node process, no TypeScript) can import it too.
import { SYSCALL_FLAGS } from '@ioas/core';
import { ioctlNumber, vfioUapi } from '@ioas/vfio';

const PAGE = 0x1000n;
const { VFIO_NR } = vfioUapi;

/** A `vfio_iommu_type1_dma_map` for `size` bytes at `vaddr` -> `iova`, read and write. */
export function dmaMapStruct(vaddr, iova = 0x10_0000n, size = PAGE, little = true) {
  const bytes = new Uint8Array(vfioUapi.vfio_iommu_type1_dma_map.sizeof);
  const view = new DataView(bytes.buffer);
  view.setUint32(0, bytes.byteLength, little);
  view.setUint32(4, vfioUapi.VFIO_DMA_MAP_FLAG_READ | vfioUapi.VFIO_DMA_MAP_FLAG_WRITE, little);
  view.setBigUint64(8, vaddr, little);
  view.setBigUint64(16, iova, little);
  view.setBigUint64(24, size, little);
  return bytes;
}

/**
 * Opens the container, sets group 3 in it and type1v2, maps one page of memory from the face's own
 * mmap; returns `map(iova)` and `pair(iova)` (map then unmap of that page), each giving the ioctls'
 * results.
 */
export function type1ByHand(syscalls) {
  const address = syscalls.mmap(PAGE, SYSCALL_FLAGS.PROT_READ | SYSCALL_FLAGS.PROT_WRITE, SYSCALL_FLAGS.MAP_SHARED | SYSCALL_FLAGS.MAP_ANONYMOUS, -1, 0n);
  const container = syscalls.open('/dev/vfio/vfio', SYSCALL_FLAGS.O_RDWR);
  const group = syscalls.open('/dev/vfio/3', SYSCALL_FLAGS.O_RDWR);
  const fd = new Uint8Array(4);
  new DataView(fd.buffer).setInt32(0, container, true);
  syscalls.ioctl(group, ioctlNumber(VFIO_NR.VFIO_GROUP_SET_CONTAINER), fd);
  syscalls.ioctl(container, ioctlNumber(VFIO_NR.VFIO_SET_IOMMU), vfioUapi.VFIO_TYPE1v2_IOMMU);
  const map = dmaMapStruct(address);
  const mapView = new DataView(map.buffer);
  const unmap = new Uint8Array(vfioUapi.vfio_iommu_type1_dma_unmap.sizeof);
  const unmapView = new DataView(unmap.buffer);
  unmapView.setUint32(0, unmap.byteLength, true);
  unmapView.setBigUint64(16, PAGE, true);
  const mapAt = (iova) => {
    mapView.setBigUint64(16, iova, true);
    return syscalls.ioctl(container, ioctlNumber(VFIO_NR.VFIO_IOMMU_MAP_DMA), map);
  };
  return {
    map: mapAt,
    pair(iova) {
      const mapped = mapAt(iova);
      unmapView.setBigUint64(8, iova, true);
      return [mapped, syscalls.ioctl(container, ioctlNumber(VFIO_NR.VFIO_IOMMU_UNMAP_DMA), unmap)];
    },
  };
}
