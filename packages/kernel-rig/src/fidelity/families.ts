/**
 * The fidelity differential's families: each a generator of step sequences and how many sequences a
 * lane runs. Every lane runs every family; a family's sequences use the lane's kernel interface.
 */
import { containerSequence } from './container-family.js';
import { deviceSequence } from './device-family.js';
import { dirtySequence } from './dirty-family.js';
import { iommufdSequence } from './iommufd-family.js';
import type { Step, StepOutcome } from './steps.js';

/** A family of sequences. */
export interface Family {
  readonly name: string;
  /** Sequences a lane runs. */
  readonly sequences: number;
  /** The kernel interfaces it runs on (a lane of another interface skips it). */
  readonly interfaces: readonly ('type1' | 'iommufd')[];
  /** The steps of sequence `seed` on `lane` (the same seed and lane give the same steps on every machine). */
  generate(seed: number, lane: FidelityLane): Step[];
  /** The seeds of its golden transcript, when not {@link TRANSCRIPT_SEEDS}. */
  readonly transcriptSeeds?: readonly number[];
}

export const FAMILIES: readonly Family[] = [
  { name: 'device', sequences: 700, interfaces: ['type1', 'iommufd'], generate: (seed, lane) => deviceSequence(seed, lane.kernelInterface) },
  // On 6.12 a tenth of its sequences make a /dev/iommu fd the group's container (6.1 has no /dev/iommu).
  { name: 'container', sequences: 700, interfaces: ['type1'], generate: (seed, lane) => containerSequence(seed, lane.kernel) },
  // Its sequences read bitmaps back after most calls: four keep its transcripts to tens of KiB.
  { name: 'dirty', sequences: 600, interfaces: ['type1'], generate: (seed) => dirtySequence(seed), transcriptSeeds: [1, 2, 3, 4] },
  { name: 'iommufd', sequences: 1300, interfaces: ['iommufd'], generate: (seed) => iommufdSequence(seed) },
];

/**
 * Families whose generators run, but whose simulator side is still being corrected: a lane runs
 * them only when IOAS_FIDELITY_EXPLORE=1 (their reports show what disagrees), never in CI.
 */
export const EXPLORING: readonly Family[] = [];

/** A fidelity lane: a name for its reports and transcripts, and the kernel interface its sequences use. */
export interface FidelityLane {
  readonly name: FidelityLaneName;
  readonly kernelInterface: 'type1' | 'iommufd';
  /** The kernel the lane boots. */
  readonly kernel: '6.1' | '6.12';
}

/** The four lanes: 6.1 on x86 and arm64 through type1, and 6.12 through iommufd and through type1. */
export type FidelityLaneName = 'x86' | 'arm64' | 'iommufd' | 'type1-6.12';

/** The fidelity lanes each guest runs. */
export const FIDELITY_LANES: Readonly<Record<'x86' | 'arm64' | 'iommufd', readonly FidelityLane[]>> = {
  x86: [{ name: 'x86', kernelInterface: 'type1', kernel: '6.1' }],
  arm64: [{ name: 'arm64', kernelInterface: 'type1', kernel: '6.1' }],
  iommufd: [
    { name: 'iommufd', kernelInterface: 'iommufd', kernel: '6.12' },
    { name: 'type1-6.12', kernelInterface: 'type1', kernel: '6.12' },
  ],
};

/** The guest (and so the simulated machine) a fidelity lane runs in. */
export function guestOf(name: FidelityLaneName): 'x86' | 'arm64' | 'iommufd' {
  return name === 'type1-6.12' ? 'iommufd' : name;
}

/** The seeds whose sequences and kernel answers a lane writes into its golden transcript. */
export const TRANSCRIPT_SEEDS: readonly number[] = [1, 2, 3, 4, 5, 6, 7, 8];

/** The seeds of a family's golden transcript. */
export function transcriptSeeds(family: Family): readonly number[] {
  return family.transcriptSeeds ?? TRANSCRIPT_SEEDS;
}

/** A lane's golden transcript of one family: sequences with the kernel's outcome of every step. */
export interface Transcript {
  readonly lane: FidelityLaneName;
  readonly family: string;
  readonly sequences: { readonly seed: number; readonly steps: readonly Step[]; readonly outcomes: readonly StepOutcome[] }[];
}
