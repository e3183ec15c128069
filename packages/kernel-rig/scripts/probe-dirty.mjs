// Dirty-tracking facts of a lane's real kernel, asked with raw ioctls (run inside the guest):
//   node packages/kernel-rig/rig.mjs <lane> -- 'node packages/kernel-rig/scripts/probe-dirty.mjs'
// type1 lanes: GET_INFO's MIGRATION capability, DIRTY_PAGES START / GET_BITMAP / STOP around an edu
// DMA write, UNMAP_DMA with GET_DIRTY_BITMAP. iommufd lane: GET_HW_INFO's out_capabilities, the
// IOMMU's ecap, HWPT_ALLOC with and without IOMMU_HWPT_ALLOC_DIRTY_TRACKING, SET_DIRTY_TRACKING.
// Prints one JSON object and writes it to /tmp/results/dirty-facts.json.
import { readFileSync, writeFileSync, existsSync, readdirSync } from 'node:fs';
import { allocateDmaMemory, IommufdContext, libcSyscalls, Sysfs, VfioContainer, VfioDevice, VfioGroup, VfioIoctls, vfioUapi } from '@ioas/vfio';
import { errnoName } from '@ioas/core';

const syscalls = libcSyscalls();
const ioctls = new VfioIoctls({ syscalls });
const sysfs = new Sysfs(syscalls);
const lane = process.env.IOAS_REAL_KERNEL;
const edu = readFileSync('/tmp/results/edu-address', 'utf8').trim();
const IO = (nr) => (0x3b << 8) | nr;
const facts = { lane, kernel: readFileSync('/proc/sys/kernel/osrelease', 'utf8').trim(), edu };
const answer = (result) => (result < 0 ? errnoName(-result) : `ok ${result}`);
const IOVA = 0x10_0000n;
const PAGES = 4;

/** edu DMA from its buffer to `iova` (device to RAM), `length` bytes, through a mapped BAR0. */
async function eduWrite(device, iova, pattern) {
  device.enableBusMaster();
  const bar = syscalls.memory(device.mmap(vfioUapi.VFIO_PCI_BAR0_REGION_INDEX), 0x100);
  const u64 = new BigUint64Array(bar.buffer, bar.byteOffset, 0x20);
  const u32 = new Uint32Array(bar.buffer, bar.byteOffset, 0x40);
  facts.eduId = `0x${u32[0].toString(16)}`;
  // The pattern into the device's buffer (RAM to device), then out to `iova` (device to RAM).
  const dma = async (source, destination, count, flags) => {
    u64[0x80 / 8] = source;
    u64[0x88 / 8] = destination;
    u64[0x90 / 8] = BigInt(count);
    u64[0x98 / 8] = 1n | flags;
    const deadline = Date.now() + 10_000;
    while ((u64[0x98 / 8] & 1n) !== 0n) {
      if (Date.now() > deadline) throw new Error('edu DMA timeout');
      await new Promise((resolve) => setTimeout(resolve, 1));
    }
  };
  await dma(pattern.iova, 0x40000n, pattern.length, 0n);
  await dma(0x40000n, iova, pattern.length, 2n);
}

async function type1() {
  const container = VfioContainer.open(ioctls);
  const group = VfioGroup.open(ioctls, sysfs.deviceGroup(edu));
  group.setContainer(container);
  container.setIommu(vfioUapi.VFIO_TYPE1v2_IOMMU);
  // GET_INFO with room for the capabilities; MIGRATION (id 2) read by hand (6.1 does not pad caps).
  const info = new Uint8Array(512);
  const view = new DataView(info.buffer);
  view.setUint32(0, info.length, true);
  facts.getInfo = answer(syscalls.ioctl(container.fd, IO(112), info));
  facts.iovaPgsizes = `0x${view.getBigUint64(8, true).toString(16)}`;
  for (let offset = view.getUint32(16, true); offset !== 0; offset = view.getUint32(offset + 4, true)) {
    const id = view.getUint16(offset, true);
    if (id === 2) facts.migration = { offset, version: view.getUint16(offset + 2, true), flags: view.getUint32(offset + 8, true), pgsizeBitmap: `0x${view.getBigUint64(offset + 16, true).toString(16)}`, maxDirtyBitmapSize: `0x${view.getBigUint64(offset + 24, true).toString(16)}` };
  }
  const memory = allocateDmaMemory(syscalls, BigInt(PAGES + 1) * 0x1000n);
  const source = memory.address + BigInt(PAGES) * 0x1000n;
  const dirtyPages = (flags, iova = 0n, size = 0n, pgsize = 0n, bitmap = undefined) => {
    const buffer = new Uint8Array(48);
    const v = new DataView(buffer.buffer);
    v.setUint32(0, flags === 4 ? 48 : 8, true);
    v.setUint32(4, flags, true);
    if (bitmap !== undefined) {
      v.setBigUint64(8, iova, true);
      v.setBigUint64(16, size, true);
      v.setBigUint64(24, pgsize, true);
      v.setBigUint64(32, BigInt(bitmap.length), true);
      v.setBigUint64(40, syscalls.addressOf(bitmap), true);
    }
    return answer(syscalls.ioctl(container.fd, IO(117), buffer));
  };
  const bitmap = () => new Uint8Array(8);
  const hex = (bytes) => Buffer.from(bytes).toString('hex');
  // Before START, a GET_BITMAP.
  container.mapDma(memory.address, IOVA, BigInt(PAGES) * 0x1000n, vfioUapi.VFIO_DMA_MAP_FLAG_READ | vfioUapi.VFIO_DMA_MAP_FLAG_WRITE);
  container.mapDma(source, 0x20_0000n, 0x1000n, vfioUapi.VFIO_DMA_MAP_FLAG_READ);
  let b = bitmap();
  facts.getBitmapBeforeStart = dirtyPages(4, IOVA, BigInt(PAGES) * 0x1000n, 0x1000n, b);
  facts.start = dirtyPages(1);
  facts.startAgain = dirtyPages(1);
  b = bitmap();
  facts.getBitmapNoDma = `${dirtyPages(4, IOVA, BigInt(PAGES) * 0x1000n, 0x1000n, b)} ${hex(b)}`;
  const device = new VfioDevice(ioctls, group.deviceFd(edu), edu);
  const pattern = Uint8Array.from({ length: 2048 }, (_, index) => (index * 7 + 3) & 0xff);
  syscalls.memory(source, 2048).set(pattern);
  await eduWrite(device, IOVA + 0x1000n, { iova: 0x20_0000n, length: 2048 });
  facts.dmaBytesOk = Buffer.compare(Buffer.from(syscalls.memory(memory.address + 0x1000n, 2048)), Buffer.from(pattern)) === 0;
  b = bitmap();
  facts.getBitmapAfterDma = `${dirtyPages(4, IOVA, BigInt(PAGES) * 0x1000n, 0x1000n, b)} ${hex(b)}`;
  b = bitmap();
  facts.getBitmapAgain = `${dirtyPages(4, IOVA, BigInt(PAGES) * 0x1000n, 0x1000n, b)} ${hex(b)}`;
  b = bitmap();
  facts.getBitmapWrongPgsize = dirtyPages(4, IOVA, BigInt(PAGES) * 0x1000n, 0x2000n, b);
  b = bitmap();
  facts.getBitmapBisecting = dirtyPages(4, IOVA + 0x1000n, 0x1000n, 0x1000n, b);
  // UNMAP_DMA with GET_DIRTY_BITMAP.
  const unmap = new Uint8Array(48);
  const u = new DataView(unmap.buffer);
  b = bitmap();
  u.setUint32(0, 48, true);
  u.setUint32(4, 1, true);
  u.setBigUint64(8, IOVA, true);
  u.setBigUint64(16, BigInt(PAGES) * 0x1000n, true);
  u.setBigUint64(24, 0x1000n, true);
  u.setBigUint64(32, 8n, true);
  u.setBigUint64(40, syscalls.addressOf(b), true);
  facts.unmapWithBitmap = `${answer(syscalls.ioctl(container.fd, IO(114), unmap))} size 0x${u.getBigUint64(16, true).toString(16)} ${hex(b)}`;
  facts.stop = dirtyPages(2);
  facts.stopAgain = dirtyPages(2);
  facts.bothFlags = dirtyPages(3);
  facts.noFlags = dirtyPages(0);
  device.close();
  group.close();
  container.close();
  memory.free();
}

function iommufd() {
  for (const file of ['cap', 'ecap']) {
    const dir = '/sys/class/iommu';
    if (existsSync(dir)) for (const unit of readdirSync(dir)) {
      const path = `${dir}/${unit}/intel-iommu/${file}`;
      if (existsSync(path)) facts[`${unit}.${file}`] = readFileSync(path, 'utf8').trim();
    }
  }
  const ecap = BigInt(`0x${facts['dmar0.ecap'] ?? '0'}`);
  facts.ecapBits = { smts43: Number((ecap >> 43n) & 1n), slads45: Number((ecap >> 45n) & 1n), slts46: Number((ecap >> 46n) & 1n), flts47: Number((ecap >> 47n) & 1n), smpwc48: Number((ecap >> 48n) & 1n), nest26: Number((ecap >> 26n) & 1n) };
  facts.cmdline = readFileSync('/proc/cmdline', 'utf8').trim();
  const context = IommufdContext.open(ioctls);
  const ioas = context.allocateIoas();
  const device = context.bindDevice(`/dev/vfio/devices/${sysfs.deviceCdev(edu)}`, edu);
  facts.ids = { ioas, device: device.deviceId };
  const hw = new Uint8Array(40);
  const hv = new DataView(hw.buffer);
  const data = new Uint8Array(64);
  hv.setUint32(0, 40, true);
  hv.setUint32(8, device.deviceId, true);
  hv.setUint32(12, data.length, true);
  hv.setBigUint64(16, syscalls.addressOf(data), true);
  facts.getHwInfo = answer(syscalls.ioctl(context.fd, IO(0x8a), hw));
  facts.hwInfo = { dataLen: hv.getUint32(12, true), outDataType: hv.getUint32(24, true), maxPasidLog2: hw[28], outCapabilities: `0x${hv.getBigUint64(32, true).toString(16)}`, data: Buffer.from(data).toString('hex') };
  const alloc = (flags) => {
    const buffer = new Uint8Array(48);
    const v = new DataView(buffer.buffer);
    v.setUint32(0, 48, true);
    v.setUint32(4, flags, true);
    v.setUint32(8, device.deviceId, true);
    v.setUint32(12, ioas, true);
    const result = syscalls.ioctl(context.fd, IO(0x89), buffer);
    return { text: `${answer(result)} hwpt ${v.getUint32(16, true)}`, id: result < 0 ? undefined : v.getUint32(16, true) };
  };
  const dirty = alloc(2);
  facts.hwptAllocDirty = dirty.text;
  const plain = alloc(0);
  facts.hwptAllocPlain = plain.text;
  const setDirty = (hwpt, flags) => {
    const buffer = new Uint8Array(16);
    const v = new DataView(buffer.buffer);
    v.setUint32(0, 16, true);
    v.setUint32(4, flags, true);
    v.setUint32(8, hwpt, true);
    return answer(syscalls.ioctl(context.fd, IO(0x8b), buffer));
  };
  if (plain.id !== undefined) {
    facts.setDirtyOnPlain = setDirty(plain.id, 1);
    facts.attachPlain = device.attach(plain.id);
  }
  if (dirty.id !== undefined) facts.setDirtyOnDirty = setDirty(dirty.id, 1);
  device.close();
  context.close();
}

try {
  if (lane === 'iommufd') iommufd();
  else await type1();
} catch (error) {
  facts.error = String(error?.stack ?? error);
}
const text = JSON.stringify(facts, null, 2);
console.log(text);
writeFileSync('/tmp/results/dirty-facts.json', text);
