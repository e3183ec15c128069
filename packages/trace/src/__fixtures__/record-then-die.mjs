// Child process of recorder.test.ts's crash-safety tests: records a type1 map/unmap loop on the
// simulator, then dies by SIGKILL, which no exit handler can see.
//
//   node record-then-die.mjs after-mmap|after-write <trace> [journal|lines]   die after the calls returned
//   node record-then-die.mjs during <trace> [journal|lines]                   die inside an ioctl (the sim kills the process)
import { createSimulator, simSyscalls } from '@ioas/backend-sim';
import { recordSyscalls } from '@ioas/trace';
import { type1ByHand } from './type1-by-hand.mjs';

const [mode, path, format = 'journal'] = process.argv.slice(2);
const sim = simSyscalls(createSimulator({ platform: 'x86-vtd' }));
const inner = Object.create(sim);
inner.ioctl = (fd, request, argument) => {
  // "during": the kernel side kills the process while it handles MAP_DMA of IOVA 0xdead000.
  if (mode === 'during' && typeof argument !== 'number' && argument.byteLength === 32 && new DataView(argument.buffer, argument.byteOffset).getBigUint64(16, true) === 0xdead000n) {
    process.kill(process.pid, 'SIGKILL');
  }
  return sim.ioctl(fd, request, argument);
};
const recorded = recordSyscalls(inner, { path, writer: mode === 'after-write' ? 'write' : 'mmap', format });

const PAGE = 0x1000n;
const { pair: mapUnmap } = type1ByHand(recorded);
const pair = (iova) => {
  if (mapUnmap(iova).some((result) => result !== 0)) throw new Error('MAP_DMA or UNMAP_DMA failed');
};
for (let index = 0; index < 1000; index++) pair(0x1_0000_0000n + BigInt(index) * PAGE);
if (mode === 'during') pair(0xdead000n);
console.log(JSON.stringify({ calls: recorded.calls, writer: recorded.writer }));
process.kill(process.pid, 'SIGKILL');
