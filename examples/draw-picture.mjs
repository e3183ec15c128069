// The examples' --picture option: a container's snapshot drawn by @ioas/view, as SVG, or as a whole
// HTML page when the file name ends in .html. The docs build draws the guides' pictures this way.
import { writeFileSync } from 'node:fs';
import { renderIovaMap } from '@ioas/view';

/** Writes `snapshot` as a picture to `path` and says where. */
export function drawPicture(path, snapshot) {
  writeFileSync(path, renderIovaMap(snapshot, { format: path.endsWith('.html') ? 'html' : 'svg' }));
  console.log(`picture: ${path}`);
}
