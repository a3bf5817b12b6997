import { existsSync } from 'node:fs';
import { join } from 'node:path';
import type { BootLoaderSetting } from '../inventory/model.js';

/**
 * The boot loaders racksmith hands UEFI firmware, and where their binaries come from.
 *
 * - `ipxe`: Debian's iPXE builds (`/usr/lib/ipxe`). Not signed: a machine with Secure Boot
 *   enforced downloads it and refuses to run it.
 * - `shim-grub`: the distribution's Microsoft-signed shim, which loads the distribution's signed
 *   network GRUB from the same folder (shim's second stage is `grub<arch>.efi` beside it), which
 *   loads the distribution's signed kernel. Nothing racksmith builds is in that path: the
 *   Microsoft UEFI CA (in every stock variable store) trusts shim, shim trusts Debian's key.
 */
export type BootLoader = 'ipxe' | 'shim-grub';
export type LoaderArch = 'x86_64' | 'arm64';

export interface SignedChainFiles {
  /** Names on the wire: shim loads `grub` from the folder it was loaded from. */
  readonly shim: string;
  readonly grub: string;
  /** Where Debian's packages put them, first found wins (`shim-signed`, `grub-efi-<arch>-signed`). */
  readonly shimCandidates: readonly string[];
  readonly grubCandidates: readonly string[];
}

/**
 * Per architecture. GRUB's network image (`grubnet<arch>.efi.signed`) is used, not the disk one:
 * it carries the network drivers and its embedded prefix is `/grub` on the server it was loaded
 * from, so it reads `grub/<cpu>-efi/grub.cfg` or `grub/grub.cfg` there (Debian's
 * build-efi-images; checked with `strings` on 2.06-13).
 */
export const SIGNED_CHAIN: Readonly<Record<LoaderArch, SignedChainFiles>> = {
  x86_64: {
    shim: 'shimx64.efi',
    grub: 'grubx64.efi',
    shimCandidates: ['/usr/lib/shim/shimx64.efi.signed'],
    grubCandidates: ['/usr/lib/grub/x86_64-efi-signed/grubnetx64.efi.signed'],
  },
  arm64: {
    shim: 'shimaa64.efi',
    grub: 'grubaa64.efi',
    shimCandidates: ['/usr/lib/shim/shimaa64.efi.signed'],
    grubCandidates: ['/usr/lib/grub/arm64-efi-signed/grubnetaa64.efi.signed'],
  },
};

/** Where the signed chain lives in racksmith's TFTP and HTTP namespaces: `shim-grub/<arch>/<file>`. */
export const SHIM_GRUB_PREFIX = 'shim-grub';

export function shimPath(arch: LoaderArch): string {
  return `${SHIM_GRUB_PREFIX}/${arch}/${SIGNED_CHAIN[arch].shim}`;
}

/** The signed binaries found for one architecture: file name on the wire → path on disk. */
export type SignedChain = ReadonlyMap<string, string>;

/**
 * Looks for the signed binaries: first in `<dir>/<arch>/` of each extra folder (an operator's
 * copy, or Debian's arm64 packages unpacked on an amd64 server), then where Debian installs
 * them. Both shim and GRUB must be there, or the architecture has no signed chain.
 */
export function findSignedChains(extraDirs: readonly string[], exists: (p: string) => boolean = existsSync): Partial<Record<LoaderArch, SignedChain>> {
  const out: Partial<Record<LoaderArch, SignedChain>> = {};
  for (const arch of ['x86_64', 'arm64'] as const) {
    const f = SIGNED_CHAIN[arch];
    const shim = [...extraDirs.map((d) => join(d, arch, f.shim)), ...f.shimCandidates].find(exists);
    const grub = [...extraDirs.map((d) => join(d, arch, f.grub)), ...f.grubCandidates].find(exists);
    if (shim && grub) out[arch] = new Map([[f.shim, shim], [f.grub, grub]]);
  }
  return out;
}

export interface LoaderFacts {
  /** The machine's own setting (null: none, the site default applies). */
  readonly setting: BootLoaderSetting | null;
  readonly siteDefault: BootLoaderSetting;
  readonly arch: string | null;
  /** The operator marked the machine Secure Boot, or racksmith saw it enforced. */
  readonly secureBoot: boolean;
  /** An iPXE build exists for this architecture (Debian ships none for arm64). */
  readonly ipxeAvailable: boolean;
  readonly shimGrubAvailable: boolean;
}

/**
 * The loader a UEFI machine gets. `auto`: the signed chain when the machine is Secure Boot, else
 * iPXE. Whatever the setting, an architecture with only one of the two gets that one (arm64 on a
 * server without an arm64 iPXE build goes through shim → GRUB). Null: neither exists here.
 */
export function resolveBootLoader(f: LoaderFacts): BootLoader | null {
  const wanted = f.setting ?? f.siteDefault;
  const choice: BootLoader = wanted === 'auto' ? (f.secureBoot ? 'shim-grub' : 'ipxe') : wanted;
  if (choice === 'shim-grub' && f.shimGrubAvailable) return 'shim-grub';
  if (choice === 'ipxe' && f.ipxeAvailable) return 'ipxe';
  if (f.ipxeAvailable) return 'ipxe';
  if (f.shimGrubAvailable) return 'shim-grub';
  return null;
}

/** Which loader a served bootfile is (for the machine view), or null for anything else. */
export function loaderOfBootfile(file: string | null): BootLoader | null {
  if (!file) return null;
  const base = file.slice(file.lastIndexOf('/') + 1);
  if (/^(shim|grub)[a-z0-9]*\.efi$/.test(base)) return 'shim-grub';
  if (/\.(efi|kpxe|pxe)$/.test(base)) return 'ipxe';
  return null;
}

/**
 * A bootfile with no boot loader asking for its script within this long: the firmware fetched
 * the binary and did not run it (Secure Boot refusing an unsigned iPXE, a binary for the wrong
 * architecture) or the loader cannot reach racksmith.
 */
export const BOOTFILE_STALL_SECONDS = 60;

export interface BootStall {
  readonly since: string;
  readonly bootfile: string;
  readonly message: string;
}

/** What racksmith can infer from the two timestamps: a bootfile served, and no loader after it. */
export function bootStall(m: { readonly bootfile: string | null; readonly bootfileAt: string | null; readonly loaderAt: string | null }, nowMs: number): BootStall | null {
  if (!m.bootfile || !m.bootfileAt) return null;
  const served = Date.parse(m.bootfileAt);
  if (m.loaderAt && Date.parse(m.loaderAt) >= served) return null;
  if (nowMs - served < BOOTFILE_STALL_SECONDS * 1000) return null;
  const hint = loaderOfBootfile(m.bootfile) === 'ipxe' ? ' (Secure Boot refusing the unsigned iPXE? set bootLoader "shim-grub" or mark the machine secureBoot)' : '';
  return {
    since: m.bootfileAt,
    bootfile: m.bootfile,
    message: `stuck after the bootfile: ${m.bootfile} was served but no boot loader asked for its script${hint}`,
  };
}

/** Which architectures have a signed chain here (what the DHCP service may hand out). */
export function signedChainsAvailable(extraDirs: readonly string[]): { x86_64: boolean; arm64: boolean } {
  const found = findSignedChains(extraDirs);
  return { x86_64: found.x86_64 !== undefined, arm64: found.arm64 !== undefined };
}

/** The earliest moment one of these machines will show stuck that does not yet (null: none will). */
export function nextStallAt(machines: readonly { readonly bootfile: string | null; readonly bootfileAt: string | null; readonly loaderAt: string | null }[], nowMs = Date.now()): number | null {
  let next: number | null = null;
  for (const m of machines) {
    if (!m.bootfile || !m.bootfileAt) continue;
    const served = Date.parse(m.bootfileAt);
    if (m.loaderAt && Date.parse(m.loaderAt) >= served) continue;
    const at = served + BOOTFILE_STALL_SECONDS * 1000;
    if (at > nowMs && (next === null || at < next)) next = at;
  }
  return next;
}
