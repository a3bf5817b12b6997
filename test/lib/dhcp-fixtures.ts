import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { PACKAGE_ROOT } from '../../server/lib/paths.js';

export const DHCP_FIXTURES = join(PACKAGE_ROOT, 'test', 'fixtures', 'dhcp');

/** The captured client datagrams (test/fixtures/dhcp/*.hex), by name, in name order. */
export function dhcpFixtures(): { name: string; bytes: Buffer }[] {
  return readdirSync(DHCP_FIXTURES)
    .filter((f) => f.endsWith('.hex'))
    .sort()
    .map((f) => ({ name: f.slice(0, -4), bytes: Buffer.from(readFileSync(join(DHCP_FIXTURES, f), 'utf8').replace(/\s+/g, ''), 'hex') }));
}

/** A raw request: a BOOTREQUEST header for `mac`, the cookie, then the given option bytes as is. */
export function rawRequest(optionBytes: readonly number[], opts: { mac?: string; file?: Buffer; sname?: Buffer; op?: number; giaddr?: readonly number[]; ciaddr?: readonly number[] } = {}): Buffer {
  const h = Buffer.alloc(240);
  h[0] = opts.op ?? 1;
  h[1] = 1;
  h[2] = 6;
  h.writeUInt32BE(0x12345678, 4);
  if (opts.ciaddr) Buffer.from(opts.ciaddr).copy(h, 12);
  if (opts.giaddr) Buffer.from(opts.giaddr).copy(h, 24);
  Buffer.from((opts.mac ?? '52:54:00:77:00:01').replace(/:/g, ''), 'hex').copy(h, 28);
  opts.sname?.copy(h, 44);
  opts.file?.copy(h, 108);
  h.writeUInt32BE(0x63825363, 236);
  return Buffer.concat([h, Buffer.from(optionBytes)]);
}

export const ascii = (s: string): number[] => [...Buffer.from(s, 'latin1')];
