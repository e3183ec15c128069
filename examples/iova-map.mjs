// Draw a container's IOVA space: 256 MiB of guest RAM mapped 1:1 on a simulated ARM SMMUv3, printed
// as text for the terminal and written as a self-contained HTML page to open in a browser.
//
//   node examples/iova-map.mjs [--html FILE]      (default: iova-map.html in the system temp directory)
import { writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { sim } from '@ioas/backend-sim';
import { Container } from '@ioas/core';
import { renderIovaMap } from '@ioas/view';

const { values } = parseArgs({ options: { html: { type: 'string', default: join(tmpdir(), 'iova-map.html') } } });
const MiB = 1n << 20n;

const backend = sim({ platform: 'arm-smmuv3' });
const container = await Container.open({ backend, groups: [4] });
try {
  container.mapRegion({ iova: 0n, memory: backend.simulator.memory.allocate(256n * MiB, 2n * MiB) });
  process.stdout.write(renderIovaMap(container.snapshot('my guest'), { format: 'text' }));
  writeFileSync(values.html, renderIovaMap(container.snapshot('my guest'), { format: 'html' }));
  console.log(`wrote ${values.html}`);
} finally {
  container.close();
}
