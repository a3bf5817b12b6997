import { suite } from '../lib/suite.js';
import * as assert from 'uvu/assert';
import { decideAuthoritative, type AuthoritativeFacts } from '../../server/dhcp/authoritative.js';
import { classify, type BootConfig, type ClassifyFacts } from '../../server/dhcp/classify.js';
import type { Decision } from '../../server/dhcp/decision.js';
import { OPTION, getString } from '../../server/dhcp/options.js';
import { decodeDhcp, type DhcpPacket } from '../../server/dhcp/packet.js';
import { decideBootServer, decideProxy, type ProxyFacts } from '../../server/dhcp/proxy.js';
import type { IPv4 } from '../../server/lib/ipv4.js';
import { ascii, rawRequest } from '../lib/dhcp-fixtures.js';

/**
 * Current firmware, decided: UEFI HTTP Boot (vendor class HTTPClient, arch 16 x64 and 19 ARM64)
 * in authoritative and proxy mode, and the boot loader each UEFI machine is handed (iPXE or the
 * signed shim → GRUB chain, per machine and per site, x64 and ARM64).
 */
const test = suite('dhcp: UEFI HTTP Boot and the signed chain, both modes');

const IP = (s: string): IPv4 => s as IPv4;
const BOOT: BootConfig = { advertise: '10.77.0.1', httpPort: 8080, efiBootfile: 'snponly.efi', arm64Bootfile: null, bootLoader: 'ipxe', signedChains: { x86_64: true, arm64: true } };
const AUTH: AuthoritativeFacts = {
  now: 1_000_000,
  serverId: IP('10.77.0.1'),
  nextServer: IP('10.77.0.1'),
  pool: { range: { start: IP('10.77.0.100'), end: IP('10.77.0.199') }, network: IP('10.77.0.0'), mask: IP('255.255.255.0'), router: null, dns: [], leaseSeconds: 600, cacheThreshold: 0 },
  ignoreUnknown: false,
  known: true,
  reservation: null,
  lease: null,
  offered: null,
  requested: null,
  candidate: IP('10.77.0.100'),
};
const PROXY: ProxyFacts = { serverId: IP('10.77.0.1'), nextServer: IP('10.77.0.1'), ignoreUnknown: false, known: true };

const vendor = (v: string): number[] => [60, v.length, ...ascii(v)];
const arch = (n: number): number[] => [93, 2, 0, n];
function discover(...opts: number[][]): DhcpPacket {
  return decodeDhcp(rawRequest([53, 1, 1, ...opts.flat(), 255]));
}
/** The REQUEST EDK2 sends to the boot server (port 4011) with its address in ciaddr. */
function bootServerRequest(...opts: number[][]): DhcpPacket {
  return decodeDhcp(rawRequest([53, 1, 3, ...opts.flat(), 255], { ciaddr: [10, 77, 0, 150] }));
}

const HTTP_X64 = [vendor('HTTPClient:Arch:00016:UNDI:003001'), arch(16)];
const HTTP_ARM64 = [vendor('HTTPClient:Arch:00019:UNDI:003001'), arch(19)];
const PXE_X64 = [vendor('PXEClient:Arch:00007:UNDI:003000'), arch(7)];
const PXE_ARM64 = [vendor('PXEClient:Arch:00011:UNDI:003000'), arch(11)];

type Mode = 'authoritative' | 'proxy' | 'boot-server';
function decide(mode: Mode, p: DhcpPacket, cfg: Partial<BootConfig> = {}, facts: ClassifyFacts = {}): Decision {
  const info = classify(p, { ...BOOT, ...cfg }, facts);
  if (mode === 'authoritative') return decideAuthoritative(p, info, AUTH);
  return mode === 'proxy' ? decideProxy(p, info, PROXY) : decideBootServer(p, info, PROXY);
}

interface Case {
  readonly name: string;
  readonly mode: Mode;
  readonly packet: () => DhcpPacket;
  readonly cfg?: Partial<BootConfig>;
  readonly facts?: ClassifyFacts;
  readonly reason: string;
  /** The bootfile (file field or option 67), or null for a reply without one. */
  readonly bootfile?: string | null;
  /** Option 60 in the reply. */
  readonly vendor?: string | null;
  readonly siaddr?: string;
  readonly yiaddr?: string;
}

const CASES: Case[] = [
  // UEFI HTTP Boot: a URL, HTTPClient echoed, no TFTP server named.
  { name: 'authoritative, arch 16 HTTPClient → address + URL + HTTPClient', mode: 'authoritative', packet: () => discover(...HTTP_X64), reason: 'offer', bootfile: 'http://10.77.0.1:8080/ipxe/snponly.efi', vendor: 'HTTPClient', siaddr: '0.0.0.0', yiaddr: '10.77.0.100' },
  { name: 'proxy, arch 16 HTTPClient → URL + HTTPClient, no address', mode: 'proxy', packet: () => discover(...HTTP_X64), reason: 'proxy-offer', bootfile: 'http://10.77.0.1:8080/ipxe/snponly.efi', vendor: 'HTTPClient', siaddr: '0.0.0.0', yiaddr: '0.0.0.0' },
  { name: 'boot server (4011), arch 16 HTTPClient → URL + HTTPClient', mode: 'boot-server', packet: () => bootServerRequest(...HTTP_X64), reason: 'boot-server-ack', bootfile: 'http://10.77.0.1:8080/ipxe/snponly.efi', vendor: 'HTTPClient', siaddr: '0.0.0.0' },
  { name: 'authoritative, arch 19 HTTPClient with an arm64 iPXE → its URL', mode: 'authoritative', packet: () => discover(...HTTP_ARM64), cfg: { arm64Bootfile: 'arm64-efi/snponly.efi' }, reason: 'offer', bootfile: 'http://10.77.0.1:8080/ipxe/arm64-efi/snponly.efi', vendor: 'HTTPClient' },
  { name: 'proxy, arch 19 HTTPClient with an arm64 iPXE → its URL', mode: 'proxy', packet: () => discover(...HTTP_ARM64), cfg: { arm64Bootfile: 'arm64-efi/snponly.efi' }, reason: 'proxy-offer', bootfile: 'http://10.77.0.1:8080/ipxe/arm64-efi/snponly.efi', vendor: 'HTTPClient' },
  // Debian's signed GRUB has no HTTP client: no HTTP bootfile for the signed chain, the firmware
  // goes on to PXE. Never an amd64 binary for an ARM64 client.
  { name: 'authoritative, arch 19 HTTPClient, no arm64 iPXE → an address, no bootfile', mode: 'authoritative', packet: () => discover(...HTTP_ARM64), reason: 'offer', bootfile: null, vendor: null, yiaddr: '10.77.0.100' },
  { name: 'proxy, arch 19 HTTPClient, no arm64 iPXE → silent', mode: 'proxy', packet: () => discover(...HTTP_ARM64), reason: 'ignored-no-bootfile' },
  { name: 'proxy, arch 16 HTTPClient, machine on shim-grub → silent (its PXE option boots it)', mode: 'proxy', packet: () => discover(...HTTP_X64), facts: { bootLoader: 'shim-grub' }, reason: 'ignored-no-bootfile' },
  // PXE: the signed chain by machine setting, site setting, auto + Secure Boot, and ARM64.
  { name: 'authoritative, arch 7, site ipxe → snponly.efi', mode: 'authoritative', packet: () => discover(...PXE_X64), reason: 'offer', bootfile: 'snponly.efi', siaddr: '10.77.0.1' },
  { name: 'authoritative, arch 7, machine shim-grub → shimx64.efi over TFTP', mode: 'authoritative', packet: () => discover(...PXE_X64), facts: { bootLoader: 'shim-grub' }, reason: 'offer', bootfile: 'shim-grub/x86_64/shimx64.efi', siaddr: '10.77.0.1' },
  { name: 'proxy, arch 7, site shim-grub → shimx64.efi', mode: 'proxy', packet: () => discover(...PXE_X64), cfg: { bootLoader: 'shim-grub' }, reason: 'proxy-offer', bootfile: 'shim-grub/x86_64/shimx64.efi', vendor: 'PXEClient', siaddr: '10.77.0.1' },
  { name: 'boot server, arch 7, site auto, machine marked Secure Boot → shimx64.efi', mode: 'boot-server', packet: () => bootServerRequest(...PXE_X64), cfg: { bootLoader: 'auto' }, facts: { secureBoot: true }, reason: 'boot-server-ack', bootfile: 'shim-grub/x86_64/shimx64.efi' },
  { name: 'proxy, arch 7, site auto, not marked → iPXE', mode: 'proxy', packet: () => discover(...PXE_X64), cfg: { bootLoader: 'auto' }, reason: 'proxy-offer', bootfile: 'snponly.efi' },
  { name: 'authoritative, arch 7, shim-grub wanted but not installed → iPXE', mode: 'authoritative', packet: () => discover(...PXE_X64), cfg: { signedChains: {} }, facts: { bootLoader: 'shim-grub' }, reason: 'offer', bootfile: 'snponly.efi' },
  { name: 'authoritative, arch 11 ARM64, no arm64 iPXE → shimaa64.efi', mode: 'authoritative', packet: () => discover(...PXE_ARM64), reason: 'offer', bootfile: 'shim-grub/arm64/shimaa64.efi', siaddr: '10.77.0.1' },
  { name: 'proxy, arch 11 ARM64 → shimaa64.efi', mode: 'proxy', packet: () => discover(...PXE_ARM64), reason: 'proxy-offer', bootfile: 'shim-grub/arm64/shimaa64.efi' },
  { name: 'proxy, arch 11 ARM64 with a site arm64 iPXE, machine ipxe → that iPXE', mode: 'proxy', packet: () => discover(...PXE_ARM64), cfg: { arm64Bootfile: 'arm64-efi/snponly.efi' }, facts: { bootLoader: 'ipxe' }, reason: 'proxy-offer', bootfile: 'arm64-efi/snponly.efi' },
  { name: 'proxy, arch 11 ARM64 with neither → silent', mode: 'proxy', packet: () => discover(...PXE_ARM64), cfg: { signedChains: {} }, reason: 'ignored-no-bootfile' },
];

function bootfileOf(reply: DhcpPacket): string | null {
  return reply.file || getString(reply.options, OPTION.BOOTFILE_NAME) || null;
}

for (const c of CASES) {
  test(c.name, () => {
    const d = decide(c.mode, c.packet(), c.cfg, c.facts);
    assert.is(d.reason, c.reason);
    if (c.bootfile === undefined) return;
    assert.ok(d.reply, 'a reply');
    assert.is(bootfileOf(d.reply), c.bootfile);
    if (c.vendor !== undefined) assert.is(getString(d.reply.options, OPTION.VENDOR_CLASS), c.vendor);
    if (c.siaddr !== undefined) assert.is(d.reply.siaddr, c.siaddr);
    if (c.yiaddr !== undefined) assert.is(d.reply.yiaddr, c.yiaddr);
  });
}

test('an ARM64 client is never handed an x64 binary, whatever the settings', () => {
  for (const bootLoader of ['ipxe', 'shim-grub', 'auto'] as const) {
    for (const signedChains of [{ x86_64: true, arm64: true }, { x86_64: true }, {}]) {
      for (const packet of [discover(...PXE_ARM64), discover(...HTTP_ARM64)]) {
        const info = classify(packet, { ...BOOT, bootLoader, signedChains });
        if (info.bootfile) assert.not.match(info.bootfile.name, /x64|x86_64|^ipxe\.efi$|^snponly\.efi$|\/ipxe\/(ipxe|snponly)\.efi$/, `${bootLoader} ${JSON.stringify(signedChains)}: ${info.bootfile.name}`);
      }
    }
  }
});

test.run();
