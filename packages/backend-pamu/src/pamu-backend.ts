import { endianness } from 'node:os';
import { IoasError, PAMU_CAPABILITIES, PAMU_PAGE_SIZE, rangeSize, type BackendHandleV1, type BackendV1, type Capabilities, type Geometry, type Members, type OpenRequest, type Syscalls } from '@ioas/core';
import { describeBlockers, libcSyscalls, Sysfs, type VfioDevice } from '@ioas/vfio';
import { PamuContainer } from './pamu-container.js';
import { PamuIoctls, type PamuStash } from './pamu-ioctls.js';
import { describeProfile, PAMU_PROFILES, pamuProfileSchema, type PamuProfile, type PamuProfileName } from './profiles.js';
import { z } from 'zod';
import { PAMU_MSI_PAGE_SIZE } from './uapi.js';

/** Options of {@link pamu}. */
export interface PamuOptions {
  /**
   * The ABI profile of the kernel: a built-in name (`sdk-3.8`, `sdk-3.12`, `sdk-4.x`) or a profile
   * from {@link definePamuProfile}. Required: the type number differs between SDK kernels and means
   * sPAPR TCE on mainline, so the backend never guesses it
   * (docs/kernel-rules.md#pamu-iommu-type-numbers).
   */
  readonly profile: PamuProfileName | PamuProfile;
  /** The system calls (default: libc through koffi). The simulator's `simSyscalls()` fits here. */
  readonly syscalls?: Syscalls;
  /** Struct byte order (default: this host's; PAMU boards are big-endian). */
  readonly littleEndian?: boolean;
  /** Prefix for sysfs paths (a captured tree in tests). */
  readonly sysfsRoot?: string;
  /** A stash attribute to set on every container after its windows (driver order:
   * docs/kernel-rules.md#pamu-call-order, step 5). */
  readonly stash?: PamuStash;
}

/** The PAMU backend, with its PAMU-only escape hatches. */
export interface PamuBackend extends BackendV1 {
  /** The ABI profile this backend speaks. */
  readonly profile: PamuProfile;
  /**
   * The low-level PAMU container behind an open core `Container` holding `group`: the stash
   * attribute, the translation state, the MSI doorbell addresses.
   */
  containerOf(group: number): PamuContainer;
  /** A device fd for a device of an open container; the caller closes it. */
  openDevice(address: string): VfioDevice;
}

/**
 * The ioas backend for the Freescale/NXP PAMU through the SDK kernels' "type 2" VFIO backend: a
 * windowed IOMMU (an aperture cut into a power-of-two number of windows, each one physically
 * contiguous chunk) with explicitly mapped MSI banks.
 *
 * ```ts
 * const backend = pamu({ profile: 'sdk-4.x' });
 * using container = await Container.open({ backend, groups: [0] });
 * container.setGeometry({ aperture: plan.aperture, windowCount: plan.windowCount });
 * ```
 *
 * @throws {IoasError} `invalid-argument` naming the option at fault: a profile that is neither a
 *   built-in name nor a whole profile (every field and ioctl checked), or another option of the
 *   wrong type, or an unknown key.
 */
export function pamu(options: PamuOptions): PamuBackend {
  checkOptions(options);
  const profile = typeof options.profile === 'string' ? PAMU_PROFILES[options.profile as PamuProfileName] : options.profile;
  const syscalls = options.syscalls ?? libcSyscalls();
  const ioctls = new PamuIoctls(syscalls, profile, options.littleEndian ?? endianness() === 'LE');
  const sysfs = new Sysfs(syscalls, options.sysfsRoot ?? '');
  const open = new Set<PamuContainer>();
  // Only words for the not-viable error: a sysfs read that fails here must not replace that error.
  const describeGroup = (group: number): string => {
    try {
      return describeBlockers(sysfs.groupBlockers(group));
    } catch {
      return '';
    }
  };
  return {
    specificationVersion: 'v1',
    name: 'pamu',
    profile,
    probe: async () => {
      if (!syscalls.exists('/dev/vfio/vfio')) return { available: false, reason: '/dev/vfio/vfio is missing: this is not a VFIO host, or the vfio module is not loaded' };
      return { available: true, detail: `VFIO (/dev/vfio/vfio) with profile ${describeProfile(profile)}; the kernel is checked against it when a container opens` };
    },
    open: async (request) => {
      const groups = new Set(request.groups);
      for (const address of request.devices) {
        const group = sysfs.deviceGroup(address);
        if (group === undefined) throw new IoasError('backend-unavailable', `${address} has no IOMMU group: PAMU gives none to a device without an LIODN`, { backend: 'pamu', operation: 'open' });
        groups.add(group);
      }
      const container = PamuContainer.open(ioctls, [...groups], describeGroup);
      open.add(container);
      return handleFor(container, options.stash, membersOf(sysfs), describeGroup, () => open.delete(container));
    },
    containerOf: (group) => {
      for (const container of open) if (container.groupIds().includes(group)) return container;
      throw new IoasError('not-found', `IOMMU group ${group} is in no open pamu container`, { backend: 'pamu' });
    },
    openDevice: (address) => {
      const group = sysfs.deviceGroup(address);
      for (const container of open) if (group !== undefined && container.groupIds().includes(group)) return container.openDevice(group, address);
      throw new IoasError('not-found', `${address} is in no open pamu container`, { backend: 'pamu' });
    },
  };
}

const u32 = z.number().int().min(0).max(0xffff_ffff);

const optionsSchema = z
  .object({
    // A built-in name or a whole profile: checked in checkOptions, so that an issue names the field.
    profile: z.unknown(),
    syscalls: z.custom<Syscalls>((value) => typeof value === 'object' && value !== null, 'must be a Syscalls object (libcSyscalls(), simSyscalls())').optional(),
    littleEndian: z.boolean().optional(),
    sysfsRoot: z.string().optional(),
    stash: z.object({ cpu: u32, cache: u32 }).strict().optional(),
  })
  .strict();

/** Throws `invalid-argument` naming every option of {@link pamu} at fault. */
function checkOptions(options: unknown): void {
  const fail = (problems: string): never => {
    throw new IoasError('invalid-argument', `pamu(): ${problems}`, { backend: 'pamu', operation: 'pamu()' });
  };
  if (typeof options !== 'object' || options === null || Array.isArray(options)) fail(`options must be an object with a profile, not ${options === null ? 'null' : Array.isArray(options) ? 'an array' : typeof options}`);
  const problems: string[] = [];
  const result = optionsSchema.safeParse(options);
  if (!result.success) problems.push(...result.error.issues.map((issue) => `${issue.path.map(String).join('.') || 'options'}: ${issue.message}`));
  const profile = (options as { profile?: unknown }).profile;
  const names = Object.keys(PAMU_PROFILES).join(', ');
  if (typeof profile === 'string') {
    if (!Object.hasOwn(PAMU_PROFILES, profile)) problems.push(`profile: unknown profile ${JSON.stringify(profile)}; built-in profiles: ${names}`);
  } else if (typeof profile !== 'object' || profile === null) {
    problems.push(`profile: must be a built-in profile name (${names}) or a profile from definePamuProfile(), not ${profile === null ? 'null' : typeof profile}`);
  } else {
    const checked = pamuProfileSchema.safeParse(profile);
    if (!checked.success) problems.push(...checked.error.issues.map((issue) => `${['profile', ...issue.path.map(String)].join('.')}: ${issue.message}`));
  }
  if (problems.length > 0) fail(`invalid options: ${problems.join('; ')}`);
}

/** Whole LIODN groups, as sysfs lists them: what hot-plug resolves requests to. */
interface GroupMembers {
  /** The devices of `groups`, sorted. */
  devicesOf(groups: readonly number[]): string[];
  /** A request resolved: whole groups (a device brings its group). */
  resolve(request: OpenRequest): Members;
}

function membersOf(sysfs: Sysfs): GroupMembers {
  const devicesOf = (groups: readonly number[]): string[] => [...new Set(groups.flatMap((group) => sysfs.groupDevices(group)))].sort();
  return {
    devicesOf,
    resolve: (request) => {
      const groups = new Set<number>();
      if (request.groups.length > 0) {
        const known = sysfs.groups();
        for (const group of request.groups) {
          if (!known.includes(group)) throw new IoasError('not-found', `IOMMU group ${group} does not exist (groups: ${known.join(', ') || 'none'})`, { backend: 'pamu', operation: 'resolve' });
          groups.add(group);
        }
      }
      for (const address of request.devices) {
        if (!sysfs.hasDevice(address)) throw new IoasError('not-found', `device ${address} does not exist`, { backend: 'pamu', operation: 'resolve' });
        const group = sysfs.deviceGroup(address);
        if (group === undefined) throw new IoasError('backend-unavailable', `${address} has no IOMMU group: PAMU gives none to a device without an LIODN`, { backend: 'pamu', operation: 'resolve' });
        groups.add(group);
      }
      const sorted = [...groups].sort((a, b) => a - b);
      return { groups: sorted, devices: devicesOf(sorted) };
    },
  };
}

function handleFor(container: PamuContainer, stash: PamuStash | undefined, members: GroupMembers, describeGroup: (group: number) => string, forget: () => void): BackendHandleV1 {
  // Hot-plug: whole LIODN groups join and leave the one PAMU domain
  // (PamuContainer.attachGroups / detachGroups).
  const capabilities: Capabilities = { ...PAMU_CAPABILITIES, hotPlug: true };
  return {
    capabilities,
    doGetGeometry: (): Geometry => {
      const windows = container.windows();
      return { aperture: windows.aperture, ioPageSizes: PAMU_PAGE_SIZE, windows: { count: windows.count ?? windows.maxCount, size: windows.size, maxCount: windows.maxCount } };
    },
    // PAMU has no get_resv_regions: sysfs shows no reserved regions
    // (docs/kernel-rules.md#pamu-groups-and-liodns).
    doGetReserved: () => [],
    doSetGeometry: (call) => {
      container.configure(call.aperture, call.windowCount);
      if (stash !== undefined) container.setStash(stash);
    },
    doMap: (call) =>
      container.mapDma({
        iova: call.iova.start,
        vaddr: call.memory.address,
        size: call.memory.length,
        contiguousPageSize: call.memory.contiguousPageSize,
        read: call.access.read,
        write: call.access.write,
      }),
    doUnmap: (range) => container.unmapDma(range.start, rangeSize(range)),
    doListMsiDoorbells: () =>
      Array.from({ length: container.msiBankCount }, (_, index) => {
        const doorbell = container.msiDoorbell(index);
        return doorbell === undefined ? { index, size: PAMU_MSI_PAGE_SIZE } : { index, size: PAMU_MSI_PAGE_SIZE, physicalAddress: doorbell.page };
      }),
    doMapMsiDoorbell: (index, iova) => void container.mapMsiBank(index, iova),
    doUnmapMsiDoorbell: (index) => container.unmapMsiBank(index),
    doMembers: () => {
      const groups = [...container.groupIds()].sort((a, b) => a - b);
      return { groups, devices: members.devicesOf(groups) };
    },
    doResolveMembers: (request) => members.resolve(request),
    // PAMU reports no reserved regions, and the domain's geometry is fixed: a newcomer translates
    // exactly the aperture the container already has (docs/kernel-rules.md#pamu-groups-and-liodns).
    doPreviewAttach: () => ({ reserved: [], ranges: [container.windows().aperture] }),
    doAttach: (joining) => container.attachGroups(joining.groups, describeGroup),
    doDetach: (leaving) => container.detachGroups(leaving.groups),
    doClose: () => {
      forget();
      container.close();
    },
  };
}
