import type { ConformanceTarget } from '@ioas/conformance';
import { Container, hex, type Syscalls } from '@ioas/core';
import { createSimulator, simSyscalls, type Simulator } from '@ioas/backend-sim';
import { eduDevice, simDeviceDriver, simHostMemory } from '@ioas/backend-sim/testing';
import { pamu, type PamuBackend } from '../pamu-backend.js';
import type { PamuStash } from '../pamu-ioctls.js';
import { PAMU_PROFILES, type PamuProfile, type PamuProfileName } from '../profiles.js';

/** One ioctl as the instrumented syscalls saw it. */
export interface LoggedIoctl {
  readonly name: string;
  /** `vfio_pamu_attr.attribute` for GET_ATTR/SET_ATTR. */
  readonly attribute?: number;
  /** A copy of the struct as sent. */
  readonly bytes?: Uint8Array;
}

/** Decides an ioctl instead of the kernel: return a status to answer it, `undefined` to pass it on. */
export type IoctlHook = (call: LoggedIoctl, argument: number | Uint8Array, forward: () => number) => number | undefined;

/** The simulator's syscall face with every ioctl logged by its profile name, and an optional hook. */
export function instrument(inner: Syscalls & { readonly openFiles: number }, profile: PamuProfile) {
  const names = new Map<number, string>(Object.entries(profile.ioctls).map(([name, value]) => [value, name]));
  const log: LoggedIoctl[] = [];
  const state: { hook: IoctlHook | undefined } = { hook: undefined };
  const syscalls = new Proxy(inner, {
    get(target, property) {
      if (property === 'ioctl') {
        return (fd: number, request: number, argument: number | Uint8Array): number => {
          const name = names.get(request >>> 0) ?? `${hex(request)}`;
          const bytes = typeof argument === 'number' ? undefined : argument.slice();
          const attribute = name.endsWith('_ATTR') && bytes !== undefined ? new DataView(bytes.buffer).getUint32(8, false) : undefined;
          const call: LoggedIoctl = { name, ...(attribute === undefined ? {} : { attribute }), ...(bytes === undefined ? {} : { bytes }) };
          log.push(call);
          const forward = (): number => target.ioctl(fd, request, argument);
          return state.hook?.(call, argument, forward) ?? forward();
        };
      }
      const value = Reflect.get(target, property, target) as unknown;
      return typeof value === 'function' ? (value as (...args: unknown[]) => unknown).bind(target) : value;
    },
  });
  return {
    syscalls,
    log,
    /** Names of the ioctls logged since `from`. */
    names: (from = 0): string[] => log.slice(from).map((call) => (call.attribute === undefined ? call.name : `${call.name}(${['GEOMETRY', 'WINDOWS', 'PAMU_STASH'][call.attribute] ?? call.attribute})`)),
    setHook: (hook: IoctlHook | undefined) => {
      state.hook = hook;
    },
  };
}

/** The P4080's first device, in LIODN group 0, bound to vfio-pci at start. */
export const P4080_FIRST = '0000:01:00.0';
/** The P4080's device behind its second PCIe controller, in LIODN group 1, not bound to vfio-pci at start. */
export const P4080_SECOND = '0001:01:00.0';

/** Options of {@link pamuOnSim}. */
export interface PamuOnSimOptions {
  readonly pamuType?: 2 | 7;
  readonly profile?: PamuProfileName | PamuProfile;
  readonly littleEndian?: boolean;
  readonly memlockLimit?: bigint;
  readonly stash?: PamuStash;
}

/** backend-pamu over the simulator's P4080 syscall face: PowerPC ioctl numbers, big-endian structs. */
export function pamuOnSim(options: PamuOnSimOptions = {}) {
  const simulator: Simulator = createSimulator({ platform: 'p4080', pamuType: options.pamuType ?? 7, ...(options.memlockLimit === undefined ? {} : { memlockLimit: options.memlockLimit }) });
  const profile = typeof options.profile === 'object' ? options.profile : PAMU_PROFILES[options.profile ?? 'sdk-4.x'];
  const raw = simSyscalls(simulator);
  const instrumented = instrument(raw, profile);
  const backend: PamuBackend = pamu({
    profile,
    syscalls: instrumented.syscalls,
    littleEndian: options.littleEndian ?? false,
    ...(options.stash === undefined ? {} : { stash: options.stash }),
  });
  const edu = eduDevice(simulator);
  const target: ConformanceTarget = {
    open: () => Container.open({ backend, groups: [edu.group!] }),
    ...simHostMemory(simulator),
    device: () => simDeviceDriver(simulator, edu),
    injectFault: (errno, skip) => simulator.injectFault({ ioctl: '*', errno, skip }),
    clearFaults: () => simulator.clearInjectedFaults(),
    kernelState: () => ({ mappings: simulator.liveMappings(), openFiles: raw.openFiles }),
    // Hot-plug: the second device's LIODN group joins the domain of group 0.
    hotPlug: {
      first: () => ({ groups: [edu.group!] }),
      second: () => {
        const second = simulator.device(P4080_SECOND);
        if (second.driver !== 'vfio-pci') simulator.bind(P4080_SECOND, 'vfio-pci');
        return { members: { devices: [P4080_SECOND] }, device: simDeviceDriver(simulator, second) };
      },
    },
  };
  return { ...target, target, simulator, backend, profile, edu, raw, ...instrumented };
}
