import { IoasError, type ContainerSnapshot } from '@ioas/core';
import fc from 'fast-check';
import { beforeAll, describe, expect, test } from 'vitest';
import { exampleSnapshot } from './__fixtures__/snapshots.js';
import * as view from './index.js';
import { renderIovaMap } from './render.js';

let snapshot: ContainerSnapshot;
beforeAll(async () => {
  snapshot = await exampleSnapshot('arm-smmuv3');
});

/** The error `run` throws, which must be an IoasError. */
function failure(run: () => unknown): IoasError {
  try {
    run();
  } catch (error) {
    if (IoasError.isInstance(error)) return error;
    throw new Error(`expected an IoasError, got ${String(error)}`, { cause: error });
  }
  throw new Error('expected an IoasError, nothing was thrown');
}

describe('malformed snapshots', () => {
  test('a missing field is invalid-argument naming it', () => {
    const { aperture: _aperture, ...rest } = snapshot;
    const error = failure(() => renderIovaMap(rest as ContainerSnapshot, { format: 'svg' }));
    expect(error.code).toBe('invalid-argument');
    expect(error.operation).toBe('renderIovaMap');
    expect(error.message).toMatch(/^renderIovaMap: parseSnapshot: not a container snapshot\n/);
    expect(error.message).toContain('at aperture');
  });

  test('a value that is not hex is invalid-argument naming the field, even where core lets a SyntaxError out', () => {
    const uppercase = failure(() => renderIovaMap({ ...snapshot, ioPageSizes: '0xABC' }, { format: 'text' }));
    expect(uppercase.code).toBe('invalid-argument');
    expect(uppercase.message).toContain('ioPageSizes');
    const mappings = snapshot.mappings.map((mapping, index) => (index === 1 ? { ...mapping, address: '0xZZ' } : mapping));
    const garbage = failure(() => renderIovaMap({ ...snapshot, mappings }, { format: 'text' }));
    expect(garbage.code).toBe('invalid-argument');
    // Core's parseSnapshot currently throws a SyntaxError for this one; the message names the field either way.
    expect(garbage.message).toMatch(/^renderIovaMap: parseSnapshot: not a container snapshot/);
    expect(garbage.message).toContain('mappings[1].address');
    const range = failure(() => renderIovaMap({ ...snapshot, usable: [{ start: 'zero', last: '0x1' }] }, { format: 'svg' }));
    expect(range.message).toContain('usable[0].start');
  });

  test('last below start is invalid-argument naming the range', () => {
    const error = failure(() => renderIovaMap({ ...snapshot, reserved: [{ ...snapshot.reserved[0]!, start: '0x80fffff', last: '0x8000000' }] }, { format: 'html' }));
    expect(error.code).toBe('invalid-argument');
    expect(error.message).toContain('last must not be below start');
    expect(error.message).toContain('reserved[0]');
  });

  test.each([
    ['a number', 42, 'not number'],
    ['null', null, 'not null'],
    ['a string', '{"version":1}', 'not string'],
    ['an array', [snapshot], 'not an array'],
    ['undefined', undefined, 'not undefined'],
  ])('%s is invalid-argument saying what a snapshot is', (_name, value, words) => {
    const error = failure(() => renderIovaMap(value as unknown as ContainerSnapshot, { format: 'svg' }));
    expect(error.code).toBe('invalid-argument');
    expect(error.message).toContain('renderIovaMap: the snapshot must be a ContainerSnapshot object');
    expect(error.message).toContain(words);
  });

  test('another snapshot version is unsupported', () => {
    const error = failure(() => renderIovaMap({ ...snapshot, version: 2 } as unknown as ContainerSnapshot, { format: 'svg' }));
    expect(error.code).toBe('unsupported');
    expect(error.message).toMatch(/^renderIovaMap: .*version 2/);
  });

  test('any corruption of a valid snapshot is an IoasError or a picture, never another exception', () => {
    const corruptions = fc.oneof(fc.string(), fc.integer(), fc.constant(null), fc.constant(undefined), fc.constant({}), fc.constant([]), fc.constant('0xZZ'), fc.constant('0x'), fc.constant('0x1ffffffffffffffff'), fc.boolean());
    fc.assert(
      fc.property(fc.nat(), fc.nat(), corruptions, fc.constantFrom('svg' as const, 'html' as const, 'text' as const), (pathSeed, leafSeed, value, format) => {
        const copy = structuredClone(snapshot) as unknown as Record<string, unknown>;
        // Walk down to a random object inside the snapshot and replace one of its fields.
        let target: Record<string, unknown> = copy;
        for (let depth = 0, seed = pathSeed; depth < 3; depth++, seed = Math.floor(seed / 7)) {
          const keys = Object.keys(target).filter((key) => typeof target[key] === 'object' && target[key] !== null);
          if (keys.length === 0 || seed % 3 === 0) break;
          target = target[keys[seed % keys.length]!] as Record<string, unknown>;
        }
        const keys = Object.keys(target);
        if (keys.length > 0) target[keys[leafSeed % keys.length]!] = value;
        try {
          expect(typeof renderIovaMap(copy as unknown as ContainerSnapshot, { format })).toBe('string');
        } catch (error) {
          expect(IoasError.isInstance(error)).toBe(true);
          expect((error as IoasError).message).toMatch(/^renderIovaMap: /);
        }
      }),
      { numRuns: 400 },
    );
  });
});

describe('bad options', () => {
  test('an unknown format lists the formats', () => {
    const error = failure(() => renderIovaMap(snapshot, { format: 'png' as never }));
    expect(error.code).toBe('invalid-argument');
    expect(error.message).toBe(`renderIovaMap: options.format must be one of 'svg', 'html', 'text'; "png" is not one`);
    expect(failure(() => renderIovaMap(snapshot, {} as never)).message).toContain("must be one of 'svg', 'html', 'text'; no format was given");
  });

  test('options that are not an object, unknown keys and bad values say what is allowed', () => {
    expect(failure(() => renderIovaMap(snapshot, 'svg' as never)).message).toBe("renderIovaMap: options must be an object such as { format: 'svg' }; the formats are 'svg', 'html', 'text'");
    expect(failure(() => renderIovaMap(snapshot, undefined as never)).code).toBe('invalid-argument');
    expect(failure(() => renderIovaMap(snapshot, { format: 'text', color: true } as never)).message).toBe(
      "renderIovaMap: unknown option 'color'; the options are 'format', 'maxRows', 'colour', 'idPrefix'",
    );
    expect(failure(() => renderIovaMap(snapshot, { format: 'text', colour: 'yes' } as never)).message).toBe('renderIovaMap: options.colour must be true or false, not "yes"');
    expect(failure(() => renderIovaMap(snapshot, { format: 'svg', maxRows: 10.5 })).message).toBe('renderIovaMap: options.maxRows must be an integer from 16 to 100000, not 10.5');
    expect(failure(() => renderIovaMap(snapshot, { format: 'svg', idPrefix: 'x" onload="alert(1)' })).message).toContain('options.idPrefix must be a letter');
    expect(failure(() => renderIovaMap(snapshot, { format: 'svg', idPrefix: '1abc' })).code).toBe('invalid-argument');
  });

  test('the snapshot is checked before the options', () => {
    expect(failure(() => renderIovaMap(null as never, { format: 'png' as never })).message).toContain('the snapshot must be');
  });
});

describe('the package', () => {
  test('exports the API and nothing internal', () => {
    expect(Object.keys(view).sort()).toEqual(['DEFAULT_MAX_ROWS', 'IOVA_MAP_FORMATS', 'REGION_KINDS', 'layoutIovaMap', 'renderIovaMap']);
    expect(view.IOVA_MAP_FORMATS).toEqual(['svg', 'html', 'text']);
    expect(view.DEFAULT_MAX_ROWS).toBe(400);
  });

  test('every kind has a distinct colour and a distinct character, and REGION_KINDS cannot be changed', () => {
    const styles = Object.values(view.REGION_KINDS);
    expect(new Set(styles.map((style) => style.colour)).size).toBe(styles.length);
    expect(new Set(styles.map((style) => style.char)).size).toBe(styles.length);
    expect(Object.isFrozen(view.REGION_KINDS)).toBe(true);
    expect(styles.every((style) => Object.isFrozen(style))).toBe(true);
  });
});
