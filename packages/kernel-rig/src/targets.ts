/**
 * Where the rig's tests run: on the real kernel inside the QEMU guest (IOAS_REAL_KERNEL names the
 * lane), or on the simulator's syscall face with the matching preset. The same backend
 * (backend-smmu) and the same code run on both.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { IoasError, type Syscalls } from '@ioas/core';
import { createSimulator, simSyscalls, type PlatformName, type SimKernel, type Simulator } from '@ioas/backend-sim';
import { libcSyscalls, Sysfs } from '@ioas/vfio';

/** The lane this process runs in, or undefined outside the guest. */
export const lane = process.env.IOAS_REAL_KERNEL as 'x86' | 'arm64' | 'iommufd' | undefined;

/** The simulator preset that stands for a lane's machine. */
export function presetOf(name: 'x86' | 'arm64' | 'iommufd'): PlatformName {
  return name === 'arm64' ? 'arm-smmuv3' : 'x86-vtd';
}

/** The kernel a lane boots, as the simulator's profile: 6.12 on the iommufd lane, 6.1 on the others. */
export function kernelOf(name: 'x86' | 'arm64' | 'iommufd'): SimKernel {
  return name === 'iommufd' ? '6.12' : '6.1';
}

/** The kernel interface a lane tests. */
export function interfaceOf(name: 'x86' | 'arm64' | 'iommufd'): 'type1' | 'iommufd' {
  return name === 'iommufd' ? 'iommufd' : 'type1';
}

/** Where rig.mjs puts the second edu (`-device edu,addr=0x10`), on q35 and virt alike. */
export const SECOND_EDU = '0000:00:10.0';

export interface Machine {
  readonly kind: 'real' | 'sim';
  readonly syscalls: Syscalls;
  readonly sysfs: Sysfs;
  /** The edu device's PCI address: the first edu, bound to vfio-pci from the start. */
  readonly edu: string;
  /**
   * The second edu's PCI address (0000:00:10.0), in its own IOMMU group and bound to no driver at
   * start: the hot-plug tests bind it, attach it to a live container, and unbind it when done.
   */
  readonly edu2: string;
  readonly simulator?: Simulator;
}

/** The real machine of this guest. */
export function realMachine(): Machine {
  const syscalls = libcSyscalls();
  const edu = readFileSync('/tmp/results/edu-address', 'utf8').trim();
  const edu2 = readFileSync('/tmp/results/edu2-address', 'utf8').trim();
  return { kind: 'real', syscalls, sysfs: new Sysfs(syscalls), edu, edu2 };
}

/** A fresh simulated machine standing for the lane's. */
export function simMachine(name: 'x86' | 'arm64' | 'iommufd'): Machine {
  const simulator = createSimulator({ platform: presetOf(name), kernel: kernelOf(name) });
  const syscalls = simSyscalls(simulator);
  // The first edu is the one the preset binds to vfio-pci at start; the second sits where rig.mjs
  // puts the guest's (other edus in a preset stand for devices QEMU cannot give the guest).
  const edu = simulator.devices().find((device) => device.edu && device.driver === 'vfio-pci')!.address;
  const edu2 = SECOND_EDU;
  return { kind: 'sim', syscalls, sysfs: new Sysfs(syscalls), edu, edu2, simulator };
}

/** Files open: the process's fds on the real kernel, the simulator's open kernel objects and group files. */
export function openFiles(machine: Machine): number {
  return machine.kind === 'real' ? readdirSync('/proc/self/fd').length : machine.simulator!.openHandles();
}

/** The IoasError code `run` throws with, or 'no error'. */
export function codeOf(run: () => unknown): string {
  try {
    run();
  } catch (error) {
    if (IoasError.isInstance(error)) return error.code;
    throw error;
  }
  return 'no error';
}
