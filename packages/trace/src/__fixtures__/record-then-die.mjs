// Child process of recorder.test.ts's crash-safety tests: records a type1 map/unmap loop on the
// simulator, then dies by SIGKILL, which no exit handler can see.
//
//   node record-then-die.mjs after-mmap|after-write <trace>   die after the calls returned
//   node record-then-die.mjs during <trace>                   die inside an ioctl (the sim kills the process)
import { createSimulator, simSyscalls } from '@ioas/backend-sim';
import { recordSyscalls } from '@ioas/trace';

const [mode, path] = process.argv.slice(2);
const sim = simSyscalls(createSimulator({ platform: 'x86-vtd' }));
const inner = Object.create(sim);
inner.ioctl = (fd, request, argument) => {
  // "during": the kernel side kills the process while it handles MAP_DMA of IOVA 0xdead000.
  if (mode === 'during' && typeof argument !== 'number' && argument.byteLength === 32 && new DataView(argument.buffer, argument.byteOffset).getBigUint64(16, true) === 0xdead000n) {
    process.kill(process.pid, 'SIGKILL');
  }
  return sim.ioctl(fd, request, argument);
};
const recorded = recordSyscalls(inner, { path, writer: mode === 'after-write' ? 'write' : 'mmap' });

const PAGE = 0x1000n;
const address = recorded.mmap(PAGE, 3, 0x21, -1, 0n);
const container = recorded.open('/dev/vfio/vfio', 2);
const group = recorded.open('/dev/vfio/3', 2);
const fd = new Uint8Array(4);
new DataView(fd.buffer).setInt32(0, container, true);
recorded.ioctl(group, 0x3b00 + 104, fd); // VFIO_GROUP_SET_CONTAINER
recorded.ioctl(container, 0x3b00 + 102, 3); // VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU
const map = new Uint8Array(32);
const mapView = new DataView(map.buffer);
mapView.setUint32(0, 32, true);
mapView.setUint32(4, 3, true);
mapView.setBigUint64(8, address, true);
mapView.setBigUint64(24, PAGE, true);
const unmap = new Uint8Array(24);
const unmapView = new DataView(unmap.buffer);
unmapView.setUint32(0, 24, true);
const pair = (iova) => {
  mapView.setBigUint64(16, iova, true);
  if (recorded.ioctl(container, 0x3b00 + 113, map) !== 0) throw new Error('MAP_DMA failed');
  unmapView.setBigUint64(8, iova, true);
  unmapView.setBigUint64(16, PAGE, true);
  if (recorded.ioctl(container, 0x3b00 + 114, unmap) !== 0) throw new Error('UNMAP_DMA failed');
};
for (let index = 0; index < 1000; index++) pair(0x1_0000_0000n + BigInt(index) * PAGE);
if (mode === 'during') pair(0xdead000n);
console.log(JSON.stringify({ calls: recorded.calls, writer: recorded.writer }));
process.kill(process.pid, 'SIGKILL');
