// Malformed invocations of the built `ioas` binary, one table row each: usage errors exit 2,
// operational failures exit 1, stderr says what is wrong in a line or two, never with a stack trace
// (unless IOAS_DEBUG=1, which must print one), and nothing hangs (each row runs under a timeout).
// Rows run as child processes, a few at a time, so that a hang or a crash is seen as the user sees it.
import { spawn } from 'node:child_process';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Syscalls } from '@ioas/core';
import { HEALTHY_HOST, writeHostTree, type HostFacts, type SysfsCapture } from '@ioas/vfio/testing';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { main } from './cli.js';
import type { Io } from './output.js';

const bin = fileURLToPath(new URL('../dist/bin.js', import.meta.url));
const capture = JSON.parse(readFileSync(new URL('../../kernel-rig/fixtures/sysfs-x86.json', import.meta.url), 'utf8')) as SysfsCapture;
const healthy: HostFacts = HEALTHY_HOST;

const scratch = mkdtempSync(join(tmpdir(), 'ioas-hostile-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

/** A VT-d guest's tree (groups 0-7; group 3 holds 0000:00:03.0 on vfio-pci), changed by `change`. */
function host(name: string, change: (at: (path: string) => string) => void = () => undefined): string {
  const root = join(scratch, name);
  writeHostTree(root, capture, healthy);
  change((path) => join(root, path));
  return root;
}

/** A scenario file holding `content`. */
function scenario(name: string, content: string | Buffer): string {
  const path = join(scratch, name);
  writeFileSync(path, content);
  return path;
}

const groupDir = (group: number) => `/sys/kernel/iommu_groups/${group}`;
const device = (address: string) => `/sys/bus/pci/devices/${address}`;

/** Roots and files, made once. */
const fixtures = {
  vtd: host('vtd'),
  // The issue's sysfs oddities, each one in an otherwise healthy tree.
  reservedDir: host('reserved-dir', (at) => {
    unlinkSync(at(`${groupDir(3)}/reserved_regions`));
    mkdirSync(at(`${groupDir(3)}/reserved_regions`));
  }),
  noVendor: host('no-vendor', (at) => unlinkSync(at(`${device('0000:00:03.0')}/vendor`))),
  badVendor: host('bad-vendor', (at) => writeFileSync(at(`${device('0000:00:03.0')}/vendor`), 'garbage\n')),
  inverted: host('inverted', (at) => writeFileSync(at(`${groupDir(3)}/reserved_regions`), '0x00000000feefffff 0x00000000fee00000 msi\n')),
  unreadableGroup: host('unreadable-group', (at) => {
    rmSync(at(`${groupDir(5)}/devices`), { recursive: true });
    writeFileSync(at(`${groupDir(5)}/devices`), 'not a directory\n');
  }),
  zeroLink: host('zero-link', (at) => {
    unlinkSync(at(`${groupDir(3)}/reserved_regions`));
    symlinkSync('/dev/zero', at(`${groupDir(3)}/reserved_regions`));
  }),
  fifo: host('fifo', (at) => {
    unlinkSync(at(`${groupDir(3)}/reserved_regions`));
    execFileSync('mkfifo', [at(`${groupDir(3)}/reserved_regions`)]);
  }),
  badLine: host('bad-line', (at) => writeFileSync(at(`${groupDir(3)}/reserved_regions`), 'fee00000-feefffff msi\n')),
  groupsFile: host('groups-file', (at) => {
    rmSync(at('/sys/kernel/iommu_groups'), { recursive: true });
    writeFileSync(at('/sys/kernel/iommu_groups'), '');
  }),
  oddGroupNames: host('odd-group-names', (at) => {
    mkdirSync(at(`/sys/kernel/iommu_groups/99999999999999999999/devices`), { recursive: true });
    mkdirSync(at(`/sys/kernel/iommu_groups/abc/devices`), { recursive: true });
  }),
  badGroupLink: host('bad-group-link', (at) => {
    unlinkSync(at(`${device('0000:00:03.0')}/iommu_group`));
    symlinkSync('../../../../kernel/iommu_groups/abc', at(`${device('0000:00:03.0')}/iommu_group`));
  }),
  // The driver links' targets are absent, as in a captured tree or a container's partial /sys.
  danglingDrivers: host('dangling-drivers', (at) => rmSync(at('/sys/bus/pci/drivers'), { recursive: true })),
  badLimits: host('bad-limits', (at) => writeFileSync(at('/proc/self/limits'), 'Limit  Soft Limit  Hard Limit  Units\nMax locked memory         abc                  abc                  bytes\n')),
  badHugepages: host('bad-hugepages', (at) => {
    writeFileSync(at('/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages'), 'lots\n');
    writeFileSync(at('/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages'), '-3\n');
  }),
  hugepagesFile: host('hugepages-file', (at) => {
    rmSync(at('/sys/kernel/mm/hugepages'), { recursive: true });
    writeFileSync(at('/sys/kernel/mm/hugepages'), '');
  }),
  directory: mkdtempSync(join(scratch, 'directory-')),
  missing: join(scratch, 'missing.yaml'),
  fifoScenario: (() => {
    const path = join(scratch, 'fifo.yaml');
    execFileSync('mkfifo', [path]);
    return path;
  })(),
  loop: (() => {
    const path = join(scratch, 'loop.yaml');
    symlinkSync(path, path);
    return path;
  })(),
  tooLarge: scenario('too-large.yaml', `# ${'x'.repeat(2 << 20)}\nplatform: p4080\nsteps: []\n`),
  syntax: scenario('syntax.yaml', 'steps:\n  - map: { iova: 0\n'),
  tabs: scenario('tabs.yaml', 'platform: p4080\nsteps:\n\t- map: {}\n'),
  bomb: scenario('bomb.yaml', ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]', ...'bcdefghij'.split('').map((name, index) => `${name}: &${name} [${Array(9).fill(`*${'abcdefghij'[index]}`).join(',')}]`)].join('\n')),
  deep: scenario('deep.yaml', `${'['.repeat(100_000)}${']'.repeat(100_000)}\n`),
  deepMap: scenario('deep-map.yaml', `${Array.from({ length: 1000 }, (_, index) => `${' '.repeat(index)}k:`).join('\n')} 1\n`),
  scalar: scenario('scalar.yaml', '42\n'),
  list: scenario('list.yaml', '- platform: p4080\n- steps: []\n'),
  empty: scenario('empty.yaml', ''),
  nullSteps: scenario('null-steps.yaml', 'platform: p4080\nsteps: null\n'),
  unknownPlatform: scenario('unknown-platform.yaml', 'platform: z80\nsteps: []\n'),
  hugeSize: scenario('huge-size.yaml', 'platform: arm-smmuv3\nsteps:\n  - map: { iova: 0, size: 0x1ffffffffffffffffffff }\n'),
  negativeSize: scenario('negative-size.yaml', 'platform: arm-smmuv3\nsteps:\n  - map: { iova: 0, size: -4096 }\n'),
  fractionalSize: scenario('fractional-size.yaml', 'platform: arm-smmuv3\nsteps:\n  - map: { iova: 0, size: 1.5 }\n'),
  binary: scenario('binary.yaml', Buffer.from([0x00, 0xff, 0xfe, 0x01, 0x80, 0x0a, 0x1b, 0x5b, 0x32, 0x4a])),
  proto: scenario('proto.yaml', 'platform: p4080\n__proto__: { polluted: true }\nsteps:\n  - __proto__: {}\n'),
};

interface Row {
  /** What the row tries. */
  readonly name: string;
  readonly argv: readonly string[];
  /** 2: bad usage; 1: an operational failure; 0: the oddity is read correctly. */
  readonly status: 0 | 1 | 2;
  /** What stderr must say (undefined: stderr must be empty). */
  readonly stderr?: RegExp;
  /** What stdout must say. */
  readonly stdout?: RegExp;
  /** Most non-empty stderr lines (default 3). */
  readonly lines?: number;
  /** IOAS_DEBUG=1: the stack must then be printed. */
  readonly debug?: boolean;
}

const usage = (name: string, argv: readonly string[], stderr: RegExp, lines?: number): Row => ({ name, argv, status: 2, stderr, ...(lines === undefined ? {} : { lines }) });
const invalid = (name: string, file: string, stderr: RegExp): Row => ({ name, argv: ['sim', file], status: 2, stderr, lines: 6 });

const rows: Row[] = [
  // Commands, options and arguments.
  usage('no command', [], /Usage: ioas/, 60),
  usage('unknown command', ['frobnicate'], /unknown command 'frobnicate'/),
  usage('unknown global option', ['--frobnicate'], /unknown option '--frobnicate'/),
  usage('unknown command option', ['groups', '--colour'], /unknown option '--colour'/),
  usage('missing argument', ['reserved'], /missing required argument 'group'/),
  usage('missing option value', ['groups', '--sysfs-root'], /option '--sysfs-root <dir>' argument missing/),
  usage('extra argument', ['reserved', '3', '4'], /too many arguments for 'reserved'/),
  usage('extra argument to a command that takes none', ['groups', 'extra'], /too many arguments for 'groups'/),
  usage('two scenario files', ['sim', 'a.yaml', 'b.yaml'], /too many arguments for 'sim'/),
  usage('missing required options', ['plan', '--memory', '256M'], /required option '--page <size>' not specified/),
  usage('unknown platform', ['sim', '--platform', 'z80'], /argument 'z80' is invalid/),
  // Group numbers: exact integers, 0 to 2^31-1.
  usage('non-numeric group', ['reserved', 'abc', '--sysfs-root', fixtures.vtd], /abc is not an IOMMU group number/),
  usage('negative group', ['reserved', '-1', '--sysfs-root', fixtures.vtd], /-1 is not an IOMMU group number/),
  usage('fractional group', ['ranges', '1.5', '--sysfs-root', fixtures.vtd], /1\.5 is not an IOMMU group number/),
  usage('hex group', ['reserved', '0x3', '--sysfs-root', fixtures.vtd], /0x3 is not an IOMMU group number/),
  usage('empty group', ['reserved', '', '--sysfs-root', fixtures.vtd], /^ioas: "" is not an IOMMU group number/),
  usage('group with a space', ['reserved', ' 3', '--sysfs-root', fixtures.vtd], /^ioas: " 3" is not an IOMMU group number/),
  usage('group past 2^53', ['reserved', '99999999999999999999', '--sysfs-root', fixtures.vtd], /^ioas: 99999999999999999999 is not an IOMMU group number: groups are numbered 0 to 2147483647$/m),
  usage('group past 2^31-1', ['ranges', '2147483648', '--sysfs-root', fixtures.vtd], /2147483648 is not an IOMMU group number/),
  // Sizes and counts.
  usage('aperture bits out of range', ['ranges', '3', '--aperture-bits', '80', '--sysfs-root', fixtures.vtd], /--aperture-bits must be between 12 and 64/),
  usage('huge count', ['ranges', '3', '--aperture-bits', '99999999999999999999', '--sysfs-root', fixtures.vtd], /99999999999999999999 is too large/),
  usage('fractional count', ['ranges', '3', '--aperture-bits', '39.5', '--sysfs-root', fixtures.vtd], /39\.5 is not a whole number/),
  usage('negative count', ['plan', '--memory', '256M', '--page', '64M', '--msi-banks', '-3'], /-3 is not a whole number/),
  usage('huge MSI bank count', ['plan', '--memory', '256M', '--page', '64M', '--msi-banks', '99999999999999999999'], /99999999999999999999 is too large/),
  usage('unit that is no unit', ['plan', '--memory', '256M', '--page', '64X', '--msi-banks', '3'], /64X is not a size/),
  usage('negative size', ['plan', '--memory', '-256M', '--page', '64M', '--msi-banks', '3'], /--memory -256M is not a size/),
  usage('fractional size', ['plan', '--memory', '1.5G', '--page', '64M', '--msi-banks', '3'], /1\.5G is not a size/),
  usage('size past 2^64', ['plan', '--memory', '99999999999999999999999G', '--page', '64M', '--msi-banks', '3'], /is not a size/),
  usage('IOVA past 2^64', ['plan', '--memory', '1G@16E', '--page', '1G', '--msi-banks', '3'], /is not a size/),
  usage('zero page size', ['plan', '--memory', '256M', '--page', '0', '--msi-banks', '3'], /^ioas: .*must be positive \(at memory\[0\]\.pageSize\)/),
  usage('no windows allowed', ['plan', '--memory', '256M', '--page', '64M', '--msi-banks', '3', '--max-windows', '0'], /^ioas: .*\(at limits\.maxWindows\)/),
  usage('negative memlock', ['doctor', '--memlock', '-1', '--sysfs-root', fixtures.vtd], /-1 is not a size/),
  usage('fractional memlock', ['doctor', '--memlock', '0.5G', '--sysfs-root', fixtures.vtd], /0\.5G is not a size/),
  usage('huge memlock', ['doctor', '--memlock', '99999999999999999999999', '--sysfs-root', fixtures.vtd], /is not a size/),
  // PCI addresses.
  usage('address without a domain', ['bind', '00:02.0', '--yes', '--sysfs-root', fixtures.vtd], /00:02\.0 is not a PCI address/),
  usage('address with function 8', ['doctor', '0000:00:02.8', '--sysfs-root', fixtures.vtd], /0000:00:02\.8 is not a PCI address/),
  usage('address that is a path', ['unbind', '../../../etc', '--yes', '--sysfs-root', fixtures.vtd], /is not a PCI address/),
  usage('address with trailing junk', ['doctor', '0000:00:03.0x', '--sysfs-root', fixtures.vtd], /is not a PCI address/),
  // Scenario files.
  usage('missing scenario file', ['sim', fixtures.missing], /cannot read .*missing\.yaml: .*ENOENT/),
  usage('scenario file that is a directory', ['sim', fixtures.directory], /directory-\w+ is a directory, not a file/),
  usage('scenario file /dev/zero', ['sim', '/dev/zero'], /\/dev\/zero is larger than 1 MiB: refusing to read it/),
  usage('scenario file that is a FIFO nobody writes', ['sim', fixtures.fifoScenario], /fifo\.yaml is not a valid scenario/, 6),
  usage('scenario file /dev/null', ['sim', '/dev/null'], /\/dev\/null is not a valid scenario/, 6),
  usage('scenario file that is a symbolic link loop', ['sim', fixtures.loop], /cannot read .*loop\.yaml: .*ELOOP/),
  usage('scenario file too large', ['sim', fixtures.tooLarge], /too-large\.yaml is larger than 1 MiB/),
  usage('snapshot /dev/zero', ['map', '--snapshot', '/dev/zero'], /\/dev\/zero is larger than 256 MiB: refusing to read it/),
  usage('snapshot /dev/null', ['map', '--snapshot', '/dev/null'], /\/dev\/null is not JSON/),
  usage('snapshot that is a FIFO nobody writes', ['map', '--snapshot', fixtures.fifoScenario], /fifo\.yaml is not JSON/),
  usage('snapshot that is a symbolic link loop', ['map', '--snapshot', fixtures.loop], /cannot read .*loop\.yaml: .*ELOOP/),
  usage('snapshot that is a directory', ['map', '--snapshot', fixtures.directory], /is a directory, not a file/),
  usage('map with no source', ['map', '--svg', 'x.svg'], /give one source/),
  invalid('invalid YAML', fixtures.syntax, /syntax\.yaml:\d+:\d+: /),
  invalid('tabs for indentation', fixtures.tabs, /tabs\.yaml:\d+:\d+: /),
  invalid('YAML alias bomb', fixtures.bomb, /bomb\.yaml:1:1: too many aliases/),
  invalid('YAML nested 100,000 deep', fixtures.deep, /deep\.yaml:\d+:\d+: nested too deeply/),
  invalid('YAML mappings nested 1,000 deep', fixtures.deepMap, /deep-map\.yaml:\d+:\d+: /),
  invalid('a number, not a scenario', fixtures.scalar, /scalar\.yaml:\d+:\d+: /),
  invalid('a list, not a scenario', fixtures.list, /list\.yaml:\d+:\d+: /),
  invalid('an empty file', fixtures.empty, /empty\.yaml:\d+:\d+: /),
  invalid('steps: null', fixtures.nullSteps, /null-steps\.yaml:\d+:\d+: steps/),
  invalid('unknown platform in the file', fixtures.unknownPlatform, /unknown-platform\.yaml:1:\d+: platform/),
  invalid('size past 2^64 in the file', fixtures.hugeSize, /huge-size\.yaml:3:\d+: steps\.0\.map\.size/),
  invalid('negative size in the file', fixtures.negativeSize, /negative-size\.yaml:3:\d+: steps\.0\.map\.size/),
  invalid('fractional size in the file', fixtures.fractionalSize, /fractional-size\.yaml:3:\d+: steps\.0\.map\.size/),
  invalid('binary garbage', fixtures.binary, /binary\.yaml:\d+:\d+: /),
  invalid('__proto__ keys', fixtures.proto, /proto\.yaml:\d+:\d+: /),
  // Sysfs oddities (issue 13): one bad group is reported, the others still listed.
  { name: 'reserved_regions is a directory: groups', argv: ['groups', '--sysfs-root', fixtures.reservedDir], status: 1, stderr: /^ioas: group 3: .*reserved_regions/m, stdout: /^7\s+yes\s+0000:00:1f\.0/m },
  { name: 'reserved_regions is a directory: reserved', argv: ['reserved', '3', '--sysfs-root', fixtures.reservedDir], status: 1, stderr: /^ioas: group 3: .*reserved_regions/ },
  { name: 'reserved_regions is a directory: doctor', argv: ['doctor', '0000:00:03.0', '--sysfs-root', fixtures.reservedDir], status: 1, stdout: /^FAIL\s+IOMMU group 3\s+.*reserved_regions/m },
  { name: 'device without a vendor file: groups', argv: ['groups', '--sysfs-root', fixtures.noVendor], status: 1, stderr: /^ioas: group 3: .*vendor/m, stdout: /^4\s+no\s+0000:00:04\.0\s+1af4:1009\s+virtio-pci/m },
  { name: 'device without a vendor file: doctor', argv: ['doctor', '0000:00:03.0', '--sysfs-root', fixtures.noVendor], status: 1, stdout: /^FAIL\s+device 0000:00:03\.0\s+.*vendor/m },
  { name: 'device without a vendor file: bind', argv: ['bind', '0000:00:03.0', '--yes', '--sysfs-root', fixtures.noVendor], status: 1, stderr: /^ioas: .*vendor/ },
  { name: 'vendor that is no number: groups', argv: ['groups', '--sysfs-root', fixtures.badVendor], status: 1, stderr: /^ioas: group 3: .*vendor/m, stdout: /^0\s+yes\s+0000:00:00\.0/m },
  { name: 'vendor that is no number: doctor', argv: ['doctor', '0000:00:03.0', '--sysfs-root', fixtures.badVendor], status: 1, stdout: /^FAIL\s+device 0000:00:03\.0\s+.*vendor/m },
  { name: 'inverted reserved range: reserved', argv: ['reserved', '3', '--sysfs-root', fixtures.inverted], status: 1, stderr: /^ioas: group 3: .*0xfeefffff.*0xfee00000.*(ends before it starts|inverted|start)/ },
  { name: 'inverted reserved range: ranges', argv: ['ranges', '3', '--sysfs-root', fixtures.inverted], status: 1, stderr: /^ioas: group 3: .*0xfeefffff.*0xfee00000/ },
  { name: 'inverted reserved range: groups', argv: ['groups', '--sysfs-root', fixtures.inverted], status: 1, stderr: /^ioas: group 3: /m, stdout: /^2\s+yes\s+0000:00:02\.0/m },
  { name: 'unreadable group: groups', argv: ['groups', '--sysfs-root', fixtures.unreadableGroup], status: 1, stderr: /^ioas: group 5: .*devices/m, stdout: /^5\s+\?\s+\(cannot be read[^]*^7\s+yes\s+0000:00:1f\.0/m },
  { name: 'unreadable group: groups --json', argv: ['groups', '--json', '--sysfs-root', fixtures.unreadableGroup], status: 1, stderr: /^ioas: group 5: /m, stdout: /"group": 5,\s+"error": ".*devices/ },
  { name: 'unreadable group: another group still reads', argv: ['reserved', '7', '--sysfs-root', fixtures.unreadableGroup], status: 0, stdout: /^0x0\s+0xffffff\s+16 MiB\s+direct-relaxable$/m },
  { name: 'reserved_regions is /dev/zero', argv: ['reserved', '3', '--sysfs-root', fixtures.zeroLink], status: 1, stderr: /^ioas: group 3: .*(larger than|reserved_regions)/ },
  { name: 'reserved_regions is a FIFO', argv: ['reserved', '3', '--sysfs-root', fixtures.fifo], status: 0, stdout: /group 3 has no reserved regions/ },
  { name: 'reserved_regions line the kernel never prints', argv: ['reserved', '3', '--sysfs-root', fixtures.badLine], status: 1, stderr: /^ioas: group 3: abi-mismatch: .*cannot parse reserved region line/ },
  { name: 'iommu_groups is a file', argv: ['groups', '--sysfs-root', fixtures.groupsFile], status: 1, stderr: /^ioas: .*iommu_groups/ },
  { name: 'group directories that are no group numbers', argv: ['groups', '--sysfs-root', fixtures.oddGroupNames], status: 0, stdout: /^7\s+yes\s+0000:00:1f\.0/m },
  { name: 'iommu_group link to a non-number', argv: ['doctor', '0000:00:03.0', '--sysfs-root', fixtures.badGroupLink], status: 1, stdout: /^FAIL\s+/m },
  { name: 'RLIMIT_MEMLOCK that is no number', argv: ['doctor', '--memlock', '1G', '--sysfs-root', fixtures.badLimits], status: 0, stdout: /^warn\s+RLIMIT_MEMLOCK\s+cannot parse "abc" in \/proc\/self\/limits$/m },
  { name: 'hugepage counts that are no numbers', argv: ['doctor', '--sysfs-root', fixtures.badHugepages], status: 0, stdout: /^warn\s+hugepages\s+none free \(2 MiB: 0 free of 0\)$/m },
  { name: 'hugepages directory that is a file', argv: ['doctor', '--sysfs-root', fixtures.hugepagesFile], status: 0, stdout: /^warn\s+hugepages\s+no hugepage pools/m },
  { name: 'sysfs root that is /dev/zero', argv: ['groups', '--sysfs-root', '/dev/zero'], status: 1, stderr: /^ioas: no IOMMU groups in \/dev\/zero/ },
  { name: 'sysfs root that does not exist', argv: ['reserved', '3', '--sysfs-root', join(scratch, 'nowhere')], status: 1, stderr: /no IOMMU group 3 .*there are none/ },
  { name: 'group that does not exist', argv: ['ranges', '2147483647', '--sysfs-root', fixtures.vtd], status: 1, stderr: /no IOMMU group 2147483647 .*groups: 0, 1, 2, 3, 4, 5, 6, 7/ },
  { name: 'device that does not exist', argv: ['unbind', '0000:00:09.0', '--yes', '--sysfs-root', fixtures.vtd], status: 1, stderr: /no PCI device 0000:00:09\.0/ },
  { name: 'bind not confirmed (stdin closed)', argv: ['bind', '0000:00:04.0', '--sysfs-root', fixtures.vtd], status: 1, stderr: /not confirmed: nothing changed/ },
  // Driver links whose targets are absent are read, not followed (the sysfs reader's fix, as the CLI shows it).
  { name: 'dangling driver links: doctor', argv: ['doctor', '0000:00:03.0', '--sysfs-root', fixtures.danglingDrivers], status: 0, stdout: /^ok\s+device 0000:00:03\.0\s+1234:11e8, bound to vfio-pci$/m },
  { name: 'dangling driver links: groups', argv: ['groups', '--sysfs-root', fixtures.danglingDrivers], status: 0, stdout: /^3\s+yes\s+0000:00:03\.0\s+1234:11e8\s+vfio-pci\s[^]*^4\s+no\s+0000:00:04\.0\s+1af4:1009\s+virtio-pci/m },
  // IOAS_DEBUG=1 adds the stack to an operational failure, never to bad usage.
  { name: 'IOAS_DEBUG=1: reserved_regions is a directory', argv: ['reserved', '3', '--sysfs-root', fixtures.reservedDir], status: 1, stderr: /^ioas: group 3: .*reserved_regions/, debug: true, lines: 100 },
  { name: 'IOAS_DEBUG=1: unreadable group', argv: ['groups', '--sysfs-root', fixtures.unreadableGroup], status: 1, stderr: /^ioas: group 5: /m, debug: true, lines: 100 },
  { ...usage('IOAS_DEBUG=1: bad usage has no stack', ['reserved', 'abc'], /abc is not an IOMMU group number/), debug: false },
];

interface Run {
  status: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
}

const TIMEOUT = 15_000;

function run(row: Row): Promise<Run> {
  return new Promise((resolve) => {
    const env: NodeJS.ProcessEnv = { ...process.env, NO_COLOR: '1' };
    delete env.FORCE_COLOR;
    delete env.IOAS_DEBUG;
    if (row.name.startsWith('IOAS_DEBUG=1')) env.IOAS_DEBUG = '1';
    const child = spawn(process.execPath, [bin, ...row.argv], { env, stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    child.stdout.setEncoding('utf8').on('data', (text: string) => (stdout += text));
    child.stderr.setEncoding('utf8').on('data', (text: string) => (stderr += text));
    child.stdin.end();
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, TIMEOUT);
    child.on('close', (status, signal) => {
      clearTimeout(timer);
      resolve({ status, signal, stdout, stderr, timedOut });
    });
  });
}

/** Runs every row, `width` at a time. */
async function runAll(width: number): Promise<Map<Row, Run>> {
  const results = new Map<Row, Run>();
  let next = 0;
  await Promise.all(
    Array.from({ length: width }, async () => {
      while (next < rows.length) {
        const row = rows[next++]!;
        results.set(row, await run(row));
      }
    }),
  );
  return results;
}

const STACK_FRAME = /^\s+at /m;

describe(`${rows.length} malformed invocations of ioas`, () => {
  let results: Map<Row, Run>;
  beforeAll(async () => {
    results = await runAll(4);
  }, 120_000);

  it.each(rows.map((row) => [row.name, row] as const))('%s', (_name, row) => {
    const result = results.get(row)!;
    const shown = `ioas ${row.argv.join(' ')}\n--- stdout\n${result.stdout}--- stderr\n${result.stderr}`;
    expect(result.timedOut, `hung: ${shown}`).toBe(false);
    expect(result.status, shown).toBe(row.status);
    if (row.stderr === undefined) expect(result.stderr, shown).toBe('');
    else expect(result.stderr, shown).toMatch(row.stderr);
    // Every failure begins the same way (after a confirmation prompt, for bind).
    if (row.stderr !== undefined && row.argv.length > 0) expect(result.stderr, shown).toMatch(/^(bind .*\[y\/N\] )?ioas: \S/);
    if (row.stdout !== undefined) expect(result.stdout, shown).toMatch(row.stdout);
    if (row.debug === true) expect(result.stderr, `IOAS_DEBUG=1 prints the stack: ${shown}`).toMatch(STACK_FRAME);
    else expect(result.stderr, `a stack trace: ${shown}`).not.toMatch(STACK_FRAME);
    expect(result.stderr.split('\n').filter((line) => line.trim() !== '').length, shown).toBeLessThanOrEqual(row.lines ?? 3);
    expect(`${result.stdout}${result.stderr}`, shown).not.toMatch(/NaN|undefined|\[object Object\]/);
    // A negative size or an overlapping usable range never reaches the output.
    expect(result.stdout, shown).not.toMatch(/(^|\s)-(0x)?[0-9a-f]/m);
    if (row.status === 2) expect(result.stdout, shown).toBe('');
  });

  it('counts: no hang, no stack trace without IOAS_DEBUG', () => {
    const all = [...results.entries()];
    expect(all.filter(([, result]) => result.timedOut).map(([row]) => row.name)).toEqual([]);
    expect(all.filter(([row, result]) => row.debug !== true && STACK_FRAME.test(result.stderr)).map(([row]) => row.name)).toEqual([]);
    expect(rows.length).toBeGreaterThanOrEqual(40);
  });
});

describe('an unexpected error', () => {
  const sink = (env: Record<string, string>) => {
    const stderr: string[] = [];
    const io: Io = { stdout: { write: () => true }, stderr: { write: (text: string) => stderr.push(text) }, readLine: async () => undefined, env };
    return { io, stderr };
  };
  // Syscalls whose every call throws what no caller expects.
  const broken = (): Syscalls =>
    new Proxy({} as Syscalls, {
      get: (_target, key) => (key === 'name' ? 'broken' : () => {
        throw new TypeError('the syscalls are broken');
      }),
    });

  it('prints one line and exits 1', async () => {
    const { io, stderr } = sink({});
    expect(await main(['groups'], io, broken)).toBe(1);
    expect(stderr.join('')).toBe('ioas: TypeError: the syscalls are broken\n');
  });

  it('prints the stack with IOAS_DEBUG=1', async () => {
    const { io, stderr } = sink({ IOAS_DEBUG: '1' });
    expect(await main(['reserved', '3'], io, broken)).toBe(1);
    expect(stderr.join('')).toMatch(/^ioas: TypeError: the syscalls are broken\nTypeError: the syscalls are broken\n\s+at /);
  });

  it('the binary prints one line for a failure too, with the stack only under IOAS_DEBUG=1', async () => {
    // bin.ts writes what main() returns, and catches what escapes it the same way.
    const plain = await run({ name: 'plain', argv: ['reserved', '3', '--sysfs-root', fixtures.reservedDir], status: 1 });
    const debug = await run({ name: 'IOAS_DEBUG=1 debug', argv: ['reserved', '3', '--sysfs-root', fixtures.reservedDir], status: 1 });
    expect(plain.stderr).not.toMatch(STACK_FRAME);
    expect(plain.stderr.trim().split('\n')).toHaveLength(1);
    expect(debug.stderr).toMatch(STACK_FRAME);
  });
});
