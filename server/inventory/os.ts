import type { UbuntuRelease } from './model.js';

/**
 * The operating systems a cluster can run and the three ways racksmith installs them, as plain
 * tables and pure checks:
 *
 *   os              preseed (d-i)   autoinstall (subiquity)   image (deploy agent)
 *   ubuntu-18.04    yes             no (none before 20.04)    yes
 *   ubuntu-20.04+   no (no d-i)     yes                       yes
 *   debian-12       yes             no (Ubuntu only)          yes
 *
 * `ubuntuRelease` ("22.04") is the older name of `os` ("ubuntu-22.04") and stays accepted.
 */
export const OS_IDS = ['ubuntu-18.04', 'ubuntu-20.04', 'ubuntu-22.04', 'ubuntu-24.04', 'debian-12'] as const;
export type OsId = (typeof OS_IDS)[number];

export const INSTALL_METHODS = ['preseed', 'autoinstall', 'image'] as const;
export type InstallMethod = (typeof INSTALL_METHODS)[number];

export const INSTALL_DISK_RULES = ['smallest', 'largest', 'first'] as const;
export type InstallDiskRule = (typeof INSTALL_DISK_RULES)[number];

export const OS_FAMILY: Readonly<Record<OsId, 'ubuntu' | 'debian'>> = {
  'ubuntu-18.04': 'ubuntu',
  'ubuntu-20.04': 'ubuntu',
  'ubuntu-22.04': 'ubuntu',
  'ubuntu-24.04': 'ubuntu',
  'debian-12': 'debian',
};

/** Human names, for events and consoles. */
export const OS_NAMES: Readonly<Record<OsId, string>> = {
  'ubuntu-18.04': 'Ubuntu 18.04',
  'ubuntu-20.04': 'Ubuntu 20.04',
  'ubuntu-22.04': 'Ubuntu 22.04',
  'ubuntu-24.04': 'Ubuntu 24.04',
  'debian-12': 'Debian 12',
};

/** The release codename (apt suites, d-i's mirror/suite). */
export const OS_CODENAMES: Readonly<Record<OsId, string>> = {
  'ubuntu-18.04': 'bionic',
  'ubuntu-20.04': 'focal',
  'ubuntu-22.04': 'jammy',
  'ubuntu-24.04': 'noble',
  'debian-12': 'bookworm',
};

export function isOsId(s: string): s is OsId {
  return (OS_IDS as readonly string[]).includes(s);
}

export function osOfUbuntuRelease(r: UbuntuRelease): OsId {
  return `ubuntu-${r}`;
}

export function ubuntuReleaseOf(os: OsId): UbuntuRelease | null {
  return os.startsWith('ubuntu-') ? (os.slice('ubuntu-'.length) as UbuntuRelease) : null;
}

/** The installer each OS uses unless the cluster says otherwise: its distribution's own. */
export function defaultInstallMethod(os: OsId): InstallMethod {
  return os === 'ubuntu-18.04' || os === 'debian-12' ? 'preseed' : 'autoinstall';
}

/** Why this OS cannot be installed this way, or null when it can. */
export function installMethodProblem(os: OsId, method: InstallMethod): string | null {
  if (method === 'image') return null;
  if (method === 'preseed' && !(os === 'ubuntu-18.04' || os === 'debian-12')) {
    return `${OS_NAMES[os]} has no debian-installer (preseed): use autoinstall or image`;
  }
  if (method === 'autoinstall' && OS_FAMILY[os] !== 'ubuntu') return `${OS_NAMES[os]} has no subiquity autoinstall: use preseed or image`;
  if (method === 'autoinstall' && os === 'ubuntu-18.04') return 'subiquity autoinstall starts with Ubuntu 20.04: use preseed or image for 18.04';
  return null;
}

/**
 * The key an OS's installer files are kept and served under (`/artifacts/<key>/<file>`, the
 * artifacts directory's `<key>/`): the bare release for Ubuntu, as before, the id otherwise.
 */
export type InstallerKey = UbuntuRelease | 'debian-12';

export function installerKeyOf(os: OsId): InstallerKey {
  return ubuntuReleaseOf(os) ?? (os as 'debian-12');
}
