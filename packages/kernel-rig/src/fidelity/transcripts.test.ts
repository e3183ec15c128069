// The golden transcripts: each lane's kernel answers to a fixed corpus of every family's sequences
// (fixtures/transcripts/, written by the lanes and checked in by `node scripts/refresh-traces.mjs`),
// replayed step by step on the simulator's preset for the lane, on any machine: a fidelity
// regression fails `pnpm test` even where QEMU cannot run.
import { readdirSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { simMachine } from '../targets.js';
import { FAMILIES, FIDELITY_LANES, guestOf, transcriptSeeds, type Transcript } from './families.js';
import { describeStep, firstDifference, runSteps } from './steps.js';
import { decodeTranscript } from './transcript.js';

const directory = new URL('../../fixtures/transcripts/', import.meta.url);

function readTranscript(file: string): Transcript {
  return decodeTranscript(readFileSync(new URL(file, directory), 'utf8'), file);
}

describe('the golden transcripts', () => {
  const files = readdirSync(directory).filter((file) => file.endsWith('.json'));

  it('hold every family on every lane, each with the fixed corpus', () => {
    const expected = Object.values(FIDELITY_LANES)
      .flat()
      .flatMap((lane) => FAMILIES.filter((family) => family.interfaces.includes(lane.kernelInterface)).map((family) => `transcript-${lane.name}-${family.name}.json`))
      .sort();
    expect(files.sort()).toEqual(expected);
    for (const file of files) {
      const transcript = readTranscript(file);
      const family = FAMILIES.find((candidate) => candidate.name === transcript.family)!;
      expect(transcript.sequences.map((sequence) => sequence.seed), file).toEqual(transcriptSeeds(family));
    }
  });

  it('cover at least 2,000 sequences a lane across the proven families, so every lane proves as much', () => {
    for (const lane of Object.values(FIDELITY_LANES).flat()) {
      const total = FAMILIES.filter((family) => family.interfaces.includes(lane.kernelInterface)).reduce((sum, family) => sum + family.sequences, 0);
      expect(total, lane.name).toBeGreaterThanOrEqual(2000);
    }
  });

  for (const file of files) {
    it(`${file} replays on the simulator step by step`, () => {
      const transcript = readTranscript(file);
      const machine = simMachine(guestOf(transcript.lane));
      for (const sequence of transcript.sequences) {
        const outcomes = runSteps(machine.syscalls, machine.edu, sequence.steps);
        const difference = firstDifference(sequence.steps, sequence.outcomes, outcomes);
        expect(difference && `seed ${sequence.seed} step ${difference.index} ${describeStep(difference.step)}: kernel ${JSON.stringify(difference.a)}, simulator ${JSON.stringify(difference.b)}`).toBeUndefined();
      }
    });
  }
});
