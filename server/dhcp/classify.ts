import type { Mac } from '../lib/mac.js';
import type { BootLoaderSetting } from '../inventory/model.js';
import { resolveBootLoader, shimPath } from '../boot/loaders.js';
import { OPTION, getClientArch, getClientGuid, getMessageType, getParameterList, getString, getUserClasses, guidToUuid, type MessageTypeName } from './options.js';
import { clientMac, type DhcpPacket } from './packet.js';

/**
 * Classifies a client once per packet; every later decision reads `ClientInfo`, never the raw
 * options again.
 */

/** iPXE's `${buildarch}` words, so DHCP and the iPXE chain script name a machine's CPU alike. */
export type BuildArch = 'i386' | 'x86_64' | 'arm32' | 'arm64';
export type Firmware = 'bios' | 'efi';

interface ArchRow {
  readonly name: string;
  readonly arch: BuildArch;
  readonly firmware: Firmware;
  /** UEFI HTTP Boot (the client wants a URL, not a TFTP file name). */
  readonly http: boolean;
}

/**
 * Option 93 processor architecture types: IANA registry for RFC 4578 §2.1, with erratum 4624
 * (the RFC's own labels for 7 and 9 were swapped). 9 is "EFI BC" on paper, but firmware in the
 * wild sends 9 for x64 UEFI, so 7 and 9 both mean x86_64 EFI (as pixiecore and dnsmasq configs do).
 */
export const CLIENT_ARCH_TYPES: ReadonlyMap<number, ArchRow> = new Map([
  [0, { name: 'x86 BIOS', arch: 'i386', firmware: 'bios', http: false }],
  [6, { name: 'x86 UEFI', arch: 'i386', firmware: 'efi', http: false }],
  [7, { name: 'x64 UEFI', arch: 'x86_64', firmware: 'efi', http: false }],
  [9, { name: 'x64 UEFI (EFI BC)', arch: 'x86_64', firmware: 'efi', http: false }],
  [10, { name: 'ARM32 UEFI', arch: 'arm32', firmware: 'efi', http: false }],
  [11, { name: 'ARM64 UEFI', arch: 'arm64', firmware: 'efi', http: false }],
  [15, { name: 'x86 UEFI HTTP', arch: 'i386', firmware: 'efi', http: true }],
  [16, { name: 'x64 UEFI HTTP', arch: 'x86_64', firmware: 'efi', http: true }],
  [19, { name: 'ARM64 UEFI HTTP', arch: 'arm64', firmware: 'efi', http: true }],
] as const);

export function clientArchName(code: number): string {
  return CLIENT_ARCH_TYPES.get(code)?.name ?? `unknown (${code})`;
}

export interface ClientIdentity {
  readonly mac: Mac | null;
  readonly messageType: MessageTypeName | null;
  /** First option 93 value, or null when the client sent none. */
  readonly archCode: number | null;
  readonly arch: BuildArch | null;
  readonly firmware: Firmware | null;
  /** Option 60 starts with `PXEClient` (PXE spec 2.1 §2.4.1). */
  readonly pxe: boolean;
  /** Option 60 starts with `HTTPClient`, or option 93 is an HTTP boot type (UEFI 2.5+ HTTP Boot). */
  readonly httpBoot: boolean;
  /** User class `iPXE` (ipxe.org/appnote/userclass) or iPXE's option 175 present. */
  readonly ipxe: boolean;
  /**
   * iPXE recognised by state, not by options: this MAC was just handed `undionly.kpxe` and then
   * fetched it, so the firmware-looking DISCOVER that follows comes from the chained iPXE.
   */
  readonly chainloaded: boolean;
  readonly vendorClass: string | null;
  readonly userClasses: readonly string[];
  /** Option 97 raw (17 bytes), echoed in PXE replies. */
  readonly guid: Buffer | null;
  /** Option 97 as the SMBIOS UUID text. */
  readonly uuid: string | null;
  readonly hostname: string | null;
  /** Option 55 (one code per byte), or null when absent. */
  readonly parameterList: Uint8Array | null;
  /** Option 61 as hex, or null. */
  readonly clientId: string | null;
}

export interface ClientInfo extends ClientIdentity {
  /** The row of the bootfile table that applies, or null (not a booting client, or no binary). */
  readonly bootfile: Bootfile | null;
}

/** A booting client: one the server may send a bootfile to (and record as a sighting). */
export function isBootClient(info: ClientIdentity): boolean {
  return info.pxe || info.httpBoot || info.ipxe;
}

export interface ClassifyFacts {
  /** From the inventory: this MAC's firmware just fetched `undionly.kpxe` (see `ClientInfo.chainloaded`). */
  readonly chainloaded?: boolean;
  /** From the inventory: the machine's own boot loader setting (null or absent: the site default). */
  readonly bootLoader?: BootLoaderSetting | null;
  /** From the inventory: the operator marked the machine Secure Boot. */
  readonly secureBoot?: boolean | null;
}

/** Most clients send no user class: one shared empty list. */
const NO_USER_CLASSES: readonly string[] = Object.freeze([]);

/** Reads the options once. Malformed options throw `ProtocolError` (the loop counts and drops). */
export function classify(p: DhcpPacket, cfg: BootConfig, facts: ClassifyFacts = {}): ClientInfo {
  // One object, completed in place: the loop classifies every datagram, and a spread copy of
  // the identity would be a second allocation of it.
  const info: { -readonly [K in keyof ClientInfo]: ClientInfo[K] } = identify(p, facts);
  info.bootfile = chooseBootfile(info, cfg, facts);
  return info;
}

function identify(p: DhcpPacket, facts: ClassifyFacts): { -readonly [K in keyof ClientInfo]: ClientInfo[K] } {
  const o = p.options;
  const vendorClass = getString(o, OPTION.VENDOR_CLASS);
  const userClasses = getUserClasses(o) ?? NO_USER_CLASSES;
  const archCode = getClientArch(o)?.[0] ?? null;
  const row = archCode === null ? undefined : CLIENT_ARCH_TYPES.get(archCode);
  const guid = getClientGuid(o);
  const pxe = vendorClass?.startsWith('PXEClient') ?? false;
  const httpBoot = (vendorClass?.startsWith('HTTPClient') ?? false) || (row?.http ?? false);
  const ipxe = userClasses.includes('iPXE') || o.has(OPTION.IPXE_ENCAP);
  // A PXE client without option 93 is a BIOS one: the option arrived with RFC 4578, after PXE 2.1.
  const firmware = row?.firmware ?? (pxe && archCode === null ? 'bios' : null);
  return {
    mac: clientMac(p),
    messageType: getMessageType(o),
    archCode,
    arch: row?.arch ?? (firmware === 'bios' ? 'i386' : null),
    firmware,
    pxe,
    httpBoot,
    ipxe,
    chainloaded: !ipxe && pxe && firmware === 'bios' && facts.chainloaded === true,
    vendorClass,
    userClasses,
    guid,
    uuid: guid ? guidToUuid(guid) : null,
    hostname: getString(o, OPTION.HOSTNAME),
    parameterList: getParameterList(o),
    clientId: o.get(OPTION.CLIENT_ID)?.toString('hex') ?? null,
    bootfile: null,
  };
}

// ── The bootfile table ───────────────────────────────────────────────────────────────────────

export interface BootConfig {
  /** Address machines reach racksmith at (TFTP `siaddr`, HTTP URLs). */
  readonly advertise: string;
  readonly httpPort: number;
  /** x64 UEFI PXE binary: `ipxe.efi` (full drivers) or `snponly.efi` (the firmware's SNP driver). */
  readonly efiBootfile: 'ipxe.efi' | 'snponly.efi';
  /** The arm64 iPXE EFI binary's path under the TFTP root, when one is installed; else null. */
  readonly arm64Bootfile: string | null;
  /** The site's boot loader for UEFI machines without their own setting (default `ipxe`). */
  readonly bootLoader?: BootLoaderSetting;
  /** Architectures whose signed shim → GRUB chain racksmith found (`server/boot/loaders.ts`). */
  readonly signedChains?: { readonly x86_64?: boolean; readonly arm64?: boolean };
}

/** Where the HTTP service serves the TFTP root's boot binaries for UEFI HTTP Boot clients. */
export const HTTP_BOOT_PREFIX = '/ipxe/';
/** The chain script every iPXE client is sent to (INTERFACE.md). */
export const IPXE_SCRIPT_PATH = '/boot.ipxe';
/** BIOS PXE chainloads iPXE with the UNDI-only build, which uses the ROM's own driver. */
export const BIOS_BOOTFILE = 'undionly.kpxe';

export type BootfileKind = 'tftp' | 'http';

export interface Bootfile {
  readonly kind: BootfileKind;
  /** A TFTP path relative to the root, or a full HTTP URL. */
  readonly name: string;
  /** Why this row of the table applied (goes into events and logs). */
  readonly rule: string;
}

/**
 * The bootfile table. Order matters: iPXE first (it breaks the chainload loop: an iPXE client
 * sent to a binary would load iPXE again forever), then HTTP Boot, then firmware PXE by arch.
 * Null: nothing suitable (a non-booting client, or an architecture with no binary here).
 */
export function chooseBootfile(info: ClientIdentity, cfg: BootConfig, facts: ClassifyFacts = {}): Bootfile | null {
  if (!info.ipxe && !info.chainloaded && !info.httpBoot && !info.pxe) return null;
  const base = `http://${cfg.advertise}:${cfg.httpPort}`;
  if (info.ipxe || info.chainloaded) {
    return { kind: 'http', name: `${base}${IPXE_SCRIPT_PATH}`, rule: info.ipxe ? 'ipxe' : 'ipxe (chainloaded, by state)' };
  }
  if (!info.httpBoot && !info.pxe) return null;
  if (!info.httpBoot && info.firmware === 'bios') return { kind: 'tftp', name: BIOS_BOOTFILE, rule: 'bios-pxe' };
  const ipxe = efiBinary(info, cfg);
  const arch = info.arch === 'x86_64' || info.arch === 'arm64' ? info.arch : null;
  const loader = resolveBootLoader({
    setting: facts.bootLoader ?? null,
    siteDefault: cfg.bootLoader ?? 'ipxe',
    arch: info.arch,
    secureBoot: facts.secureBoot === true,
    ipxeAvailable: ipxe !== null,
    shimGrubAvailable: arch !== null && cfg.signedChains?.[arch] === true,
  });
  if (loader === null) return null;
  if (info.httpBoot) {
    // The distribution's signed GRUB has no HTTP client built in (Debian 2.06: tftp only), so it
    // could not read its config after an HTTP boot: a shim-grub machine gets no HTTP bootfile,
    // and its firmware goes on to its PXE boot option.
    if (loader !== 'ipxe' || !ipxe) return null;
    return { kind: 'http', name: `${base}${HTTP_BOOT_PREFIX}${ipxe}`, rule: `uefi-http ${info.arch ?? 'unknown arch'}` };
  }
  if (loader === 'shim-grub' && arch) return { kind: 'tftp', name: shimPath(arch), rule: `uefi-pxe ${arch} shim-grub` };
  return ipxe ? { kind: 'tftp', name: ipxe, rule: `uefi-pxe ${info.arch}` } : null;
}

function efiBinary(info: ClientIdentity, cfg: BootConfig): string | null {
  switch (info.arch) {
    case 'x86_64':
      return cfg.efiBootfile;
    case 'arm64':
      return cfg.arm64Bootfile;
    default:
      // Debian ships no i386 or arm32 EFI iPXE build; such clients get no bootfile.
      return null;
  }
}

/** Candidate names of an arm64 iPXE EFI binary under the TFTP root, in order of preference. */
export const ARM64_BOOTFILE_CANDIDATES = ['arm64-efi/snponly.efi', 'arm64-efi/ipxe.efi', 'ipxe-arm64.efi', 'snp-arm64.efi'] as const;
