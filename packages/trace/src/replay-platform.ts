/**
 * Which simulated machine a trace is replayed on: the preset named by the caller, else the one that
 * matches the architecture in the trace's header. Shared by the replay and the scenario converter so
 * that both pick the same machine for the same trace.
 */
import type { PlatformName, SimKernel } from '@ioas/backend-sim';
import { IoasError } from '@ioas/core';
import type { TraceHeader } from './trace-format.js';

/** The preset names, for checking a name given as text. */
export const PLATFORM_NAMES: readonly PlatformName[] = ['x86-vtd', 'arm-smmuv3', 'p4080'];

/**
 * The preset that matches a `uname -m` machine name: `x86_64` → `x86-vtd`, `aarch64`/`arm64` →
 * `arm-smmuv3`, `ppc*`/`powerpc*` → `p4080` (the one PowerPC preset); undefined for any other.
 */
export function platformOfArch(arch: string): PlatformName | undefined {
  const machine = arch.trim().toLowerCase();
  if (machine === 'x86_64' || machine === 'amd64') return 'x86-vtd';
  if (machine === 'aarch64' || machine === 'arm64') return 'arm-smmuv3';
  if (machine.startsWith('ppc') || machine.startsWith('powerpc')) return 'p4080';
  return undefined;
}

/** The platform a replay uses, and why. */
export interface ChosenPlatform {
  /** The preset. */
  readonly platform: PlatformName;
  /** `option`: the caller named it; `machine`: the caller's simulator has it; `header`: the simulator the trace was recorded on; `arch`: inferred from the header's architecture. */
  readonly source: 'option' | 'machine' | 'header' | 'arch';
}

/**
 * The platform for a trace: `given` when set (checked against the preset names), else the preset a
 * simulator recording names in its header, else the header's architecture through {@link platformOfArch}.
 *
 * @throws {IoasError} `invalid-argument` for an unknown preset name, or an architecture no preset matches.
 */
export function choosePlatform(header: Pick<TraceHeader, 'arch' | 'platform'>, given?: string): ChosenPlatform {
  if (given !== undefined) {
    if (!(PLATFORM_NAMES as readonly string[]).includes(given)) throw new IoasError('invalid-argument', `unknown platform ${JSON.stringify(given)}: use one of ${PLATFORM_NAMES.join(', ')}`);
    return { platform: given as PlatformName, source: 'option' };
  }
  if (header.platform !== undefined && (PLATFORM_NAMES as readonly string[]).includes(header.platform)) return { platform: header.platform as PlatformName, source: 'header' };
  const inferred = platformOfArch(String(header.arch));
  if (inferred === undefined) {
    throw new IoasError('invalid-argument', `the trace was recorded on ${JSON.stringify(header.arch)}, which no simulated platform matches: name one (${PLATFORM_NAMES.join(', ')})`);
  }
  return { platform: inferred, source: 'arch' };
}

/**
 * The simulator's kernel profile for a recorded kernel release (`uname -r`): '6.12' from 6.12 on,
 * '6.1' before it (the oldest profile, and the nearest below for 6.2 to 6.11); undefined for a
 * release that is not a version (`sim`: a simulator recording, replayed on its preset's kernel).
 */
export function kernelOfRelease(release: string): SimKernel | undefined {
  const version = /^(\d+)\.(\d+)/.exec(String(release));
  if (version === null) return undefined;
  const major = Number(version[1]);
  const minor = Number(version[2]);
  return major > 6 || (major === 6 && minor >= 12) ? '6.12' : '6.1';
}
