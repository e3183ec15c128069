/**
 * The fidelity differential's families: each a generator of step sequences and how many sequences a
 * lane runs. Every lane runs every family; a family's sequences use the lane's kernel interface.
 */
import { deviceSequence } from './device-family.js';
import type { Step, StepOutcome } from './steps.js';

/** A family of sequences. */
export interface Family {
  readonly name: string;
  /** Sequences a lane runs. */
  readonly sequences: number;
  /** The steps of sequence `seed` (the same seed gives the same steps on every machine). */
  generate(seed: number, kernelInterface: 'type1' | 'iommufd'): Step[];
}

export const FAMILIES: readonly Family[] = [{ name: 'device', sequences: 300, generate: deviceSequence }];

/** The seeds whose sequences and kernel answers a lane writes into its golden transcript. */
export const TRANSCRIPT_SEEDS: readonly number[] = [1, 2, 3, 4, 5, 6, 7, 8];

/** A lane's golden transcript of one family: sequences with the kernel's outcome of every step. */
export interface Transcript {
  readonly lane: 'x86' | 'arm64' | 'iommufd';
  readonly family: string;
  readonly sequences: { readonly seed: number; readonly steps: readonly Step[]; readonly outcomes: readonly StepOutcome[] }[];
}
