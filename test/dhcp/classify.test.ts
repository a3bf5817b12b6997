import { suite } from '../lib/suite.js';
import * as assert from 'uvu/assert';
import { classify, type BootConfig } from '../../server/dhcp/classify.js';
import { decodeDhcp } from '../../server/dhcp/packet.js';
import { ascii, rawRequest } from '../lib/dhcp-fixtures.js';

const CFG: BootConfig = { advertise: '10.77.0.1', httpPort: 8080, efiBootfile: 'ipxe.efi', arm64Bootfile: null };
const vc = (s: string): number[] => [60, s.length, ...ascii(s)];
const arch = (n: number): number[] => [93, 2, n >> 8, n & 255];
const discover = (...opts: number[][]): Buffer => rawRequest([53, 1, 1, ...opts.flat(), 255]);

interface Row {
  readonly name: string;
  readonly packet: Buffer;
  readonly cfg?: Partial<BootConfig>;
  readonly chainloaded?: boolean;
  readonly want: { arch: string | null; firmware: string | null; ipxe?: boolean; bootfile: string | null };
}

const PXE = (n: number): string => `PXEClient:Arch:${String(n).padStart(5, '0')}:UNDI:002001`;

/** The classification and bootfile table, row by row (issue 3, domain facts §8). */
const ROWS: Row[] = [
  { name: 'arch 0: BIOS PXE → undionly.kpxe', packet: discover(vc(PXE(0)), arch(0)), want: { arch: 'i386', firmware: 'bios', bootfile: 'undionly.kpxe' } },
  { name: 'PXEClient without option 93 is BIOS', packet: discover(vc('PXEClient')), want: { arch: 'i386', firmware: 'bios', bootfile: 'undionly.kpxe' } },
  { name: 'arch 6: IA32 UEFI has no binary here', packet: discover(vc(PXE(6)), arch(6)), want: { arch: 'i386', firmware: 'efi', bootfile: null } },
  { name: 'arch 7: x64 UEFI → ipxe.efi', packet: discover(vc(PXE(7)), arch(7)), want: { arch: 'x86_64', firmware: 'efi', bootfile: 'ipxe.efi' } },
  { name: 'arch 9 (erratum 4624: x64 in the wild) → ipxe.efi', packet: discover(vc(PXE(9)), arch(9)), want: { arch: 'x86_64', firmware: 'efi', bootfile: 'ipxe.efi' } },
  { name: 'arch 7 with efiBootfile snponly.efi', packet: discover(vc(PXE(7)), arch(7)), cfg: { efiBootfile: 'snponly.efi' }, want: { arch: 'x86_64', firmware: 'efi', bootfile: 'snponly.efi' } },
  { name: 'arch 10: ARM32 UEFI has no binary', packet: discover(vc(PXE(10)), arch(10)), want: { arch: 'arm32', firmware: 'efi', bootfile: null } },
  { name: 'arch 11: ARM64 without a binary installed', packet: discover(vc(PXE(11)), arch(11)), want: { arch: 'arm64', firmware: 'efi', bootfile: null } },
  { name: 'arch 11: ARM64 with one', packet: discover(vc(PXE(11)), arch(11)), cfg: { arm64Bootfile: 'arm64-efi/snponly.efi' }, want: { arch: 'arm64', firmware: 'efi', bootfile: 'arm64-efi/snponly.efi' } },
  { name: 'arch 16: x64 UEFI HTTP → URL of the EFI binary', packet: discover(vc('HTTPClient:Arch:00016:UNDI:003001'), arch(16)), want: { arch: 'x86_64', firmware: 'efi', bootfile: 'http://10.77.0.1:8080/ipxe/ipxe.efi' } },
  { name: 'HTTPClient vendor class alone', packet: discover(vc('HTTPClient'), arch(7)), want: { arch: 'x86_64', firmware: 'efi', bootfile: 'http://10.77.0.1:8080/ipxe/ipxe.efi' } },
  { name: 'arch 19: ARM64 HTTP with a binary', packet: discover(vc('HTTPClient'), arch(19)), cfg: { arm64Bootfile: 'ipxe-arm64.efi' }, want: { arch: 'arm64', firmware: 'efi', bootfile: 'http://10.77.0.1:8080/ipxe/ipxe-arm64.efi' } },
  { name: 'iPXE by user class → boot.ipxe', packet: discover(vc(PXE(0)), arch(0), [77, 4, ...ascii('iPXE')]), want: { arch: 'i386', firmware: 'bios', ipxe: true, bootfile: 'http://10.77.0.1:8080/boot.ipxe' } },
  { name: 'iPXE by option 175 alone → boot.ipxe', packet: discover(vc(PXE(7)), arch(7), [175, 3, 177, 1, 1]), want: { arch: 'x86_64', firmware: 'efi', ipxe: true, bootfile: 'http://10.77.0.1:8080/boot.ipxe' } },
  { name: 'iPXE with a changed user class, still 175', packet: discover(vc(PXE(0)), [77, 3, ...ascii('foo')], [175, 3, 177, 1, 1]), want: { arch: 'i386', firmware: 'bios', ipxe: true, bootfile: 'http://10.77.0.1:8080/boot.ipxe' } },
  { name: 'BIOS PXE options from a MAC that just fetched undionly.kpxe → chained iPXE', packet: discover(vc(PXE(0)), arch(0)), chainloaded: true, want: { arch: 'i386', firmware: 'bios', bootfile: 'http://10.77.0.1:8080/boot.ipxe' } },
  { name: 'the chainload fact does not apply to UEFI firmware', packet: discover(vc(PXE(7)), arch(7)), chainloaded: true, want: { arch: 'x86_64', firmware: 'efi', bootfile: 'ipxe.efi' } },
  { name: 'a plain client gets no bootfile', packet: discover([12, 4, ...ascii('host')]), want: { arch: null, firmware: null, bootfile: null } },
  { name: 'unknown arch 42 with PXEClient: no binary', packet: discover(vc(PXE(42)), arch(42)), want: { arch: null, firmware: null, bootfile: null } },
];

const table = suite('dhcp classification and bootfile table');
for (const row of ROWS) {
  table(row.name, () => {
    const info = classify(decodeDhcp(row.packet), { ...CFG, ...row.cfg }, { chainloaded: row.chainloaded ?? false });
    assert.is(info.arch, row.want.arch);
    assert.is(info.firmware, row.want.firmware);
    if (row.want.ipxe !== undefined) assert.is(info.ipxe, row.want.ipxe);
    assert.is(info.bootfile?.name ?? null, row.want.bootfile);
  });
}
table.run();
