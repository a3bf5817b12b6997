import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { chmodSync, copyFileSync, existsSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';
import { PACKAGE_ROOT } from '../lib/paths.js';

const run = promisify(execFile);

/**
 * racksmith's deploy agent, built from Debian packages: the distribution's kernel (apt-get
 * download + dpkg -x, never installed) with the modules a server's disks and NICs need, and a
 * small initramfs — busybox-static, sfdisk (fdisk), e2fsck/resize2fs (e2fsprogs), zstd and
 * efibootmgr with the libraries `ldd` names, and the agent's scripts from `agent/`. Cached under a name derived from
 * every input (scripts, package versions, module list), so a build costs something only when an
 * input changed; the kernel package itself is kept in `downloads/` across keys.
 */
export const AGENT_SRC = join(PACKAGE_ROOT, 'agent');
export const AGENT_SCRIPTS = ['init.sh', 'disk-rule.sh', 'udhcpc.script'] as const;
export const AGENT_KERNEL = 'vmlinuz';
export const AGENT_INITRD = 'initrd.img';
export const AGENT_FILES: readonly string[] = [AGENT_KERNEL, AGENT_INITRD];

/** Tools of the initramfs besides busybox: where Debian installs them, and the package. */
const TOOLS: Readonly<Record<string, string>> = {
  '/usr/sbin/sfdisk': 'fdisk',
  '/usr/sbin/e2fsck': 'e2fsprogs',
  '/usr/sbin/resize2fs': 'e2fsprogs',
  '/usr/bin/zstd': 'zstd',
  '/usr/bin/efibootmgr': 'efibootmgr',
};
const BUSYBOX = { path: '/bin/busybox', package: 'busybox-static' };

/**
 * Drivers the agent carries (with their dependencies): the disks — NVMe, SATA/AHCI, SAS/RAID HBAs,
 * virtio, MMC, USB storage (to see it, and leave it alone) — the common server NICs, and ext4 for
 * the seed. Anything else on a machine stays unused, which the agent's inventory report shows.
 */
export const AGENT_MODULES: readonly string[] = [
  'nvme', 'ahci', 'ata_piix', 'ata_generic', 'sd_mod', 'virtio_blk', 'virtio_scsi', 'megaraid_sas', 'mpt3sas', 'smartpqi', 'hpsa',
  'aacraid', 'vmw_pvscsi', 'mmc_block', 'sdhci_pci', 'sdhci_acpi', 'usb_storage', 'uas', 'xhci_pci', 'ehci_pci', 'ohci_pci', 'uhci_hcd',
  'virtio_pci', 'virtio_net', 'e1000', 'e1000e', 'igb', 'igc', 'ixgbe', 'i40e', 'ice', 'bnxt_en', 'tg3', 'bnx2x', 'mlx4_en', 'mlx5_core',
  'qede', 'r8169', 'vmxnet3', 'ena', 'sfc', 'be2net', 'atlantic', 'ext4', 'crc32c_generic', 'crc32c_intel', 'efivarfs', 'vfat', 'nls_cp437',
  'nls_ascii', 'nls_utf8',
];

export interface AgentBuildOptions {
  /** Where builds are kept: `<dir>/<key>/` and `<dir>/downloads/`. */
  readonly dir: string;
  /** The kernel: a Debian metapackage (`linux-image-amd64`) or a versioned package. */
  readonly kernelPackage: string;
  readonly log?: (line: string) => void;
}

export interface AgentBuild {
  readonly key: string;
  readonly dir: string;
  readonly kernel: string;
  readonly initrd: string;
  readonly kernelPackage: string;
  readonly kernelVersion: string;
  readonly built: boolean;
  readonly seconds: number;
}

export class AgentBuildError extends Error {
  readonly code = 'ERR_AGENT_BUILD';
  constructor(message: string) {
    super(message);
    this.name = 'AgentBuildError';
  }
}

async function out(cmd: string, args: readonly string[], opts: { cwd?: string; timeout?: number } = {}): Promise<string> {
  try {
    const { stdout } = await run(cmd, [...args], { cwd: opts.cwd, timeout: opts.timeout ?? 120_000, maxBuffer: 64 * 1024 * 1024 });
    return stdout;
  } catch (err) {
    const e = err as { stderr?: string; message: string };
    throw new AgentBuildError(`${cmd} ${args.join(' ')}: ${(e.stderr || e.message).trim().split('\n').slice(-3).join(' ')}`);
  }
}

/** The installed version of each Debian package, or an error naming the missing ones. */
async function packageVersions(names: readonly string[]): Promise<Record<string, string>> {
  const versions: Record<string, string> = {};
  const missing: string[] = [];
  for (const n of [...new Set(names)]) {
    try {
      const { stdout } = await run('dpkg-query', ['-W', '-f', '${db:Status-Status} ${Version}', n]);
      const [status, version] = stdout.trim().split(' ');
      if (status === 'installed' && version) versions[n] = version;
      else missing.push(n);
    } catch {
      missing.push(n);
    }
  }
  if (missing.length) throw new AgentBuildError(`the deploy agent is built from Debian packages this host lacks: apt-get install ${missing.join(' ')}`);
  return versions;
}

/** `linux-image-amd64` → the versioned package it depends on, and that package's version. */
export async function resolveKernelPackage(pkg: string): Promise<{ name: string; version: string }> {
  let name = pkg;
  if (!/^linux-image-\d/.test(pkg)) {
    const deps = await out('apt-cache', ['depends', pkg]).catch(() => '');
    const dep = /Depends: (linux-image-\d\S*)/.exec(deps)?.[1];
    if (!dep) throw new AgentBuildError(`apt-cache knows no kernel package behind ${pkg} (run apt-get update?)`);
    name = dep;
  }
  const show = await out('apt-cache', ['show', '--no-all-versions', name]).catch(() => '');
  const version = /^Version: (\S+)$/m.exec(show)?.[1];
  if (!version) throw new AgentBuildError(`apt-cache shows no version of ${name}`);
  return { name, version };
}

export async function libsOf(binary: string): Promise<string[]> {
  const text = await out('ldd', [binary]).catch(() => '');
  return [...text.matchAll(/(\/\S+\.so[.\d]*)/g)].map((m) => m[1] as string);
}

function hashFile(h: ReturnType<typeof createHash>, label: string, path: string): void {
  h.update(`${label}\0`);
  h.update(readFileSync(path));
}

/** The cache key of an agent built from these inputs. */
async function agentKey(kernel: { name: string; version: string }): Promise<{ key: string; versions: Record<string, string> }> {
  const versions = await packageVersions([BUSYBOX.package, ...Object.values(TOOLS)]);
  const h = createHash('sha256');
  h.update('racksmith-agent/1\0');
  for (const s of AGENT_SCRIPTS) hashFile(h, s, join(AGENT_SRC, s));
  h.update(JSON.stringify({ kernel, versions, modules: AGENT_MODULES }));
  return { key: h.digest('hex').slice(0, 16), versions };
}

function buildAt(dir: string, key: string, kernel: { name: string; version: string }, built: boolean, seconds: number): AgentBuild {
  const d = join(dir, key);
  const manifest = JSON.parse(readFileSync(join(d, 'manifest.json'), 'utf8')) as { kernelVersion: string };
  return { key, dir: d, kernel: join(d, AGENT_KERNEL), initrd: join(d, AGENT_INITRD), kernelPackage: `${kernel.name} ${kernel.version}`, kernelVersion: manifest.kernelVersion, built, seconds };
}

/** The modules to carry: the wanted ones and everything modules.dep says they need. */
export function moduleClosure(modulesDep: string, wanted: readonly string[]): string[] {
  const deps = new Map<string, string[]>();
  const byName = new Map<string, string>();
  for (const line of modulesDep.split('\n')) {
    const [mod, rest] = line.split(':');
    if (!mod || rest === undefined) continue;
    deps.set(mod, rest.trim().split(/\s+/).filter(Boolean));
    const base = mod.slice(mod.lastIndexOf('/') + 1).replace(/\.ko(\.\w+)?$/, '');
    byName.set(base.replace(/-/g, '_'), mod);
  }
  const out = new Set<string>();
  const visit = (path: string): void => {
    if (out.has(path)) return;
    out.add(path);
    for (const d of deps.get(path) ?? []) visit(d);
  };
  for (const w of wanted) {
    const path = byName.get(w.replace(/-/g, '_'));
    if (path) visit(path);
  }
  return [...out].sort();
}

/** Returns the agent for the current inputs, building it first when it is not cached. */
export async function ensureAgent(o: AgentBuildOptions): Promise<AgentBuild> {
  const started = Date.now();
  const log = o.log ?? (() => undefined);
  const kernel = await resolveKernelPackage(o.kernelPackage);
  const { key, versions } = await agentKey(kernel);
  if (existsSync(join(o.dir, key, 'manifest.json'))) return buildAt(o.dir, key, kernel, false, (Date.now() - started) / 1000);

  mkdirSync(join(o.dir, 'downloads'), { recursive: true });
  const work = join(o.dir, `.build-${key}-${process.pid}-${randomBytes(3).toString('hex')}`);
  mkdirSync(work, { recursive: true });
  try {
    // The kernel package, downloaded once and kept.
    const debName = readdirSync(join(o.dir, 'downloads')).find((f) => f.startsWith(`${kernel.name}_`) && f.includes(kernel.version.replace(/:/g, '%3a')) && f.endsWith('.deb'));
    let deb = debName ? join(o.dir, 'downloads', debName) : null;
    if (!deb) {
      log(`downloading ${kernel.name} ${kernel.version}`);
      await out('apt-get', ['download', `${kernel.name}=${kernel.version}`], { cwd: join(o.dir, 'downloads'), timeout: 1_200_000 });
      const got = readdirSync(join(o.dir, 'downloads')).find((f) => f.startsWith(`${kernel.name}_`) && f.endsWith('.deb'));
      if (!got) throw new AgentBuildError(`apt-get download ${kernel.name} left no .deb`);
      deb = join(o.dir, 'downloads', got);
    }
    log(`unpacking ${deb}`);
    const x = join(work, 'x');
    await out('dpkg', ['-x', deb, x], { timeout: 600_000 });
    const modRoot = join(x, 'lib', 'modules');
    const kernelVersion = readdirSync(modRoot)[0];
    if (!kernelVersion) throw new AgentBuildError(`${kernel.name} holds no /lib/modules`);
    const vmlinuz = readdirSync(join(x, 'boot')).find((f) => f.startsWith('vmlinuz-'));
    if (!vmlinuz) throw new AgentBuildError(`${kernel.name} holds no vmlinuz`);

    // The package ships no modules.dep (the kernel's postinst makes it): depmod it here.
    await out('depmod', ['-b', x, kernelVersion], { timeout: 300_000 });

    // The initramfs tree.
    const tree = join(work, 'tree');
    for (const d of ['bin', 'sbin', 'usr/bin', 'usr/sbin', 'lib/racksmith', 'etc', 'proc', 'sys', 'dev', 'tmp', 'run', 'mnt']) mkdirSync(join(tree, d), { recursive: true });
    const modules = moduleClosure(readFileSync(join(modRoot, kernelVersion, 'modules.dep'), 'utf8'), AGENT_MODULES);
    const modDest = join(tree, 'lib', 'modules', kernelVersion);
    for (const m of modules) {
      mkdirSync(dirname(join(modDest, m)), { recursive: true });
      copyFileSync(join(modRoot, kernelVersion, m), join(modDest, m));
    }
    for (const f of ['modules.order', 'modules.builtin', 'modules.builtin.modinfo']) {
      if (existsSync(join(modRoot, kernelVersion, f))) copyFileSync(join(modRoot, kernelVersion, f), join(modDest, f));
    }
    await out('depmod', ['-b', tree, kernelVersion]);

    copyFileSync(BUSYBOX.path, join(tree, 'bin', 'busybox'));
    chmodSync(join(tree, 'bin', 'busybox'), 0o755);
    // The kernel asks /sbin/modprobe for modules it needs on its own (crc32c for ext4).
    await out('ln', ['-s', '/bin/busybox', join(tree, 'sbin', 'modprobe')]);
    const libs = new Set<string>();
    for (const tool of Object.keys(TOOLS)) {
      copyFileSync(tool, join(tree, tool));
      chmodSync(join(tree, tool), 0o755);
      for (const l of await libsOf(tool)) libs.add(l);
    }
    for (const l of libs) {
      mkdirSync(join(tree, dirname(l)), { recursive: true });
      copyFileSync(l, join(tree, l));
    }
    copyFileSync(join(AGENT_SRC, 'init.sh'), join(tree, 'init'));
    chmodSync(join(tree, 'init'), 0o755);
    for (const s of ['disk-rule.sh', 'udhcpc.script']) copyFileSync(join(AGENT_SRC, s), join(tree, 'lib', 'racksmith', s));
    chmodSync(join(tree, 'lib', 'racksmith', 'udhcpc.script'), 0o755);
    writeFileSync(join(tree, 'etc', 'racksmith-agent-version'), `${key}\n`);

    const stage = join(work, 'out');
    mkdirSync(stage);
    copyFileSync(join(x, 'boot', vmlinuz), join(stage, AGENT_KERNEL));
    await out('sh', ['-c', 'cd "$1" && find . | cpio -o -H newc --quiet | gzip -6 > "$2"', 'sh', tree, join(stage, AGENT_INITRD)], { timeout: 300_000 });
    writeFileSync(
      join(stage, 'manifest.json'),
      JSON.stringify({ key, kernelPackage: kernel.name, kernelPackageVersion: kernel.version, kernelVersion, tools: versions, modules: modules.length, initrdBytes: statSync(join(stage, AGENT_INITRD)).size, builtAt: new Date().toISOString() }, null, 2) + '\n',
    );
    const final = join(o.dir, key);
    try {
      renameSync(stage, final);
    } catch (err) {
      // Another build of the same key won the race: its result is as good.
      if (!existsSync(join(final, 'manifest.json'))) throw err;
    }
    // Builds of older inputs are of no use any more.
    for (const d of readdirSync(o.dir)) if (/^[0-9a-f]{16}$/.test(d) && d !== key) rmSync(join(o.dir, d), { recursive: true, force: true });
    log(`deploy agent ${key} built: kernel ${kernelVersion}, ${modules.length} modules`);
    return buildAt(o.dir, key, kernel, true, (Date.now() - started) / 1000);
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}
