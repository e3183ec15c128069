/**
 * Why VFIO will or will not work on this host: each check reads what the kernel exposes (sysfs,
 * /dev, /proc) and, when it fails, says how to fix it. The rules: groups, nodes and their modes in
 * docs/kernel-rules.md#group-and-device-files, viability in docs/kernel-rules.md#group-viability,
 * binding in docs/kernel-rules.md#binding-with-driver-override, allow_unsafe_interrupts in
 * docs/kernel-rules.md#setting-the-iommu-type, RLIMIT_MEMLOCK in
 * docs/kernel-rules.md#pinning-and-rlimit-memlock, /dev/iommu and the VFIO cdevs in
 * docs/kernel-rules.md#availability-by-kernel-version.
 */
import { errnoName, formatSize, SYSCALL_FLAGS, type Syscalls } from '@ioas/core';
import { describeBlockers, pciId, Sysfs, type GroupInfo, type PciDeviceInfo } from './sysfs.js';

/** `pass`: fine; `warn`: works, with a caveat; `fail`: VFIO will not work until fixed; `skip`: not asked. */
export type CheckStatus = 'pass' | 'warn' | 'fail' | 'skip';

/** One check of {@link diagnoseHost}. */
export interface HostCheck {
  /** Stable id: `iommu`, `modules`, `vfio-node`, `iommufd`, `device`, `group`, `group-node`, `interrupts`, `memlock`, `hugepages`. */
  readonly id: string;
  /** What is checked, for people. */
  readonly title: string;
  /** The verdict. */
  readonly status: CheckStatus;
  /** What was found. */
  readonly detail: string;
  /** How to fix it, for `warn` and `fail`. */
  readonly fix?: string;
}

/** Options of {@link diagnoseHost}. */
export interface HostDiagnosisOptions {
  /** The system calls to read and open through (libc on a real host). */
  readonly syscalls: Syscalls;
  /** Prefix of every path read (a captured tree); default `''`, the real `/`. */
  readonly root?: string;
  /** A PCI device to check (`0000:00:03.0`): its group's viability and binding. */
  readonly device?: string;
  /** Bytes the user will map: checked against RLIMIT_MEMLOCK. */
  readonly memlock?: bigint;
}

/** CAP_IPC_LOCK (include/uapi/linux/capability.h): lifts RLIMIT_MEMLOCK for pinning. */
const CAP_IPC_LOCK = 14n;

/** Runs every check, in the order a user fixes things. Never throws for what it finds. */
export function diagnoseHost(options: HostDiagnosisOptions): HostCheck[] {
  const { syscalls } = options;
  const root = options.root ?? '';
  const at = (path: string): string => `${root}${path}`;
  const exists = (path: string): boolean => syscalls.exists(at(path));
  const read = (path: string): string | undefined => {
    try {
      return syscalls.readFile(at(path));
    } catch {
      return undefined;
    }
  };
  /** Opens a node read-write as a VFIO user would, and closes it: undefined, or why not. */
  const openError = (path: string): string | undefined => {
    const fd = syscalls.open(at(path), SYSCALL_FLAGS.O_RDWR | SYSCALL_FLAGS.O_CLOEXEC);
    if (fd < 0) return errnoName(-fd);
    syscalls.close(fd);
    return undefined;
  };
  const sysfs = new Sysfs(syscalls, root);
  const checks: HostCheck[] = [];

  let groups: number[] | undefined;
  try {
    groups = sysfs.groups();
  } catch (error) {
    // An unreadable /sys/kernel/iommu_groups is a finding, not a reason to throw.
    checks.push({ id: 'iommu', title: 'IOMMU enabled', status: 'fail', detail: `cannot list /sys/kernel/iommu_groups: ${messageOf(error)}`, fix: 'check that sysfs is mounted and readable at /sys' });
  }
  if (groups !== undefined) checks.push(
    groups.length > 0
      ? { id: 'iommu', title: 'IOMMU enabled', status: 'pass', detail: `${groups.length} IOMMU groups in /sys/kernel/iommu_groups` }
      : {
          id: 'iommu',
          title: 'IOMMU enabled',
          status: 'fail',
          detail: 'no IOMMU groups in /sys/kernel/iommu_groups',
          fix: 'turn the IOMMU on: intel_iommu=on (Intel VT-d) or amd_iommu=on on the kernel command line, the SMMU in the firmware tables on arm64; and not iommu=pt / iommu.passthrough=1 for the devices you want',
        },
  );

  // A module built into the kernel has no /sys/module entry unless it has parameters, so each is
  // also recognised by what it creates: the vfio misc device, the vfio-pci driver; type1 always has
  // parameters, and iommufd's VFIO compatibility can stand in for it.
  const present = {
    vfio: exists('/sys/module/vfio') || exists('/sys/class/misc/vfio'),
    vfio_pci: exists('/sys/module/vfio_pci') || exists('/sys/bus/pci/drivers/vfio-pci'),
    vfio_iommu_type1: exists('/sys/module/vfio_iommu_type1') || exists('/sys/module/iommufd') || exists('/dev/iommu'),
  };
  const missing = Object.entries(present)
    .filter(([, found]) => !found)
    .map(([module]) => (module === 'vfio_iommu_type1' ? 'vfio_iommu_type1 (or iommufd)' : module));
  checks.push(
    missing.length === 0
      ? { id: 'modules', title: 'vfio modules loaded', status: 'pass', detail: 'vfio, vfio_pci, and vfio_iommu_type1 or iommufd' }
      : { id: 'modules', title: 'vfio modules loaded', status: 'fail', detail: `missing: ${missing.join(', ')}`, fix: 'modprobe vfio-pci (it loads vfio and vfio_iommu_type1)' },
  );

  if (!exists('/dev/vfio/vfio')) {
    checks.push({ id: 'vfio-node', title: '/dev/vfio/vfio', status: 'fail', detail: 'missing', fix: 'modprobe vfio-pci; /dev/vfio/vfio is char 10:196' });
  } else {
    const error = openError('/dev/vfio/vfio');
    checks.push(
      error === undefined
        ? { id: 'vfio-node', title: '/dev/vfio/vfio', status: 'pass', detail: 'present, opens read-write' }
        : { id: 'vfio-node', title: '/dev/vfio/vfio', status: 'fail', detail: `present, but open fails with ${error}`, fix: 'the node is normally mode 0666: chmod 0666 /dev/vfio/vfio or add a udev rule' },
    );
  }

  if (exists('/dev/iommu')) {
    const error = openError('/dev/iommu');
    checks.push(
      error === undefined
        ? { id: 'iommufd', title: 'iommufd (/dev/iommu)', status: 'pass', detail: 'present, opens read-write (Linux 6.2+)' }
        : { id: 'iommufd', title: 'iommufd (/dev/iommu)', status: 'warn', detail: `present, but open fails with ${error}; VFIO type1 still works`, fix: 'give the user access to /dev/iommu (it is mode 0660 root by default)' },
    );
  } else {
    checks.push({ id: 'iommufd', title: 'iommufd (/dev/iommu)', status: 'warn', detail: 'absent: only VFIO type1 containers', fix: 'Linux 6.2+ with CONFIG_IOMMUFD (modprobe iommufd), and CONFIG_VFIO_DEVICE_CDEV (6.6+) for device cdevs' });
  }

  if (options.device === undefined) {
    checks.push({ id: 'device', title: 'device', status: 'skip', detail: 'no device given: ioas doctor <pci-address> checks its group and binding' });
  } else {
    checks.push(...deviceChecks(sysfs, options.device, exists, openError));
  }

  const unsafe = read('/sys/module/vfio_iommu_type1/parameters/allow_unsafe_interrupts')?.trim();
  const interrupts = read('/proc/interrupts');
  if (interrupts !== undefined && /\bIR-|ITS-(PCI-)?MSI|ITS-fMSI/.test(interrupts)) {
    checks.push({ id: 'interrupts', title: 'interrupt remapping', status: 'pass', detail: 'MSIs go through interrupt remapping (IR- or ITS chips in /proc/interrupts)' });
  } else if (unsafe === 'Y' || unsafe === '1') {
    checks.push({
      id: 'interrupts',
      title: 'interrupt remapping',
      status: 'warn',
      detail: 'no interrupt remapping seen, and vfio_iommu_type1.allow_unsafe_interrupts=Y: a device could inject interrupts',
      fix: 'enable interrupt remapping (intremap=on on Intel; the GIC ITS on arm64) and drop allow_unsafe_interrupts',
    });
  } else {
    checks.push({
      id: 'interrupts',
      title: 'interrupt remapping',
      status: interrupts === undefined ? 'warn' : 'fail',
      detail: interrupts === undefined ? 'cannot read /proc/interrupts to tell' : 'no remapped MSI chips (IR-, ITS) in /proc/interrupts: VFIO_SET_IOMMU will fail with EPERM',
      fix: 'enable interrupt remapping (intremap=on, x2apic on Intel; the GIC ITS on arm64), or, knowing the risk, vfio_iommu_type1.allow_unsafe_interrupts=1',
    });
  }

  checks.push(memlockCheck(read, options.memlock));
  checks.push(hugepageCheck(syscalls, at));
  return checks;
}

/** One line for what a sysfs read threw. */
function messageOf(error: unknown): string {
  const text = error instanceof Error ? error.message : String(error);
  return text.split('\n')[0]!;
}

function deviceChecks(sysfs: Sysfs, address: string, exists: (path: string) => boolean, openError: (path: string) => string | undefined): HostCheck[] {
  if (!sysfs.hasDevice(address)) {
    return [{ id: 'device', title: `device ${address}`, status: 'fail', detail: 'no such PCI device in /sys/bus/pci/devices', fix: 'lspci -D lists the addresses (domain:bus:slot.function)' }];
  }
  // A device or group sysfs cannot describe (a file missing, a directory where a file belongs) is a
  // failed check that says what could not be read: diagnoseHost never throws for what it finds.
  let info: PciDeviceInfo;
  let id: string;
  try {
    // Sysfs refuses ids that are not hex (abi-mismatch); pciId prints any other oddity as ????.
    info = sysfs.device(address);
    id = pciId(info);
  } catch (error) {
    return [{ id: 'device', title: `device ${address}`, status: 'fail', detail: `cannot read it from sysfs: ${messageOf(error)}`, fix: `check /sys/bus/pci/devices/${address}` }];
  }
  const checks: HostCheck[] = [];
  checks.push(
    info.driver === 'vfio-pci'
      ? { id: 'device', title: `device ${address}`, status: 'pass', detail: `${id}, bound to vfio-pci` }
      : { id: 'device', title: `device ${address}`, status: 'fail', detail: `${id}, bound to ${info.driver ?? 'no driver'}`, fix: `ioas bind ${address}` },
  );
  if (info.group === undefined) {
    checks.push({ id: 'group', title: 'IOMMU group', status: 'fail', detail: `${address} has no iommu_group link`, fix: 'the IOMMU does not cover this device: check that the IOMMU is on; on arm64 the group appears once a driver is bound' });
    return checks;
  }
  let group: GroupInfo;
  try {
    // Unreadable members and inverted reserved regions throw here (Sysfs refuses them).
    group = sysfs.describeGroup(info.group);
  } catch (error) {
    checks.push({ id: 'group', title: `IOMMU group ${info.group}`, status: 'fail', detail: `cannot read it from sysfs: ${messageOf(error)}`, fix: `check /sys/kernel/iommu_groups/${info.group}` });
    return checks;
  }
  const others = group.devices.filter((member) => member.address !== address);
  const unbound = others.filter((member) => member.driver === null);
  if (!group.viable) {
    checks.push({
      id: 'group',
      title: `IOMMU group ${group.group}`,
      status: 'fail',
      detail: `not viable: ${describeBlockers(group.blockers)}`,
      fix: group.blockers.map((blocker) => `ioas bind ${blocker.address}`).join('; '),
    });
  } else if (unbound.length > 0) {
    checks.push({
      id: 'group',
      title: `IOMMU group ${group.group}`,
      status: 'warn',
      detail: `viable, but ${unbound.map((member) => member.address).join(', ')} ${unbound.length === 1 ? 'has' : 'have'} no driver: usable by nobody until bound`,
      fix: unbound.map((member) => `ioas bind ${member.address}`).join('; '),
    });
  } else {
    checks.push({ id: 'group', title: `IOMMU group ${group.group}`, status: 'pass', detail: `viable: ${group.devices.length === 1 ? 'the device is alone in it' : `every one of ${group.devices.length} members is bound to vfio-pci or a DMA-safe driver`}` });
  }
  const node = `/dev/vfio/${group.group}`;
  if (!exists(node)) {
    checks.push({ id: 'group-node', title: node, status: 'fail', detail: 'missing', fix: `it appears when a member is bound to vfio-pci: ioas bind ${address}` });
  } else {
    const error = openError(node);
    checks.push(
      error === undefined
        ? { id: 'group-node', title: node, status: 'pass', detail: 'present, opens read-write' }
        : error === 'EBUSY'
          ? { id: 'group-node', title: node, status: 'warn', detail: 'present, but another process has it open (EBUSY: one open at a time)', fix: 'close the other user (a VMM?) first' }
          : { id: 'group-node', title: node, status: 'fail', detail: `present, but open fails with ${error}`, fix: `the node is mode 0600 root: chown it to the user, or add a udev rule (SUBSYSTEM=="vfio", OWNER="...")` },
    );
  }
  return checks;
}

function memlockCheck(read: (path: string) => string | undefined, needed: bigint | undefined): HostCheck {
  const status = read('/proc/self/status');
  const capEff = status === undefined ? undefined : /^CapEff:\s*([0-9a-f]+)$/m.exec(status)?.[1];
  if (capEff !== undefined && ((BigInt(`0x${capEff}`) >> CAP_IPC_LOCK) & 1n) === 1n) {
    return { id: 'memlock', title: 'RLIMIT_MEMLOCK', status: 'pass', detail: 'this process has CAP_IPC_LOCK: pinned memory is not limited' };
  }
  const limits = read('/proc/self/limits');
  const line = limits === undefined ? undefined : /^Max locked memory\s+(\S+)/m.exec(limits)?.[1];
  if (line === undefined) return { id: 'memlock', title: 'RLIMIT_MEMLOCK', status: 'warn', detail: 'cannot read /proc/self/limits', fix: 'check `ulimit -l` against what you will map' };
  if (line === 'unlimited') return { id: 'memlock', title: 'RLIMIT_MEMLOCK', status: 'pass', detail: 'unlimited' };
  if (!/^\d{1,20}$/.test(line)) return { id: 'memlock', title: 'RLIMIT_MEMLOCK', status: 'warn', detail: `cannot parse "${line.slice(0, 40)}" in /proc/self/limits`, fix: 'check `ulimit -l` against what you will map' };
  const limit = BigInt(line);
  if (needed === undefined) {
    return { id: 'memlock', title: 'RLIMIT_MEMLOCK', status: 'pass', detail: `${formatSize(limit)}; give --memlock SIZE to check it against what you will map` };
  }
  if (needed <= limit) return { id: 'memlock', title: 'RLIMIT_MEMLOCK', status: 'pass', detail: `${formatSize(limit)}, enough for ${formatSize(needed)}` };
  return {
    id: 'memlock',
    title: 'RLIMIT_MEMLOCK',
    status: 'fail',
    detail: `${formatSize(limit)}, but ${formatSize(needed)} will be pinned: MAP_DMA fails with ENOMEM past the limit`,
    fix: `raise it: ulimit -l ${needed / 1024n} (KiB), LimitMEMLOCK= in a systemd unit, memlock in /etc/security/limits.conf, or run with CAP_IPC_LOCK`,
  };
}

function hugepageCheck(syscalls: Syscalls, at: (path: string) => string): HostCheck {
  const base = '/sys/kernel/mm/hugepages';
  let listed: string[] = [];
  try {
    if (syscalls.exists(at(base))) listed = syscalls.readDir(at(base));
  } catch {
    // Not a directory, or unreadable: no pools to tell of.
  }
  const pools = listed
    .map((entry) => /^hugepages-(\d+)kB$/.exec(entry))
    .filter((match): match is RegExpExecArray => match !== null)
    .map((match) => {
      const read = (file: string): number => {
        try {
          const count = Number(syscalls.readFile(at(`${base}/${match[0]}/${file}`)).trim());
          return Number.isSafeInteger(count) && count >= 0 ? count : 0;
        } catch {
          return 0;
        }
      };
      return { size: BigInt(match[1]!) * 1024n, total: read('nr_hugepages'), free: read('free_hugepages') };
    })
    .sort((a, b) => (a.size < b.size ? -1 : 1));
  const summary = pools.map((pool) => `${formatSize(pool.size)}: ${pool.free} free of ${pool.total}`).join(', ');
  if (pools.some((pool) => pool.free > 0)) return { id: 'hugepages', title: 'hugepages', status: 'pass', detail: summary };
  return {
    id: 'hugepages',
    title: 'hugepages',
    status: 'warn',
    detail: pools.length === 0 ? 'no hugepage pools in /sys/kernel/mm/hugepages' : `none free (${summary})`,
    fix: `reserve some (fewer IOMMU mappings, and windowed IOMMUs need them): echo 64 > ${base}/hugepages-2048kB/nr_hugepages`,
  };
}
