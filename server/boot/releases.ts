import type { InstallerOverrides } from '../config/settings.js';
import type { UbuntuRelease } from '../inventory/model.js';

/**
 * What each Ubuntu release boots as its installer, and where racksmith gets the files.
 *
 * - 18.04 has no subiquity autoinstall (subiquity doc/intro-to-autoinstall.rst: "20.04 and
 *   later"), so it boots debian-installer's netboot kernel and initrd with a preseed URL. The
 *   images come from `-updates/…/current`, because the netboot initrd's kernel must match the
 *   kernel udebs in the mirror.
 * - 20.04 and later boot the live-server ISO's casper kernel and initrd, which download the ISO
 *   itself (`url=`) into RAM and run subiquity.
 *
 * Upstream sources are either http(s) URLs or `iso:<path>`: a file inside the release's ISO
 * (20.04 and 22.04 publish no separate netboot kernel). Everything here is overridable per
 * release with the `installers` setting.
 */
export type InstallerKind = 'debian-installer' | 'subiquity';

/** Debian's architecture names, as the installers' upstream paths spell them. */
export const INSTALLER_ARCHES = ['amd64', 'arm64'] as const;
export type InstallerArch = (typeof INSTALLER_ARCHES)[number];

export interface ReleaseInstaller {
  readonly release: UbuntuRelease;
  /** Absent: amd64 (the table racksmith started with). */
  readonly arch?: InstallerArch;
  readonly kind: InstallerKind;
  readonly kernel: string;
  readonly initrd: string;
  /** The live-server ISO (subiquity only). */
  readonly iso: string | null;
  /** File name → http(s) URL or `iso:<path inside the ISO>`. */
  readonly upstream: Readonly<Record<string, string>>;
  /** File name → expected SHA-256 (hex), when the operator pinned one. */
  readonly sha256: Readonly<Record<string, string>>;
}

const BIONIC_NETBOOT = 'http://archive.ubuntu.com/ubuntu/dists/bionic-updates/main/installer-amd64/current/images/netboot/ubuntu-installer/amd64/';

function subiquity(release: UbuntuRelease, point: string, kernelSource: (iso: string) => Record<string, string>): ReleaseInstaller {
  const iso = `ubuntu-${point}-live-server-amd64.iso`;
  return {
    release,
    kind: 'subiquity',
    kernel: 'vmlinuz',
    initrd: 'initrd',
    iso,
    upstream: { [iso]: `https://releases.ubuntu.com/${point}/${iso}`, ...kernelSource(iso) },
    sha256: {},
  };
}

const fromIso = (): Record<string, string> => ({ vmlinuz: 'iso:casper/vmlinuz', initrd: 'iso:casper/initrd' });

export const DEFAULT_INSTALLERS: Readonly<Record<UbuntuRelease, ReleaseInstaller>> = {
  '18.04': {
    release: '18.04',
    kind: 'debian-installer',
    kernel: 'linux',
    initrd: 'initrd.gz',
    iso: null,
    upstream: { linux: `${BIONIC_NETBOOT}linux`, 'initrd.gz': `${BIONIC_NETBOOT}initrd.gz` },
    sha256: {},
  },
  '20.04': subiquity('20.04', '20.04.6', fromIso),
  '22.04': subiquity('22.04', '22.04.5', fromIso),
  // 24.04 point releases publish the netboot kernel and initrd beside the ISO.
  '24.04': subiquity('24.04', '24.04.4', () => ({
    vmlinuz: 'https://releases.ubuntu.com/24.04.4/netboot/amd64/linux',
    initrd: 'https://releases.ubuntu.com/24.04.4/netboot/amd64/initrd',
  })),
};

/** The built-in table with the operator's overrides laid over it, release by release. */
export function resolveInstallers(overrides: InstallerOverrides): Record<UbuntuRelease, ReleaseInstaller> {
  const out = { ...DEFAULT_INSTALLERS } as Record<UbuntuRelease, ReleaseInstaller>;
  for (const [release, o] of Object.entries(overrides) as [UbuntuRelease, NonNullable<InstallerOverrides[UbuntuRelease]>][]) {
    const base = DEFAULT_INSTALLERS[release];
    out[release] = {
      ...base,
      kernel: o.kernel ?? base.kernel,
      initrd: o.initrd ?? base.initrd,
      iso: base.kind === 'subiquity' ? (o.iso ?? base.iso) : null,
      upstream: { ...base.upstream, ...o.upstream },
      sha256: { ...base.sha256, ...o.sha256 },
    };
  }
  return out;
}

/** The files a release's installer is made of (what `/artifacts/<release>/` fetches from upstream). */
export function artifactFiles(r: ReleaseInstaller): string[] {
  return [r.kernel, r.initrd, ...(r.iso ? [r.iso] : [])];
}

// ── arm64 ────────────────────────────────────────────────────────────────────────────────────
// Ubuntu publishes arm64 installers on cdimage (ubuntu-ports for d-i): the same kinds of files
// under other names. Keyed by (release, arch) so that an ARM64 machine is never handed amd64
// files; a later `os` key (Debian) slots in beside the release.

const BIONIC_NETBOOT_ARM64 = 'http://ports.ubuntu.com/ubuntu-ports/dists/bionic-updates/main/installer-arm64/current/images/netboot/ubuntu-installer/arm64/';

function subiquityArm64(release: UbuntuRelease, point: string, netboot: boolean): ReleaseInstaller {
  const iso = `ubuntu-${point}-live-server-arm64.iso`;
  const base = `https://cdimage.ubuntu.com/releases/${point}/release/`;
  return {
    release,
    arch: 'arm64',
    kind: 'subiquity',
    kernel: 'vmlinuz',
    initrd: 'initrd',
    iso,
    upstream: {
      [iso]: `${base}${iso}`,
      ...(netboot ? { vmlinuz: `${base}netboot/arm64/linux`, initrd: `${base}netboot/arm64/initrd` } : fromIso()),
    },
    sha256: {},
  };
}

export const DEFAULT_ARM64_INSTALLERS: Readonly<Record<UbuntuRelease, ReleaseInstaller>> = {
  '18.04': {
    release: '18.04',
    arch: 'arm64',
    kind: 'debian-installer',
    kernel: 'linux',
    initrd: 'initrd.gz',
    iso: null,
    upstream: { linux: `${BIONIC_NETBOOT_ARM64}linux`, 'initrd.gz': `${BIONIC_NETBOOT_ARM64}initrd.gz` },
    sha256: {},
  },
  '20.04': subiquityArm64('20.04', '20.04.5', false),
  '22.04': subiquityArm64('22.04', '22.04.5', false),
  '24.04': subiquityArm64('24.04', '24.04.4', true),
};

/** iPXE's/GRUB's CPU word → Debian's architecture name; anything else is amd64's table. */
export function installerArchOf(cpu: string | null | undefined): InstallerArch {
  return cpu === 'arm64' || cpu === 'aarch64' ? 'arm64' : 'amd64';
}

/** Installer tables by architecture. */
export type InstallerTables = Readonly<Record<InstallerArch, Readonly<Record<UbuntuRelease, ReleaseInstaller>>>>;

export function installerTables(amd64: Readonly<Record<UbuntuRelease, ReleaseInstaller>>, arm64: Readonly<Record<UbuntuRelease, ReleaseInstaller>> = DEFAULT_ARM64_INSTALLERS): InstallerTables {
  return { amd64, arm64 };
}

/** The installer of a release for a machine's architecture. */
export function installerFor(tables: InstallerTables, release: UbuntuRelease, arch: InstallerArch): ReleaseInstaller {
  return tables[arch][release];
}

/** Where a release's artifacts live under `/artifacts/` (and the artifacts directory): `<release>` or `<release>/<arch>`. */
export function artifactDir(inst: ReleaseInstaller): string {
  return inst.arch && inst.arch !== 'amd64' ? `${inst.release}/${inst.arch}` : inst.release;
}
