/**
 * @ioas/trace: record every syscall a VFIO or iommufd program makes as a decoded JSON Lines trace
 * (the format is in {@link TRACE_FORMAT}'s module, trace-format.ts), read one back, and the ioctl
 * codec both sides share.
 *
 * @packageDocumentation
 */
export {
  compareIoctl,
  decodeIoctl,
  encodeIoctl,
  IOCTL_SPECS,
  ioctlName,
  ioctlSpec,
  type ComparedIoctl,
  type CompareOptions,
  type DecodeOptions,
  type DecodeOutOptions,
  type EncodedIoctl,
  type EncodeOptions,
  type IoctlArgumentKind,
  type IoctlDecoding,
  type IoctlDifference,
  type IoctlField,
  type IoctlFieldKind,
  type IoctlSpec,
  type IoctlTailKind,
  type PointerNames,
  type RecordedIoctl,
} from './ioctl-codec.js';
export { readTrace, readTraceFile, type ReadTrace, type ReadTraceOptions } from './read-trace.js';
export { recordSyscalls, type RecordingSyscalls, type RecordOptions, type TraceFileFormat } from './recorder.js';
export { isJournal, JOURNAL_FORMAT, renderJournal, renderJournalFile } from './journal.js';
export type { TraceWriterKind } from './trace-sink.js';
export {
  TRACE_FORMAT,
  TRACE_VERSION,
  type CloseCall,
  type EventfdCall,
  type ExistsCall,
  type IoctlCall,
  type MmapCall,
  type MunmapCall,
  type OpenCall,
  type PositionalIoCall,
  type ReadDirCall,
  type ReadFileCall,
  type ReadLinkCall,
  type StreamIoCall,
  type WriteFileCall,
  type TraceBuffer,
  type TraceCallBase,
  type TraceCall,
  type TraceCallName,
  type TraceField,
  type TraceHeader,
  type TraceIovaRange,
  type TracePointer,
} from './trace-format.js';
export {
  describeTraceValue,
  replayTrace,
  type NotReplayed,
  type ReplayableTrace,
  type ReplayDifference,
  type ReplayDivergence,
  type ReplayOptions,
  type ReplayReport,
} from './replay.js';
export { choosePlatform, kernelOfRelease, PLATFORM_NAMES, platformOfArch, type ChosenPlatform } from './replay-platform.js';
export { traceToScenario, type ToScenarioOptions } from './to-scenario.js';
