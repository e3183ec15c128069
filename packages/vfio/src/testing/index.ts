/**
 * Test helpers of @ioas/vfio (`@ioas/vfio/testing`): a host's sysfs, /dev and /proc written into a
 * directory from a capture, for tools and tests that read a root other than `/`.
 *
 * @packageDocumentation
 */
export { HEALTHY_HOST, writeHostTree, type CapturedDevice, type HostFacts, type SysfsCapture } from './host-tree.js';
