import { IoasError, hex, PAMU_VFIO_MAX_WINDOWS, U64_MAX } from '@ioas/core';
import { ioctlNumber, vfioUapi, type IoctlArch, type VfioIoctlName } from '@ioas/vfio';
import { z } from 'zod';
import { PAMU_NR, type PamuIoctlName } from './uapi.js';

/** The generic VFIO ioctls a PAMU container, its groups and devices use; a profile names a value for each. */
export const PAMU_GENERIC_IOCTLS = [
  'VFIO_GET_API_VERSION',
  'VFIO_CHECK_EXTENSION',
  'VFIO_SET_IOMMU',
  'VFIO_GROUP_GET_STATUS',
  'VFIO_GROUP_SET_CONTAINER',
  'VFIO_GROUP_UNSET_CONTAINER',
  'VFIO_GROUP_GET_DEVICE_FD',
  'VFIO_DEVICE_GET_INFO',
  'VFIO_DEVICE_GET_REGION_INFO',
  'VFIO_DEVICE_GET_IRQ_INFO',
  'VFIO_DEVICE_SET_IRQS',
  'VFIO_DEVICE_RESET',
] as const satisfies readonly VfioIoctlName[];

/** Every ioctl a profile names: the generic VFIO ones and the PAMU container ones. */
export type PamuProfileIoctl = (typeof PAMU_GENERIC_IOCTLS)[number] | PamuIoctlName;

/** The MSI facts of a SoC: where its MSI banks' MSIIR registers are (docs/kernel-rules.md#p4080-msi-banks). */
export interface PamuMsiFacts {
  /** Which SoC and device tree these are, for messages. */
  readonly description: string;
  /**
   * Physical address of each bank's MSIIR, in the kernel's probe order. The kernel maps the bank's
   * 4 KiB page at the start of a window, and the device-visible doorbell is `window base + (MSIIR &
   * 0xfff)`.
   */
  readonly msiir: readonly bigint[];
}

/**
 * An ABI profile: what one vendor kernel's PAMU VFIO backend looks like from userspace. The backend
 * never probes a number blindly: it uses these values and checks that the kernel's answers fit.
 */
export interface PamuProfile {
  /** Short name, in errors and `ioas` output (`sdk-4.x`). */
  readonly name: string;
  /** Which kernel it describes. */
  readonly description: string;
  /** `VFIO_FSL_PAMU_IOMMU`: 2 in the 3.x SDK kernels, 7 in the 4.x ones (docs/kernel-rules.md#pamu-iommu-type-numbers). */
  readonly iommuType: number;
  /** The encoding the values were computed for (PowerPC sets `_IOC_NONE`, 0x20000000:
   * docs/kernel-rules.md#ioctl-numbers-and-the-powerpc-direction-bit). */
  readonly arch: IoctlArch;
  /** The request number of every ioctl the backend sends. */
  readonly ioctls: Readonly<Record<PamuProfileIoctl, number>>;
  /** Most windows the VFIO layer accepts (256: docs/kernel-rules.md#pamu-window-count); the hardware may allow
   * fewer. */
  readonly maxWindows: number;
  /** The SoC's MSI banks. */
  readonly msi: PamuMsiFacts;
}

/** P4080 with a current device tree: MSIIR at +0x140 in each bank's page (docs/kernel-rules.md#p4080-msi-banks). */
export const P4080_MSI: PamuMsiFacts = {
  description: 'P4080, current device tree (msi@41600/41800/41a00 with a second reg)',
  msiir: [0xf_fe04_4140n, 0xf_fe04_5140n, 0xf_fe04_6140n],
};

/** P4080 with an old device tree (no second `reg`): all three MSIIRs in one page (docs/kernel-rules.md#p4080-msi-banks). */
export const P4080_MSI_OLD_DTS: PamuMsiFacts = {
  description: 'P4080, old device tree (no second reg: MSIIR at 0x140 + reg0)',
  msiir: [0xf_fe04_1740n, 0xf_fe04_1940n, 0xf_fe04_1b40n],
};

function ioctlTable(arch: IoctlArch): Record<PamuProfileIoctl, number> {
  const table: Partial<Record<PamuProfileIoctl, number>> = {};
  for (const name of PAMU_GENERIC_IOCTLS) table[name] = ioctlNumber(vfioUapi.VFIO_NR[name], arch);
  for (const [name, nr] of Object.entries(PAMU_NR) as [PamuIoctlName, number][]) table[name] = ioctlNumber(nr, arch);
  return table as Record<PamuProfileIoctl, number>;
}

function builtIn(name: string, description: string, iommuType: number): PamuProfile {
  return { name, description, iommuType, arch: 'powerpc', ioctls: ioctlTable('powerpc'), maxWindows: PAMU_VFIO_MAX_WINDOWS, msi: P4080_MSI };
}

/**
 * The profiles of the SDK kernels (docs/kernel-rules.md#pamu-iommu-type-numbers). Ioctl numbers, struct layouts
 * and semantics are the same in all three; the type number differs. All three are PowerPC (the
 * `_IOC_NONE` bit set) with the P4080's MSI banks; give your own MSI facts for another SoC with
 * {@link definePamuProfile}.
 */
export const PAMU_PROFILES = {
  /** ONL linux-3.8.13 ([S8][S9]): type 2. */
  'sdk-3.8': builtIn('sdk-3.8', 'Freescale SDK 3.8 kernel (ONL linux-3.8.13): VFIO_FSL_PAMU_IOMMU = 2', 2),
  /** The SDK kernel of about 3.12 ([S6][S7]): type 2. */
  'sdk-3.12': builtIn('sdk-3.12', 'Freescale SDK 3.12-era kernel: VFIO_FSL_PAMU_IOMMU = 2', 2),
  /** NXP 4.x SDK (openil_linux, [S1][S2]): type 7. */
  'sdk-4.x': builtIn('sdk-4.x', 'NXP SDK 4.x kernel (openil_linux): VFIO_FSL_PAMU_IOMMU = 7', 7),
} as const satisfies Record<string, PamuProfile>;

/** The name of a built-in profile. */
export type PamuProfileName = keyof typeof PAMU_PROFILES;

const u32 = z.number().int().min(0).max(0xffff_ffff);
const u64 = z.bigint().min(0n).max(U64_MAX);

const overridesSchema = z
  .object({
    base: z.enum(Object.keys(PAMU_PROFILES) as [PamuProfileName, ...PamuProfileName[]]).optional(),
    name: z.string().min(1),
    description: z.string().optional(),
    iommuType: u32.optional(),
    arch: z.enum(['generic', 'powerpc']).optional(),
    ioctls: z.record(z.string(), u32).optional(),
    maxWindows: z
      .number()
      .int()
      .min(1)
      .max(PAMU_VFIO_MAX_WINDOWS)
      .refine((value) => (value & (value - 1)) === 0, 'must be a power of two')
      .optional(),
    msi: z.object({ description: z.string(), msiir: z.array(u64) }).strict().optional(),
  })
  .strict();

/** Every ioctl a profile must name. */
const PROFILE_IOCTLS = [...PAMU_GENERIC_IOCTLS, ...(Object.keys(PAMU_NR) as PamuIoctlName[])];

/** A whole profile, as {@link definePamuProfile} returns one (extra keys pass). */
export const pamuProfileSchema = z.object({
  name: z.string().min(1),
  description: z.string(),
  iommuType: u32,
  arch: z.enum(['generic', 'powerpc']),
  ioctls: z.object(Object.fromEntries(PROFILE_IOCTLS.map((name) => [name, u32])) as Record<PamuProfileIoctl, typeof u32>),
  maxWindows: z
    .number()
    .int()
    .min(1)
    .max(PAMU_VFIO_MAX_WINDOWS)
    .refine((value) => (value & (value - 1)) === 0, 'must be a power of two'),
  msi: z.object({ description: z.string(), msiir: z.array(u64) }),
});

/** What {@link definePamuProfile} takes: a built-in profile to start from and what differs. */
export interface PamuProfileInput {
  /** The built-in profile to start from (default `sdk-4.x`). */
  readonly base?: PamuProfileName;
  /** The new profile's name. */
  readonly name: string;
  /** What it describes. */
  readonly description?: string;
  /** The type number (`VFIO_FSL_PAMU_IOMMU`). */
  readonly iommuType?: number;
  /** Recomputes every ioctl value for this encoding (before `ioctls` overrides apply). */
  readonly arch?: IoctlArch;
  /** Request numbers that differ from the encoding's. */
  readonly ioctls?: Partial<Record<PamuProfileIoctl, number>>;
  /** Most windows (a power of two up to 256). */
  readonly maxWindows?: number;
  /** Another SoC's MSI banks. */
  readonly msi?: PamuMsiFacts;
}

/**
 * A profile of your own: a built-in one with some facts changed (a board whose kernel numbers the
 * type differently, another SoC's MSI banks, a little-endian test kernel's encoding). Validated:
 * unknown ioctl names, numbers out of range or a window maximum that is not a power of two up to
 * 256 are `invalid-argument`.
 */
export function definePamuProfile(input: PamuProfileInput): PamuProfile {
  const parsed = overridesSchema.safeParse(input);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new IoasError('invalid-argument', `definePamuProfile(): ${issue.path.join('.') || 'input'}: ${issue.message}`, { backend: 'pamu' });
  }
  const base = PAMU_PROFILES[parsed.data.base ?? 'sdk-4.x'];
  const known = new Set<string>(Object.keys(base.ioctls));
  for (const name of Object.keys(parsed.data.ioctls ?? {})) {
    if (!known.has(name)) throw new IoasError('invalid-argument', `definePamuProfile(): ioctls.${name} is not an ioctl this backend sends (${[...known].join(', ')})`, { backend: 'pamu' });
  }
  const arch = parsed.data.arch ?? base.arch;
  return {
    name: parsed.data.name,
    description: parsed.data.description ?? `${base.description}, changed`,
    iommuType: parsed.data.iommuType ?? base.iommuType,
    arch,
    ioctls: { ...ioctlTable(arch), ...(parsed.data.ioctls as Partial<Record<PamuProfileIoctl, number>> | undefined) },
    maxWindows: parsed.data.maxWindows ?? base.maxWindows,
    msi: parsed.data.msi ?? base.msi,
  };
}

/** A one-line summary of a profile for errors and `ioas` output. */
export function describeProfile(profile: PamuProfile): string {
  return `${profile.name} (IOMMU type ${profile.iommuType}, ${profile.arch} ioctls such as SET_ATTR ${hex(BigInt(profile.ioctls.VFIO_IOMMU_PAMU_SET_ATTR))})`;
}
