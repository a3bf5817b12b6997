import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from '../lib/suite.js';
import * as assert from 'uvu/assert';
import { decideAuthoritative, type AuthoritativeFacts } from '../../server/dhcp/authoritative.js';
import { classify, type BootConfig } from '../../server/dhcp/classify.js';
import { formatDhcp } from '../../server/dhcp/format.js';
import { decodeDhcp, encodeDhcp } from '../../server/dhcp/packet.js';
import { decideBootServer, decideProxy } from '../../server/dhcp/proxy.js';
import type { IPv4 } from '../../server/lib/ipv4.js';
import { DHCP_FIXTURES, dhcpFixtures } from '../lib/dhcp-fixtures.js';

/**
 * Each captured client datagram, decoded into stable text, with what racksmith makes of it:
 * the classification, and the reply each mode would send (decoded too). Compared with
 * test/fixtures/dhcp/<name>.txt; UPDATE_GOLDEN=1 rewrites them (and nothing else does).
 */
const UPDATE = process.env['UPDATE_GOLDEN'] === '1';
const IP = (s: string): IPv4 => s as IPv4;
const BOOT: BootConfig = { advertise: '10.77.0.1', httpPort: 8080, efiBootfile: 'ipxe.efi', arm64Bootfile: null };
const FACTS: AuthoritativeFacts = {
  now: Date.UTC(2026, 0, 1),
  serverId: IP('10.77.0.1'),
  nextServer: IP('10.77.0.1'),
  pool: { range: { start: IP('10.77.0.100'), end: IP('10.77.0.199') }, network: IP('10.77.0.0'), mask: IP('255.255.255.0'), router: IP('10.77.0.1'), dns: [IP('10.77.0.53')], leaseSeconds: 3600, cacheThreshold: 0.25 },
  ignoreUnknown: false,
  known: true,
  reservation: null,
  lease: null,
  offered: null,
  requested: null,
  candidate: IP('10.77.0.100'),
};

function render(bytes: Buffer): string {
  const req = decodeDhcp(bytes);
  const info = classify(req, BOOT);
  const requested = info.messageType === 'request' ? { ...FACTS, offered: IP('10.77.0.104'), requested: { ip: IP('10.77.0.104'), onSubnet: true, inRange: true, holder: 'self' as const, reserved: null } } : FACTS;
  const out = [`# request (${bytes.length} bytes)`, formatDhcp(req).trimEnd()];
  const { mac, archCode, arch, firmware, pxe, httpBoot, ipxe, vendorClass, userClasses, bootfile } = info;
  out.push('# classification', JSON.stringify({ mac, archCode, arch, firmware, pxe, httpBoot, ipxe, vendorClass, userClasses, bootfile }));
  const decisions = [
    ['authoritative', decideAuthoritative(req, info, requested)],
    ['proxy (port 67)', decideProxy(req, info, FACTS)],
    ['proxy (port 4011)', decideBootServer(req, info, FACTS)],
  ] as const;
  for (const [mode, d] of decisions) {
    out.push(`# ${mode}: ${d.reason}${d.effect ? ` (${d.effect.kind})` : ''}`);
    if (d.reply) {
      const wire = encodeDhcp(d.reply);
      out.push(`# reply (${wire.length} bytes)`, formatDhcp(decodeDhcp(wire)).trimEnd());
    }
  }
  return out.join('\n') + '\n';
}

for (const f of dhcpFixtures()) {
  test(`golden: ${f.name}`, () => {
    const file = join(DHCP_FIXTURES, `${f.name}.txt`);
    const text = render(f.bytes);
    if (UPDATE) writeFileSync(file, text);
    assert.ok(existsSync(file), `${file} is missing: run with UPDATE_GOLDEN=1 once and review it`);
    assert.fixture(text, readFileSync(file, 'utf8'));
  });
}

test.run();
