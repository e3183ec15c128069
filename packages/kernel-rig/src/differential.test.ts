// Differential fidelity: the same random operation sequences, seed for seed, on the real kernel and
// on the simulator's matching preset, through the same backend (backend-smmu's handle, below core's
// own checks, so that the kernels' answers are compared). Every result and errno must agree; a
// disagreement prints the seed and the shrunk sequence. Runs inside the QEMU guest.
import { writeFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { DirtySide, dirtySequence, edgesOf, HotPlugSide, hotPlugSequence, sequence, Side, type DirtyOperation, type DirtyTarget, type HotPlugOperation, type Operation } from './differential.js';
import { interfaceOf, lane, realMachine, simMachine } from './targets.js';

const SEQUENCES = Number(process.env.IOAS_DIFFERENTIAL_SEQUENCES ?? 1000);
/** The attach/detach family: fewer sequences, each opens two groups or binds two cdevs. */
const HOT_PLUG_SEQUENCES = Number(process.env.IOAS_DIFFERENTIAL_HOT_PLUG_SEQUENCES ?? 200);
/** The dirty family: raw dirty-tracking ioctls, every written byte compared. */
const DIRTY_SEQUENCES = Number(process.env.IOAS_DIFFERENTIAL_DIRTY_SEQUENCES ?? 300);

const hex = (value: bigint | number) => `0x${value.toString(16)}`;

function describeTarget(target: DirtyTarget): string {
  return target.kind === 'hwpt' ? `hwpt #${target.index}` : target.kind === 'id' ? `id ${target.id}` : target.kind;
}

function describeDirty(operation: DirtyOperation): string {
  switch (operation.kind) {
    case 'map':
      return `map ${hex(operation.iova)}+${operation.pages}p ${operation.write ? 'rw' : 'r'}`;
    case 'unmap':
      return `unmap ${hex(operation.iova)}+${operation.pages}p`;
    case 'dirty-pages':
      return `DIRTY_PAGES flags ${operation.flags} argsz ${operation.argsz}`;
    case 'get-bitmap':
    case 'unmap-bitmap':
      return `${operation.kind === 'get-bitmap' ? 'DIRTY_PAGES GET_BITMAP' : 'UNMAP_DMA GET_DIRTY_BITMAP'} flags ${operation.flags} argsz ${operation.argsz} iova ${hex(operation.iova)} size ${hex(operation.size)} pgsize ${hex(operation.pgsize)} bitmap ${operation.bitmap.bytes} bytes of ${hex(operation.bitmap.fill)}`;
    case 'info':
      return 'GET_INFO';
    case 'hw-info':
      return `GET_HW_INFO size ${operation.size}${operation.tail ? ' (non-zero tail)' : ''} flags ${operation.flags} reserved ${operation.reserved} dev ${describeTarget(operation.device)} data_len ${operation.dataLen}`;
    case 'hwpt-alloc':
      return `HWPT_ALLOC size ${operation.size}${operation.tail ? ' (non-zero tail)' : ''} flags ${operation.flags} reserved ${operation.reserved} dev ${describeTarget(operation.device)} pt ${describeTarget(operation.pt)} data_type ${operation.dataType} data_len ${operation.dataLen}`;
    case 'attach':
      return `ATTACH_IOMMUFD_PT ${describeTarget(operation.pt)}`;
    case 'set-dirty':
      return `SET_DIRTY_TRACKING size ${operation.size} flags ${operation.flags} reserved ${operation.reserved} hwpt ${describeTarget(operation.hwpt)}`;
    case 'hwpt-bitmap':
      return `GET_DIRTY_BITMAP size ${operation.size} flags ${operation.flags} reserved ${operation.reserved} hwpt ${describeTarget(operation.hwpt)} iova ${hex(operation.iova)} length ${hex(operation.length)} page_size ${hex(operation.pageSize)} bitmap of ${hex(operation.bitmap.fill)}`;
    case 'destroy':
      return `DESTROY ${describeTarget(operation.target)}`;
  }
}

/**
 * The steps whose successes the dirty family counts against their refusals. On the iommufd lane,
 * whose IOMMU cannot track, SET_DIRTY_TRACKING and GET_DIRTY_BITMAP never succeed: the share is of
 * the steps that can.
 */
const DIRTY_TYPE1_STEPS = new Set(['dirty-pages', 'get-bitmap', 'unmap-bitmap']);
const DIRTY_IOMMUFD_STEPS = new Set(['hw-info', 'hwpt-alloc', 'attach', 'destroy']);

function describeOperation(operation: Operation | HotPlugOperation): string {
  if (operation.kind === 'set-iommu') return 'set-iommu';
  if (operation.kind === 'attach' || operation.kind === 'detach' || operation.kind === 'open-device' || operation.kind === 'close-device') return `${operation.kind} edu ${operation.member + 1}`;
  if (operation.kind === 'allow') return `allow [${operation.ranges.map((range) => `0x${range.start.toString(16)}-0x${range.last.toString(16)}`).join(', ')}]`;
  const where = `0x${operation.iova.toString(16)}+${operation.pages}p`;
  return operation.kind === 'map' ? `map ${where} vaddr page ${operation.vaddrPage} ${operation.read ? 'r' : ''}${operation.write ? 'w' : ''}` : `unmap ${where}`;
}

if (lane === undefined) {
  describe('differential fidelity', () => {
    it.skip('runs only inside the QEMU guest: run `pnpm test:kernel` to boot it', () => undefined);
  });
} else {
  const currentLane = lane;
  describe(`differential fidelity, lane ${lane}: real kernel against the simulator`, () => {
    it(`agrees on every result and errno over ${SEQUENCES} random sequences`, async () => {
      const real = new Side(realMachine());
      const simulated = new Side(simMachine(currentLane));
      const { msi, msiEnd, top } = edgesOf(currentLane);
      let operations = 0;
      /** How often each answer came up: the sequences must reach every rule, not only 'ok'. */
      const answers: Record<string, number> = {};
      for (let seed = 1; seed <= SEQUENCES; seed++) {
        const ops = sequence(seed, msi, msiEnd, top, interfaceOf(currentLane) === 'iommufd');
        operations += ops.length;
        const [expected, actual] = [await real.run(ops), await simulated.run(ops)];
        for (const answer of expected) {
          const key = answer.startsWith('ok ') ? (answer === 'ok 0' ? 'unmap 0 bytes' : 'unmap some') : answer;
          answers[key] = (answers[key] ?? 0) + 1;
        }
        if (JSON.stringify(expected) === JSON.stringify(actual)) continue;
        // Shrink: drop operations one at a time while the two still disagree.
        let shrunk = ops;
        for (let index = shrunk.length - 1; index >= 0; index--) {
          const candidate = shrunk.filter((_, position) => position !== index);
          if (JSON.stringify(await real.run(candidate)) !== JSON.stringify(await simulated.run(candidate))) shrunk = candidate;
        }
        const realResults = await real.run(shrunk);
        const simResults = await simulated.run(shrunk);
        const report = shrunk.map((operation, index) => `  ${describeOperation(operation)}: kernel ${realResults[index]}, simulator ${simResults[index]}`).join('\n');
        expect.fail(`seed ${seed} disagrees; shrunk sequence:\n${report}`);
      }
      const summary = { lane, sequences: SEQUENCES, operations, answers };
      writeFileSync(`/tmp/results/differential-${lane}.json`, JSON.stringify(summary));
      console.log(`differential ${lane}: ${SEQUENCES} sequences, ${operations} operations, all agree; answers ${JSON.stringify(answers)}`);
      // Every rule the generator aims at must have been hit (else the agreement proves little).
      // type1 has a mapping budget (ENOSPC); iommufd has none but refuses unmaps of nothing (ENOENT).
      // iommufd also answers allow-lists: accepted, or EADDRINUSE over a reserved region.
      const rules = interfaceOf(currentLane) === 'type1' ? ['ok', 'unmap some', 'EEXIST', 'EINVAL', 'ENOSPC'] : ['ok', 'EEXIST', 'EINVAL', 'ENOENT', 'allowed', 'EADDRINUSE'];
      for (const expected of rules) expect(answers[expected] ?? 0, expected).toBeGreaterThan(0);
    });

    it(`agrees on every result, errno and usable range over ${HOT_PLUG_SEQUENCES} attach/detach sequences`, async () => {
      const kernelInterface = interfaceOf(currentLane);
      const real = new HotPlugSide(realMachine(), kernelInterface);
      const simulated = new HotPlugSide(simMachine(currentLane), kernelInterface);
      const { msi, msiEnd, top } = edgesOf(currentLane);
      let operations = 0;
      /** How often each step gave each answer (the part before `|`): the sequences must reach every rule. */
      const answers: Record<string, number> = {};
      /**
       * Each distinct disagreement, by the first step whose answers differ (its kind and both answers,
       * usable ranges aside): the first seed's sequence shrunk, and every seed that showed it.
       */
      const disagreements = new Map<string, { report: string; seeds: number[] }>();
      try {
        for (let seed = 1; seed <= HOT_PLUG_SEQUENCES; seed++) {
          const ops = hotPlugSequence(seed, msi, msiEnd, top, kernelInterface);
          operations += ops.length;
          const [expected, actual] = [await real.run(ops), await simulated.run(ops)];
          expected.forEach((answer, index) => {
            const step = ops[index]!.kind;
            const key = `${step} ${answer.split(' | ')[0]!.replace(/^ok [0-9]+$/, answer === 'ok 0' ? 'ok 0 bytes' : 'ok some')}`;
            answers[key] = (answers[key] ?? 0) + 1;
          });
          if (JSON.stringify(expected) === JSON.stringify(actual)) continue;
          // Every seed runs: each distinct disagreement is shrunk once and reported with its seeds.
          const first = expected.findIndex((answer, index) => answer !== actual[index]);
          const signature = `${ops[first]!.kind}: kernel ${expected[first]!.split(' | ')[0]}, simulator ${actual[first]!.split(' | ')[0]}`;
          const known = disagreements.get(signature);
          if (known !== undefined) {
            known.seeds.push(seed);
            continue;
          }
          // Drop steps one at a time while the two still disagree, pass after pass until none can go.
          let shrunk = ops;
          for (let before = Infinity; shrunk.length < before; ) {
            before = shrunk.length;
            for (let index = shrunk.length - 1; index >= 0; index--) {
              const candidate = shrunk.filter((_, position) => position !== index);
              if (JSON.stringify(await real.run(candidate)) !== JSON.stringify(await simulated.run(candidate))) shrunk = candidate;
            }
          }
          const realResults = await real.run(shrunk);
          const simResults = await simulated.run(shrunk);
          const report = shrunk.map((operation, index) => `  ${describeOperation(operation)}: kernel ${realResults[index]}, simulator ${simResults[index]}`).join('\n');
          disagreements.set(signature, { report, seeds: [seed] });
        }
      } finally {
        real.release();
        simulated.release();
      }
      if (disagreements.size > 0) {
        const reports = [...disagreements].map(([signature, { report, seeds }]) => `${signature} (seeds ${seeds.join(', ')}); seed ${seeds[0]} shrunk:\n${report}`);
        expect.fail(`${disagreements.size} distinct attach/detach disagreement${disagreements.size === 1 ? '' : 's'}:\n${reports.join('\n')}`);
      }
      writeFileSync(`/tmp/results/differential-hot-plug-${lane}.json`, JSON.stringify({ lane, sequences: HOT_PLUG_SEQUENCES, operations, answers }));
      console.log(`differential ${lane}, attach/detach: ${HOT_PLUG_SEQUENCES} sequences, ${operations} operations, all agree; answers ${JSON.stringify(answers)}`);
      // The rules the family aims at. type1: a group joins a live container and leaves it; a group
      // already in it, or not in it, is EINVAL; leaving while a device fd is open is EBUSY; the last
      // group out takes the IOMMU with it, so maps are EINVAL until SET_IOMMU. iommufd: a device
      // attaches and detaches; an attach over a mapping in its reserved region is EADDRINUSE.
      const rules =
        kernelInterface === 'type1'
          ? ['attach ok', 'attach EINVAL', 'detach ok', 'detach EINVAL', 'detach EBUSY', 'open-device ok', 'map ok', 'map EINVAL']
          : ['attach bound, ok', 'attach ok, ok', 'detach ok', 'close-device ok', 'map ok', 'unmap ok some'];
      for (const expected of rules) expect(answers[expected] ?? 0, expected).toBeGreaterThan(0);
      if (kernelInterface === 'iommufd') expect(Object.keys(answers).some((key) => key.startsWith('attach') && key.endsWith('EADDRINUSE')), 'attach EADDRINUSE').toBe(true);
    });

    it(`agrees on every result, errno and written byte over ${DIRTY_SEQUENCES} dirty-tracking sequences`, async () => {
      const kernelInterface = interfaceOf(currentLane);
      const real = new DirtySide(realMachine(), kernelInterface);
      const simulated = new DirtySide(simMachine(currentLane), kernelInterface);
      let operations = 0;
      /** How often each step gave each answer (its first word): the sequences must reach every rule. */
      const answers: Record<string, number> = {};
      const disagreements = new Map<string, { report: string; seeds: number[] }>();
      const head = (answer: string) => answer.split(' | ')[0]!.split(' ')[0]!;
      /** The first step whose answers differ, and the disagreement's signature: the step's kind, both answers' first words, and which bytes differ when those agree. */
      const firstDisagreement = (ops: readonly DirtyOperation[], kernel: readonly string[], sim: readonly string[]): { first: number; signature: string } | undefined => {
        const first = kernel.findIndex((answer, index) => answer !== sim[index]);
        if (first < 0) return undefined;
        const [kernelHead, simHead] = [head(kernel[first]!), head(sim[first] ?? 'missing')];
        const part = kernelHead !== simHead ? '' : kernel[first]!.split(' | ')[1] !== sim[first]!.split(' | ')[1] ? ' (struct bytes differ)' : ' (buffer bytes differ)';
        return { first, signature: `${ops[first]!.kind}: kernel ${kernelHead}, simulator ${simHead}${part}` };
      };
      try {
        for (let seed = 1; seed <= DIRTY_SEQUENCES; seed++) {
          const ops = dirtySequence(seed, kernelInterface);
          operations += ops.length;
          const [expected, actual] = [await real.run(ops), await simulated.run(ops)];
          expected.forEach((answer, index) => {
            const key = `${ops[index]!.kind} ${head(answer)}`;
            answers[key] = (answers[key] ?? 0) + 1;
          });
          // A disagreement already known hides the rest of its sequence: drop the step that showed it
          // and compare again (a few times), so that every distinct disagreement is found.
          let [kernelAnswers, simAnswers, remaining] = [expected, actual, ops];
          let fresh: { signature: string; ops: DirtyOperation[] } | undefined;
          for (let attempt = 0; attempt < 6 && fresh === undefined && JSON.stringify(kernelAnswers) !== JSON.stringify(simAnswers); attempt++) {
            const { first, signature } = firstDisagreement(remaining, kernelAnswers, simAnswers)!;
            const known = disagreements.get(signature);
            if (known === undefined) {
              fresh = { signature, ops: remaining };
              break;
            }
            if (!known.seeds.includes(seed)) known.seeds.push(seed);
            remaining = remaining.filter((_, position) => position !== first);
            [kernelAnswers, simAnswers] = [await real.run(remaining), await simulated.run(remaining)];
          }
          if (fresh === undefined) continue;
          const signature = fresh.signature;
          let shrunk = fresh.ops;
          for (let before = Infinity; shrunk.length < before; ) {
            before = shrunk.length;
            for (let index = shrunk.length - 1; index >= 0; index--) {
              const candidate = shrunk.filter((_, position) => position !== index);
              if (firstDisagreement(candidate, await real.run(candidate), await simulated.run(candidate))?.signature === signature) shrunk = candidate;
            }
          }
          const realResults = await real.run(shrunk);
          const simResults = await simulated.run(shrunk);
          const report = shrunk.map((operation, index) => `  ${describeDirty(operation)}:\n    kernel    ${realResults[index]}\n    simulator ${simResults[index]}`).join('\n');
          disagreements.set(signature, { report, seeds: [seed] });
        }
      } finally {
        real.release();
        simulated.release();
      }
      let succeeded = 0;
      let refused = 0;
      for (const [key, count] of Object.entries(answers)) {
        const [step, answer] = key.split(' ');
        if (!(kernelInterface === 'type1' ? DIRTY_TYPE1_STEPS : DIRTY_IOMMUFD_STEPS).has(step!)) continue;
        if (answer === 'ok') succeeded += count;
        else refused += count;
      }
      const summary = { lane, sequences: DIRTY_SEQUENCES, operations, succeeded, refused, answers, disagreements: [...disagreements].map(([signature, { report, seeds }]) => ({ signature, seeds, report })) };
      writeFileSync(`/tmp/results/differential-dirty-${lane}.json`, JSON.stringify(summary, null, 2));
      console.log(`differential ${lane}, dirty: ${DIRTY_SEQUENCES} sequences, ${operations} operations, ${disagreements.size} distinct disagreements; dirty steps ${succeeded} ok / ${refused} refused; answers ${JSON.stringify(answers)}`);
      if (disagreements.size > 0) {
        const reports = [...disagreements].map(([signature, { report, seeds }]) => `${signature} (seeds ${seeds.join(', ')}); seed ${seeds[0]} shrunk:\n${report}`);
        expect.fail(`${disagreements.size} distinct dirty-tracking disagreement${disagreements.size === 1 ? '' : 's'}:\n${reports.join('\n')}`);
      }
      // The rules the family aims at. type1 (6.1): START, STOP, GET_BITMAP and UNMAP with the bitmap
      // succeed and refuse (EINVAL: wrong page size, unaligned, bisecting, bitmap too small, before
      // START, flag combinations). iommufd (6.12 on QEMU's VT-d, which has no dirty tracking): the
      // capability reads 0, a dirty HWPT is EOPNOTSUPP, a plain one is allocated, attached and destroyed;
      // SET_DIRTY_TRACKING and GET_DIRTY_BITMAP refuse in the kernel's order (ENOENT, EINVAL, EOPNOTSUPP).
      const rules =
        kernelInterface === 'type1'
          ? ['dirty-pages ok', 'dirty-pages EINVAL', 'get-bitmap ok', 'get-bitmap EINVAL', 'unmap-bitmap ok', 'unmap-bitmap EINVAL', 'info ok', 'map ok']
          : ['hw-info ok', 'hw-info EOPNOTSUPP', 'hwpt-alloc ok', 'hwpt-alloc EOPNOTSUPP', 'attach ok', 'set-dirty EOPNOTSUPP', 'set-dirty ENOENT', 'hwpt-bitmap EINVAL', 'hwpt-bitmap EOPNOTSUPP', 'hwpt-bitmap ENOENT', 'destroy ok', 'map ok'];
      for (const expected of rules) expect(answers[expected] ?? 0, expected).toBeGreaterThan(0);
      // Success about as often as refusal, over the steps that can succeed here.
      expect(succeeded / (succeeded + refused), 'share of dirty steps the kernel accepted').toBeGreaterThan(0.3);
      expect(succeeded / (succeeded + refused), 'share of dirty steps the kernel accepted').toBeLessThan(0.7);
    });
  });
}
