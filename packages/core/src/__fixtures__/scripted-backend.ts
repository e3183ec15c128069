/**
 * A small scripted backend for testing Container on its own: it records every call, keeps a naive
 * list of what is mapped, and fails a chosen call with a chosen errno. The simulator
 * (@ioas/backend-sim) is the faithful model; this double only has to be predictable.
 */
import { ERRNO } from '../errno.js';
import { IoasError } from '../errors.js';
import { intersectRanges, rangeSize, type IovaRange } from '../iova-range.js';
import type { BackendHandleV1, BackendV1, GeometryCall, MapCall } from '../spi.js';
import { PAMU_CAPABILITIES } from '../window-geometry.js';
import type { Capabilities, Geometry, MsiDoorbell, ReservedRange } from '../types.js';

export interface ScriptedOptions {
  capabilities?: Partial<Capabilities>;
  geometry?: Geometry;
  reserved?: ReservedRange[];
  doorbells?: MsiDoorbell[];
  /** Reported unmap size is multiplied by this (to simulate a kernel that disagrees). */
  unmapReportFactor?: bigint;
  /**
   * Hot-plug: the groups that exist, with their devices and reserved ranges (added to `reserved`
   * while the group is in the container), and the IOVA ranges their IOMMU translates (clipping the
   * geometry's ranges while in), told in the preview only when `previewRanges`.
   */
  groups?: Record<number, { devices: string[]; reserved?: ReservedRange[]; ranges?: IovaRange[]; previewRanges?: boolean }>;
}

export interface ScriptedState {
  calls: string[];
  mapped: MapCall[];
  allowed: readonly IovaRange[];
  doorbells: Map<number, bigint>;
  geometry: Geometry;
  closed: boolean;
  /** Groups in the container (hot-plug). */
  members: Set<number>;
  /** Dirty tracking on (the backend's view). */
  tracking: boolean;
  /** IOVAs of the 4 KiB pages "devices" wrote since the last clearing read (what the backend reports dirty). */
  written: Set<bigint>;
  /** Makes the next call of `operation` (or the nth, counting from 1) throw a kernel error. */
  failNext(operation: string, errno?: number, nth?: number): void;
}

export const PAGED: Capabilities = {
  model: 'paged',
  windows: 'sdk',
  msi: 'kernel-managed',
  partialUnmap: false,
  mappingBudget: 65535,
  settableGeometry: false,
};

export const WINDOWED: Capabilities = PAMU_CAPABILITIES;

/** The arm-smmuv3 figures of docs/kernel-rules.md#platform-reserved-layouts. */
export const SMMU_GEOMETRY: Geometry = {
  aperture: { start: 0n, last: 0xffffffffffffn },
  ioPageSizes: 0x40201000n,
  ranges: [
    { start: 0n, last: 0x7ffffffn },
    { start: 0x8100000n, last: 0xffffffffffffn },
  ],
};

export const SMMU_RESERVED: ReservedRange[] = [{ start: 0x8000000n, last: 0x80fffffn, kind: 'msi', source: 'sysfs', origin: 'group 0' }];

export function scriptedBackend(options: ScriptedOptions = {}): { backend: BackendV1; state: () => ScriptedState } {
  let current: ScriptedState | undefined;
  const capabilities: Capabilities = { ...PAGED, ...options.capabilities };
  const failures: { operation: string; errno: number; countdown: number }[] = [];

  const backend: BackendV1 = {
    specificationVersion: 'v1',
    name: 'scripted',
    probe: async () => ({ available: true }),
    open: async (request) => {
      const state: ScriptedState = {
        calls: [`open ${request.groups.join(',')}`],
        mapped: [],
        allowed: [],
        doorbells: new Map(),
        geometry: options.geometry ?? SMMU_GEOMETRY,
        closed: false,
        members: new Set(request.groups),
        tracking: false,
        written: new Set(),
        failNext(operation, errno = ERRNO.EINVAL, nth = 1) {
          failures.push({ operation, errno, countdown: nth });
        },
      };
      current = state;
      const step = (operation: string, detail = ''): void => {
        state.calls.push(detail ? `${operation} ${detail}` : operation);
        const failure = failures.find((candidate) => candidate.operation === operation);
        if (failure !== undefined && --failure.countdown === 0) {
          failures.splice(failures.indexOf(failure), 1);
          throw IoasError.fromErrno(failure.errno, `SCRIPTED_${operation.toUpperCase()}`, `scripted ${operation} failure`, { backend: 'scripted' });
        }
      };
      const handle: BackendHandleV1 = {
        capabilities,
        doGetGeometry: () => {
          step('getGeometry');
          const clips = [...state.members].flatMap((group) => (options.groups?.[group]?.ranges === undefined ? [] : [options.groups[group]!.ranges!]));
          if (clips.length === 0) return state.geometry;
          const ranges = clips.reduce((ranges, clip) => intersectRanges(ranges, clip), state.geometry.ranges ?? [state.geometry.aperture]);
          return { ...state.geometry, aperture: { start: ranges[0]!.start, last: ranges[ranges.length - 1]!.last }, ranges };
        },
        doGetReserved: () => {
          step('getReserved');
          return [...(options.reserved ?? []), ...[...state.members].flatMap((group) => options.groups?.[group]?.reserved ?? [])];
        },
        doMap: (call) => {
          step('map', `${call.iova.start.toString(16)}+${rangeSize(call.iova).toString(16)}`);
          state.mapped.push(call);
        },
        doUnmap: (range) => {
          step('unmap', `${range.start.toString(16)}-${range.last.toString(16)}`);
          let bytes = 0n;
          const kept: MapCall[] = [];
          for (const mapped of state.mapped) {
            if (mapped.iova.start >= range.start && mapped.iova.last <= range.last) {
              bytes += rangeSize(mapped.iova);
            } else if (mapped.iova.last < range.start || mapped.iova.start > range.last) {
              kept.push(mapped);
            } else if (capabilities.partialUnmap) {
              const start = mapped.iova.start > range.start ? mapped.iova.start : range.start;
              const last = mapped.iova.last < range.last ? mapped.iova.last : range.last;
              bytes += last - start + 1n;
              if (mapped.iova.start < start) kept.push({ ...mapped, iova: { start: mapped.iova.start, last: start - 1n } });
              if (mapped.iova.last > last) kept.push({ ...mapped, iova: { start: last + 1n, last: mapped.iova.last } });
            } else {
              throw IoasError.fromErrno(ERRNO.EINVAL, 'SCRIPTED_UNMAP', 'bisecting unmap reached the backend');
            }
          }
          state.mapped = kept;
          return bytes * (options.unmapReportFactor ?? 1n);
        },
        doClose: () => {
          if (state.closed) return;
          step('close');
          state.closed = true;
          state.mapped = [];
          state.doorbells.clear();
        },
      };
      if (capabilities.settableGeometry) {
        handle.doSetGeometry = (call: GeometryCall) => {
          step('setGeometry', `${call.aperture.start.toString(16)}-${call.aperture.last.toString(16)}/${call.windowCount}`);
          const size = rangeSize(call.aperture);
          state.geometry = {
            ...state.geometry,
            aperture: call.aperture,
            windows: { count: call.windowCount, size: size / BigInt(call.windowCount), maxCount: state.geometry.windows?.maxCount ?? 256 },
          };
        };
      }
      if (capabilities.windows === 'kernel-allow-list') {
        handle.doSetAllowedRanges = (ranges) => {
          step('setAllowedRanges', String(ranges.length));
          state.allowed = ranges;
        };
      }
      if (capabilities.msi === 'explicit') {
        handle.doListMsiDoorbells = () => {
          step('listMsiDoorbells');
          return options.doorbells ?? [];
        };
        handle.doMapMsiDoorbell = (index, iova) => {
          step('mapMsiDoorbell', `${index}@${iova.toString(16)}`);
          state.doorbells.set(index, iova);
        };
        handle.doUnmapMsiDoorbell = (index, iova) => {
          step('unmapMsiDoorbell', `${index}@${iova.toString(16)}`);
          state.doorbells.delete(index);
        };
      }
      if (capabilities.dirtyTracking?.supported) {
        // Reports the written pages at the read's page size (a page is dirty when any 4 KiB in it was written).
        // Its kernel ORs bits in, as iommufd's does: a reused bitmap is zeroed first.
        const report = (iova: IovaRange, pageSize: bigint, bitmap: Uint8Array, clear: boolean, zeroed = true): void => {
          if (!zeroed) bitmap.fill(0);
          for (const page of [...state.written]) {
            if (page < iova.start || page > iova.last) continue;
            const bit = Number((page - iova.start) / pageSize);
            bitmap[bit >>> 3]! |= 1 << (bit & 7);
            if (clear) state.written.delete(page);
          }
        };
        handle.doDirtyStart = () => {
          step('dirtyStart');
          state.tracking = true;
        };
        handle.doDirtyStop = () => {
          step('dirtyStop');
          state.tracking = false;
        };
        handle.doDirtyRead = (call) => {
          step('dirtyRead', `${call.iova.start.toString(16)}-${call.iova.last.toString(16)}/${call.pageSize.toString(16)}${call.clear ? '' : ' keep'}`);
          report(call.iova, call.pageSize, call.bitmap, call.clear, call.zeroed);
        };
        handle.doDirtyUnmap = (call) => {
          step('dirtyUnmap', `${call.iova.start.toString(16)}-${call.iova.last.toString(16)}/${call.pageSize.toString(16)}`);
          report(call.iova, call.pageSize, call.bitmap, true);
          return handle.doUnmap(call.iova);
        };
      }
      if (capabilities.hotPlug) {
        const catalog = options.groups ?? {};
        const groupOf = (device: string): number => {
          const found = Object.entries(catalog).find(([, group]) => group.devices.includes(device));
          if (found === undefined) throw new IoasError('not-found', `there is no device ${device}`, { backend: 'scripted' });
          return Number(found[0]);
        };
        const membersOf = (groups: Iterable<number>) => {
          const sorted = [...new Set(groups)].sort((a, b) => a - b);
          return { groups: sorted, devices: sorted.flatMap((group) => catalog[group]?.devices ?? []).sort() };
        };
        handle.doMembers = () => membersOf(state.members);
        handle.doResolveMembers = (request) => {
          for (const group of request.groups) if (catalog[group] === undefined) throw new IoasError('not-found', `there is no IOMMU group ${group}`, { backend: 'scripted' });
          return membersOf([...request.groups, ...request.devices.map(groupOf)]);
        };
        handle.doPreviewAttach = (members) => {
          step('previewAttach', members.groups.join(','));
          const ranges = members.groups.flatMap((group) => (catalog[group]!.previewRanges ? (catalog[group]!.ranges ?? []) : []));
          return { reserved: members.groups.flatMap((group) => catalog[group]!.reserved ?? []), ...(ranges.length === 0 ? {} : { ranges }) };
        };
        handle.doAttach = (members) => {
          step('attach', members.groups.join(','));
          for (const group of members.groups) state.members.add(group);
        };
        handle.doDetach = (members) => {
          step('detach', members.groups.join(','));
          for (const group of members.groups) state.members.delete(group);
        };
      }
      return handle;
    },
  };
  return {
    backend,
    state: () => {
      if (current === undefined) throw new Error('scripted backend not opened yet');
      return current;
    },
  };
}
