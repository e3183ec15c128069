/*
 * The C baseline for the in-guest benchmark: VFIO_IOMMU_MAP_DMA + VFIO_IOMMU_UNMAP_DMA of 4 KiB in
 * a loop on a type1v2 container, against the system's linux/vfio.h. Prints ns per map+unmap pair.
 * Usage: map-unmap <group number> <pairs>
 */
#include <fcntl.h>
#include <linux/vfio.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>

int main(int argc, char **argv) {
  if (argc < 3) return 2;
  char path[64];
  snprintf(path, sizeof path, "/dev/vfio/%s", argv[1]);
  long pairs = atol(argv[2]);
  int container = open("/dev/vfio/vfio", O_RDWR | O_CLOEXEC);
  int group = open(path, O_RDWR | O_CLOEXEC);
  if (container < 0 || group < 0) { perror("open"); return 1; }
  if (ioctl(group, VFIO_GROUP_SET_CONTAINER, &container) || ioctl(container, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU)) { perror("setup"); return 1; }
  void *buffer = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
  struct vfio_iommu_type1_dma_map map = { .argsz = sizeof map, .flags = VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE,
                                          .vaddr = (unsigned long)buffer, .iova = 0x100000, .size = 4096 };
  struct vfio_iommu_type1_dma_unmap unmap = { .argsz = sizeof unmap, .iova = 0x100000, .size = 4096 };
  struct timespec start, end;
  clock_gettime(CLOCK_MONOTONIC, &start);
  for (long i = 0; i < pairs; i++) {
    if (ioctl(container, VFIO_IOMMU_MAP_DMA, &map)) { perror("map"); return 1; }
    unmap.size = 4096;
    if (ioctl(container, VFIO_IOMMU_UNMAP_DMA, &unmap)) { perror("unmap"); return 1; }
  }
  clock_gettime(CLOCK_MONOTONIC, &end);
  double ns = (end.tv_sec - start.tv_sec) * 1e9 + (end.tv_nsec - start.tv_nsec);
  printf("%.0f\n", ns / pairs);
  return 0;
}
