/**
 * The libc implementation of the core `Syscalls` interface, through koffi. koffi is loaded on first
 * use, never at import, so that importing this package (or core, or the simulator) works where the
 * native module cannot load.
 *
 * Rules from docs/kernel-rules.md#calling-ioctl-from-node: fixed prototypes per ioctl shape (a variadic ioctl with no
 * third argument leaves garbage in the register), errno read on the very next line after a failed
 * call, pointers as bigint, MAP_FAILED as 0xffffffffffffffff.
 */
import { readdirSync, readFileSync, readlinkSync, writeFileSync, existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import type { Syscalls } from '@ioas/core';

interface Libc {
  koffi: KoffiModule;
  open: (path: string, flags: number) => number;
  close: (fd: number) => number;
  ioctlPointer: (fd: number, request: number, argument: Uint8Array) => number;
  ioctlValue: (fd: number, request: number, argument: number) => number;
  mmap: (address: null, length: bigint, prot: number, flags: number, fd: number, offset: bigint) => bigint;
  munmap: (address: bigint, length: bigint) => number;
  pread: (fd: number, buffer: Uint8Array, count: number, offset: bigint) => number | bigint;
  pwrite: (fd: number, buffer: Uint8Array, count: number, offset: bigint) => number | bigint;
  eventfd: (initialValue: number, flags: number) => number;
  read: (fd: number, buffer: Uint8Array, count: number) => number | bigint;
  write: (fd: number, buffer: Uint8Array, count: number) => number | bigint;
}

interface KoffiModule {
  load(path: string): { func(prototype: string): (...args: never[]) => unknown };
  errno(): number;
  address(value: unknown): bigint;
  view(pointer: unknown, length: number): ArrayBuffer;
}

const MAP_FAILED = 0xffff_ffff_ffff_ffffn;

let loaded: Libc | undefined;

/** Loads koffi and binds the libc functions, once. */
function libc(): Libc {
  if (loaded !== undefined) return loaded;
  const require = createRequire(import.meta.url);
  const koffi = require('koffi') as KoffiModule;
  const library = koffi.load('libc.so.6');
  const bind = <T>(prototype: string): T => library.func(prototype) as unknown as T;
  loaded = {
    koffi,
    open: bind('int open(const char *path, int flags)'),
    close: bind('int close(int fd)'),
    // One prototype per argument shape; never the variadic form.
    ioctlPointer: bind('int ioctl(int fd, unsigned long request, void *argument)'),
    ioctlValue: bind('int ioctl(int fd, unsigned long request, unsigned long argument)'),
    mmap: bind('void *mmap(void *address, size_t length, int prot, int flags, int fd, int64_t offset)'),
    munmap: bind('int munmap(void *address, size_t length)'),
    pread: bind('intptr_t pread(int fd, void *buffer, size_t count, int64_t offset)'),
    pwrite: bind('intptr_t pwrite(int fd, void *buffer, size_t count, int64_t offset)'),
    eventfd: bind('int eventfd(unsigned int initval, int flags)'),
    read: bind('intptr_t read(int fd, void *buffer, size_t count)'),
    write: bind('intptr_t write(int fd, void *buffer, size_t count)'),
  };
  return loaded;
}

/** True once koffi has been loaded in this process (for tests that check lazy loading). */
export function isLibcLoaded(): boolean {
  return loaded !== undefined;
}

function result(value: number | bigint, koffi: KoffiModule): number {
  const number = Number(value);
  // Read errno right away: anything in between may reset it.
  return number < 0 ? -koffi.errno() : number;
}

/** The libc `Syscalls`: the real kernel. */
export function libcSyscalls(): Syscalls {
  return {
    name: 'libc',
    open(path, flags) {
      const c = libc();
      const fd = c.open(path, flags);
      return fd < 0 ? -c.koffi.errno() : fd;
    },
    close(fd) {
      const c = libc();
      const status = c.close(fd);
      return status < 0 ? -c.koffi.errno() : status;
    },
    ioctl(fd, request, argument) {
      const c = libc();
      const status = typeof argument === 'number' ? c.ioctlValue(fd, request, argument) : c.ioctlPointer(fd, request, argument);
      return status < 0 ? -c.koffi.errno() : status;
    },
    mmap(length, prot, flags, fd, offset) {
      const c = libc();
      const address = BigInt(c.mmap(null, length, prot, flags, fd, offset));
      return address === MAP_FAILED ? -BigInt(c.koffi.errno()) : address;
    },
    munmap(address, length) {
      const c = libc();
      const status = c.munmap(address, length);
      return status < 0 ? -c.koffi.errno() : status;
    },
    memory(address, length) {
      return new Uint8Array(libc().koffi.view(address, length));
    },
    addressOf(buffer) {
      return libc().koffi.address(buffer) + 0n;
    },
    pread(fd, buffer, offset) {
      const c = libc();
      return result(c.pread(fd, buffer, buffer.byteLength, offset), c.koffi);
    },
    pwrite(fd, buffer, offset) {
      const c = libc();
      return result(c.pwrite(fd, buffer, buffer.byteLength, offset), c.koffi);
    },
    eventfd(initialValue, flags) {
      const c = libc();
      const fd = c.eventfd(initialValue, flags);
      return fd < 0 ? -c.koffi.errno() : fd;
    },
    read(fd, buffer) {
      const c = libc();
      return result(c.read(fd, buffer, buffer.byteLength), c.koffi);
    },
    write(fd, buffer) {
      const c = libc();
      return result(c.write(fd, buffer, buffer.byteLength), c.koffi);
    },
    readFile: (path) => readFileSync(path, 'utf8'),
    writeFile: (path, data) => writeFileSync(path, data),
    readLink: (path) => readlinkSync(path),
    readDir: (path) => readdirSync(path),
    exists: (path) => existsSync(path),
  };
}
