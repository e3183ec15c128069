import { describe, expect, it } from 'vitest';
import { decodeTranscript, encodeTranscript } from './transcript.js';
import type { Transcript } from './families.js';

const good: Transcript = {
  lane: 'x86',
  family: 'container',
  sequences: [
    {
      seed: 1,
      steps: [
        { op: 'mmap', pages: 1, as: 'ram', align: 1 },
        { op: 'poke', mapping: 'ram', words: [-1n, 0x1_0000_0000n] },
        { op: 'open', path: '/dev/vfio/vfio', as: 'c' },
        { op: 'ioctl', fd: 'c', ioctl: 'VFIO_IOMMU_MAP_DMA', fields: { flags: 3, vaddr: { mapping: 'ram', offset: 0x10n }, iova: 0xffff_ffff_ffff_f000n, size: 0x1000n } },
      ],
      outcomes: [{ result: 'mapped' }, { result: 'written' }, { result: 'fd' }, { result: 'EINVAL', bytes: '00ab' }],
    },
  ],
};

describe('the transcript format', () => {
  it('keeps every value through a round trip, 64-bit and negative ones included', () => {
    expect(encodeTranscript(good)).toContain('"words":["-0x1","0x100000000"]');
    expect(decodeTranscript(encodeTranscript(good), 'here')).toEqual(good);
  });

  it('names the file and the place of any damage', () => {
    const text = (value: unknown) => encodeTranscript(value as Transcript);
    const sequence = good.sequences[0]!;
    const decode = (value: unknown) => () => decodeTranscript(typeof value === 'string' ? value : text(value), 'transcript-x86-container.json');
    expect(decode('{"lane":')).toThrow(/^transcript transcript-x86-container\.json: not JSON/);
    expect(decode({ ...good, lane: 'ppc' })).toThrow(/^transcript transcript-x86-container\.json: lane: /);
    expect(decode({ ...good, sequences: [{ ...sequence, steps: [{ op: 'fork' }] }] })).toThrow(/: sequences\.0\.steps\.0\.op: /);
    expect(decode({ ...good, sequences: [{ ...sequence, steps: [{ op: 'close', fd: 'c', extra: 1 }] }] })).toThrow(/: sequences\.0\.steps\.0: .*extra/);
    expect(decode({ ...good, sequences: [{ ...sequence, outcomes: sequence.outcomes.slice(1) }] })).toThrow(/: sequences\.0: a sequence has one outcome for each step/);
    expect(decode({ ...good, sequences: [{ ...sequence, outcomes: [{ result: 'EINVAL', bytes: 'xyz' }] }] })).toThrow(/: sequences\.0\.outcomes\.0\.bytes: hex bytes/);
  });
});
