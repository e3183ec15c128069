/**
 * The words of a row: a one-line label (what a whiteboard would write next to the box) and hover
 * text (everything the snapshot says about those addresses, with exact ranges and sources).
 */
import { formatRange, hex } from '@ioas/core';
import type { MapRange, MapRow, ReservedRegion, UnusableReason, WindowPart } from './layout.js';
import { preciseSize, readableSize } from './numbers.js';

/** The parts of a row its words are made from. */
export type DescribedRow = Pick<MapRow, 'start' | 'last' | 'size' | 'kind' | 'space' | 'window' | 'use'>;

/** What the words need to know about the whole map. */
export interface DescribeContext {
  /** Hardware windows in the aperture (0 on a paged IOMMU). */
  readonly windowCount: number;
  /** Bytes per hardware window. */
  readonly windowSize: bigint;
}

const REASONS: Readonly<Record<UnusableReason, string>> = {
  'outside-kernel-ranges': "outside the kernel's IOVA ranges",
  'outside-windows': 'outside every window',
  'not-usable': 'not in the usable ranges',
};

const MAPPED_BY: Readonly<Record<'sdk' | 'kernel' | 'hardware', string>> = {
  sdk: 'mapped by this container',
  kernel: 'mapped by the kernel',
  hardware: 'fixed in hardware, never translated',
};

/** The label and hover text of a row. */
export function describeRow(row: DescribedRow, context: DescribeContext): { label: string; hover: string } {
  return { label: labelOf(row), hover: hoverOf(row, context) };
}

function windows(part: WindowPart): string {
  return part.first === part.last ? `window ${part.first}` : `windows ${part.first}–${part.last}`;
}

function reservedWords(region: ReservedRegion): string {
  return `reserved ${region.kind}`;
}

function sourceWords(region: ReservedRegion): string {
  return region.origin === undefined ? region.source : `${region.source}: ${region.origin}`;
}

function labelOf(row: DescribedRow): string {
  const size = readableSize(row.size);
  const { space, window, use } = row;
  // A hardware window's position leads: on PAMU the window is the unit people reason in.
  const prefix = window !== null && window.hardware && window.kind === 'window' ? `${windows(window)}: ` : '';
  // What is under a doorbell or a mapping goes last: a narrow terminal cuts labels from the end.
  const reservedSuffix = space.kind === 'reserved' ? `, in ${reservedWords(space.regions[0])} (${sourceWords(space.regions[0])})` : '';
  switch (row.kind) {
    case 'msi-doorbell': {
      const doorbell = use.doorbell!;
      if (space.kind === 'reserved') return `${prefix}MSI doorbell ${doorbell.index} (${doorbell.mappedBy}), ${reservedWords(space.regions[0])} ${size} (${sourceWords(space.regions[0])})`;
      return `${prefix}MSI doorbell ${doorbell.index} (${doorbell.mappedBy}) ${size}`;
    }
    case 'mapped': {
      const mapped = use.mapped!;
      if (mapped.mapping === undefined) return `${prefix}${mapped.count} mapping${mapped.count === 1 ? '' : 's'}, ${readableSize(mapped.bytes)} mapped in ${size}${reservedSuffix}`;
      const whole = mapped.mapping.range.last - mapped.mapping.range.start + 1n;
      const detail = whole === row.size ? `1 mapping, ${mapped.mapping.access}` : `${mapped.mapping.access}, 1 mapping of ${readableSize(whole)}`;
      return `${prefix}mapped ${size} (${detail})${reservedSuffix}`;
    }
    case 'allocated': {
      const allocated = use.allocated!;
      if (allocated.range === undefined) return `${prefix}${allocated.count} allocation${allocated.count === 1 ? '' : 's'}, ${readableSize(allocated.bytes)} allocated in ${size}${reservedSuffix}`;
      return `${prefix}allocated ${size} (not mapped)${reservedSuffix}`;
    }
    case 'window-disabled':
      return `${windows(window!)} disabled ${size}`;
    case 'unusable':
      return `${prefix}unusable ${size} (${REASONS[space.kind === 'unusable' ? space.reason : 'not-usable']})`;
    case 'free':
      return `${prefix}free ${size}`;
    default: {
      // The reserved kinds: the row is reserved and nothing uses it.
      if (space.kind !== 'reserved') throw new Error(`describeRow: a ${row.kind} row without a reserved range`);
      const region = space.regions[0];
      return `${prefix}${reservedWords(region)} ${size} (${sourceWords(region)})`;
    }
  }
}

function range(value: MapRange): string {
  return formatRange(value);
}

function hoverOf(row: DescribedRow, context: DescribeContext): string {
  const lines = [`${range(row)} (${preciseSize(row.size)})`];
  const { space, window, use } = row;
  if (space.kind === 'usable') lines.push('usable');
  else if (space.kind === 'unusable') lines.push(`unusable: ${REASONS[space.reason]}`);
  else for (const region of space.regions) lines.push(`${reservedWords(region)} ${range(region)}, from ${sourceWords(region)}`);
  if (window !== null) {
    if (!window.hardware) lines.push(`in window ${range(window.range)} (created with createWindow)`);
    else {
      const of = `of ${context.windowCount} (${readableSize(context.windowSize)} each)`;
      lines.push(
        window.kind === 'window'
          ? `${windows(window)} ${of}, ${range(window.range)}: enabled`
          : `${windows(window)} ${of}, ${range(window.range)}: disabled (the IOMMU enables a window when something is mapped into it)`,
      );
    }
  }
  if (use.doorbell !== undefined) lines.push(`MSI doorbell ${use.doorbell.index} at ${range(use.doorbell.range)}, ${MAPPED_BY[use.doorbell.mappedBy]}`);
  if (use.mapped !== undefined) {
    const { mapped } = use;
    if (mapped.mapping === undefined) lines.push(`mapped: ${mapped.count} mappings, ${preciseSize(mapped.bytes)} of this range (drawn as one cluster: more mappings than the row budget)`);
    else {
      const { mapping } = mapped;
      const whole = mapping.range.start === row.start && mapping.range.last === row.last ? `mapping ${range(mapping.range)}` : `part of mapping ${range(mapping.range)}`;
      if (mapping.address === undefined) lines.push(`mapped ${mapping.access}, no host memory yet (${whole}, planned)`);
      else {
        const from = mapping.address + (row.start - mapping.range.start);
        lines.push(`mapped ${mapping.access} from host ${hex(from)}-${hex(from + row.size - 1n)} (${whole} at host ${hex(mapping.address)})`);
      }
    }
  }
  if (use.allocated !== undefined) {
    const { allocated } = use;
    lines.push(
      allocated.range === undefined
        ? `allocated: ${allocated.count} allocations, ${preciseSize(allocated.bytes)} of this range (drawn as one cluster)`
        : `allocated ${range(allocated.range)} with allocate()${use.mapped === undefined ? ', not mapped' : ''}`,
    );
  }
  if (use.kind === 'free' && space.kind === 'usable') lines.push('free');
  return lines.join('\n');
}
