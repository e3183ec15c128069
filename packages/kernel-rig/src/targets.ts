/**
 * Where the rig's tests run: on the real kernel inside the QEMU guest (IOAS_REAL_KERNEL names the
 * lane), or on the simulator's syscall face with the matching preset. The same backend
 * (backend-smmu) and the same code run on both.
 */
import { readFileSync } from 'node:fs';
import type { Syscalls } from '@ioas/core';
import { createSimulator, simSyscalls, type PlatformName, type Simulator } from '@ioas/backend-sim';
import { libcSyscalls, Sysfs } from '@ioas/vfio';

/** The lane this process runs in, or undefined outside the guest. */
export const lane = process.env.IOAS_REAL_KERNEL as 'x86' | 'arm64' | 'iommufd' | undefined;

/** The simulator preset that stands for a lane's machine. */
export function presetOf(name: 'x86' | 'arm64' | 'iommufd'): PlatformName {
  return name === 'arm64' ? 'arm-smmuv3' : 'x86-vtd';
}

/** The kernel interface a lane tests. */
export function interfaceOf(name: 'x86' | 'arm64' | 'iommufd'): 'type1' | 'iommufd' {
  return name === 'iommufd' ? 'iommufd' : 'type1';
}

export interface Machine {
  readonly kind: 'real' | 'sim';
  readonly syscalls: Syscalls;
  readonly sysfs: Sysfs;
  /** The edu device's PCI address. */
  readonly edu: string;
  readonly simulator?: Simulator;
}

/** The real machine of this guest. */
export function realMachine(): Machine {
  const syscalls = libcSyscalls();
  const edu = readFileSync('/tmp/results/edu-address', 'utf8').trim();
  return { kind: 'real', syscalls, sysfs: new Sysfs(syscalls), edu };
}

/** A fresh simulated machine standing for the lane's. */
export function simMachine(name: 'x86' | 'arm64' | 'iommufd'): Machine {
  const simulator = createSimulator({ platform: presetOf(name) });
  const syscalls = simSyscalls(simulator);
  const edu = simulator.devices().find((device) => device.edu)!.address;
  return { kind: 'sim', syscalls, sysfs: new Sysfs(syscalls), edu, simulator };
}
