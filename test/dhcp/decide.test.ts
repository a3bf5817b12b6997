import { suite } from '../lib/suite.js';
import * as assert from 'uvu/assert';
import { decideAuthoritative, type AddressFacts, type AuthoritativeFacts } from '../../server/dhcp/authoritative.js';
import { classify, type BootConfig } from '../../server/dhcp/classify.js';
import type { Decision } from '../../server/dhcp/decision.js';
import { OPTION, decodeSubOptions, getIp, getMessageType, getString, getUint32 } from '../../server/dhcp/options.js';
import { decodeDhcp, type DhcpPacket } from '../../server/dhcp/packet.js';
import { decideBootServer, decideProxy, type ProxyFacts } from '../../server/dhcp/proxy.js';
import { destination } from '../../server/dhcp/reply.js';
import type { IPv4 } from '../../server/lib/ipv4.js';
import { ascii, rawRequest } from '../lib/dhcp-fixtures.js';

const IP = (s: string): IPv4 => s as IPv4;
const BOOT: BootConfig = { advertise: '10.77.0.1', httpPort: 8080, efiBootfile: 'ipxe.efi', arm64Bootfile: null };
const BASE: AuthoritativeFacts = {
  now: 1_000_000,
  serverId: IP('10.77.0.1'),
  nextServer: IP('10.77.0.1'),
  pool: { range: { start: IP('10.77.0.100'), end: IP('10.77.0.199') }, network: IP('10.77.0.0'), mask: IP('255.255.255.0'), router: IP('10.77.0.254'), dns: [IP('10.77.0.53')], leaseSeconds: 600, cacheThreshold: 0 },
  ignoreUnknown: false,
  known: false,
  reservation: null,
  lease: null,
  offered: null,
  requested: null,
  candidate: IP('10.77.0.100'),
};
const addr = (ip: string, over: Partial<AddressFacts> = {}): AddressFacts => ({ ip: IP(ip), onSubnet: ip.startsWith('10.77.0.'), inRange: /^10\.77\.0\.1\d\d$/.test(ip), holder: 'none', reserved: null, ...over });
/** A lease row's remaining facts, for cases where reuse is off or beside the point. */
const ROW = { until: 0, clientId: null, hostname: null, durable: true };
const ipBytes = (ip: string): number[] => ip.split('.').map(Number);
const PXE_BIOS = [60, 32, ...ascii('PXEClient:Arch:00000:UNDI:002001'), 93, 2, 0, 0, 97, 17, 0, ...new Array(16).fill(7)];
const PXE_UEFI = [60, 32, ...ascii('PXEClient:Arch:00007:UNDI:003000'), 93, 2, 0, 7];

function msg(type: number, opts: number[] = [], extra: Parameters<typeof rawRequest>[1] = {}): DhcpPacket {
  return decodeDhcp(rawRequest([53, 1, type, ...opts, 255], extra));
}
function auth(p: DhcpPacket, f: Partial<AuthoritativeFacts> = {}): Decision {
  return decideAuthoritative(p, classify(p, BOOT), { ...BASE, ...f });
}
const type = (d: Decision): string | null => (d.reply ? getMessageType(d.reply.options) : null);

interface Case {
  readonly name: string;
  readonly run: () => Decision;
  readonly reason: string;
  readonly yiaddr?: string;
  readonly effect?: string;
}

const A: Case[] = [
  { name: 'DISCOVER, new client: next free pool address, held', run: () => auth(msg(1)), reason: 'offer', yiaddr: '10.77.0.100', effect: 'hold' },
  { name: 'DISCOVER, reserved machine: its own address', run: () => auth(msg(1), { known: true, reservation: addr('10.77.0.50', { reserved: 'self' }) }), reason: 'offer', yiaddr: '10.77.0.50', effect: 'hold' },
  { name: 'DISCOVER, reservation held by another client: a pool address meanwhile', run: () => auth(msg(1), { reservation: addr('10.77.0.50', { holder: 'other', reserved: 'self' }) }), reason: 'offer', yiaddr: '10.77.0.100' },
  { name: 'DISCOVER, client with a lease: same address again', run: () => auth(msg(1), { lease: { ...addr('10.77.0.120', { holder: 'self' }), state: 'bound', active: true, ...ROW } }), reason: 'offer', yiaddr: '10.77.0.120' },
  { name: 'DISCOVER, expired lease now held by another: a new address', run: () => auth(msg(1), { lease: { ...addr('10.77.0.120', { holder: 'other' }), state: 'bound', active: false, ...ROW } }), reason: 'offer', yiaddr: '10.77.0.100' },
  { name: 'DISCOVER asking for a free pool address (option 50): granted', run: () => auth(msg(1, [50, 4, ...ipBytes('10.77.0.150')]), { requested: addr('10.77.0.150') }), reason: 'offer', yiaddr: '10.77.0.150' },
  { name: 'DISCOVER asking for someone else\'s reservation: not granted', run: () => auth(msg(1, [50, 4, ...ipBytes('10.77.0.150')]), { requested: addr('10.77.0.150', { reserved: 'other' }) }), reason: 'offer', yiaddr: '10.77.0.100' },
  { name: 'DISCOVER, pool exhausted: silent', run: () => auth(msg(1), { candidate: null }), reason: 'ignored-pool-exhausted' },
  { name: 'DISCOVER, no pool for the subnet: silent', run: () => auth(msg(1), { pool: null }), reason: 'ignored-no-pool' },
  { name: 'DISCOVER, unknown MAC with ignore-unknown: silent', run: () => auth(msg(1), { ignoreUnknown: true }), reason: 'ignored-unknown-mac' },
  { name: 'DISCOVER, known MAC with ignore-unknown: answered', run: () => auth(msg(1), { ignoreUnknown: true, known: true }), reason: 'offer' },
  { name: 'BOOTP (no option 53): silent', run: () => auth(decodeDhcp(rawRequest([255]))), reason: 'ignored-bootp' },
  { name: 'a BOOTREPLY seen on the wire: silent', run: () => auth(msg(2, [], { op: 2 })), reason: 'ignored-bootreply' },
  { name: 'SELECTING our offer: ACK and bind', run: () => auth(msg(3, [54, 4, ...ipBytes('10.77.0.1'), 50, 4, ...ipBytes('10.77.0.100')]), { offered: IP('10.77.0.100'), requested: addr('10.77.0.100', { holder: 'self' }) }), reason: 'ack', yiaddr: '10.77.0.100', effect: 'bind' },
  { name: 'SELECTING after our restart (offer forgotten), address still free: ACK', run: () => auth(msg(3, [54, 4, ...ipBytes('10.77.0.1'), 50, 4, ...ipBytes('10.77.0.130')]), { requested: addr('10.77.0.130') }), reason: 'ack', yiaddr: '10.77.0.130' },
  { name: 'SELECTING an address taken meanwhile: NAK', run: () => auth(msg(3, [54, 4, ...ipBytes('10.77.0.1'), 50, 4, ...ipBytes('10.77.0.130')]), { requested: addr('10.77.0.130', { holder: 'other' }) }), reason: 'nak-taken' },
  { name: 'SELECTING another server: silent, our offer released', run: () => auth(msg(3, [54, 4, ...ipBytes('10.77.0.9'), 50, 4, ...ipBytes('10.77.0.100')]), { offered: IP('10.77.0.100'), requested: addr('10.77.0.100', { holder: 'self' }) }), reason: 'ignored-other-server', effect: 'unhold' },
  { name: 'INIT-REBOOT, no record of the client: silent (§4.3.2)', run: () => auth(msg(3, [50, 4, ...ipBytes('10.77.0.140')]), { requested: addr('10.77.0.140') }), reason: 'ignored-no-record' },
  { name: 'INIT-REBOOT with its own lease: ACK', run: () => auth(msg(3, [50, 4, ...ipBytes('10.77.0.140')]), { requested: addr('10.77.0.140', { holder: 'self' }), lease: { ...addr('10.77.0.140', { holder: 'self' }), state: 'bound', active: true, ...ROW } }), reason: 'ack', yiaddr: '10.77.0.140', effect: 'bind' },
  { name: 'INIT-REBOOT for another address than its lease: NAK', run: () => auth(msg(3, [50, 4, ...ipBytes('10.77.0.141')]), { requested: addr('10.77.0.141'), lease: { ...addr('10.77.0.140', { holder: 'self' }), state: 'bound', active: true, ...ROW } }), reason: 'nak-wrong-address' },
  { name: 'INIT-REBOOT for a foreign network: NAK', run: () => auth(msg(3, [50, 4, ...ipBytes('10.99.0.5')]), { requested: addr('10.99.0.5') }), reason: 'nak-wrong-network' },
  { name: 'RENEWING (ciaddr): ACK, unicast to ciaddr', run: () => auth(msg(3, [], { ciaddr: ipBytes('10.77.0.140') }), { requested: addr('10.77.0.140', { holder: 'self' }), lease: { ...addr('10.77.0.140', { holder: 'self' }), state: 'bound', active: true, ...ROW } }), reason: 'ack', yiaddr: '10.77.0.140', effect: 'bind' },
  { name: 'RENEWING an address held by another: NAK', run: () => auth(msg(3, [], { ciaddr: ipBytes('10.77.0.140') }), { requested: addr('10.77.0.140', { holder: 'other' }) }), reason: 'nak-taken' },
  { name: 'RENEWING while reserved elsewhere: NAK (back to INIT, to the reservation)', run: () => auth(msg(3, [], { ciaddr: ipBytes('10.77.0.140') }), { requested: addr('10.77.0.140', { holder: 'self' }), reservation: addr('10.77.0.50', { reserved: 'self' }) }), reason: 'nak-wrong-address' },
  { name: 'RELEASE of its lease', run: () => auth(msg(7, [], { ciaddr: ipBytes('10.77.0.140') }), { lease: { ...addr('10.77.0.140', { holder: 'self' }), state: 'bound', active: true, ...ROW } }), reason: 'released', effect: 'release' },
  { name: 'RELEASE of an address it does not hold: ignored', run: () => auth(msg(7, [], { ciaddr: ipBytes('10.77.0.141') }), { lease: { ...addr('10.77.0.140', { holder: 'self' }), state: 'bound', active: true, ...ROW } }), reason: 'ignored-not-holder' },
  { name: 'DECLINE: the address is quarantined', run: () => auth(msg(4, [50, 4, ...ipBytes('10.77.0.140')]), { lease: { ...addr('10.77.0.140', { holder: 'self' }), state: 'bound', active: true, ...ROW } }), reason: 'declined', effect: 'decline' },
  { name: 'INFORM: ACK without lease', run: () => auth(msg(8, [], { ciaddr: ipBytes('10.77.0.20') })), reason: 'ack-inform', yiaddr: '0.0.0.0' },
];

const a = suite('dhcp authoritative decisions');
for (const c of A) {
  a(c.name, () => {
    const d = c.run();
    assert.is(d.reason, c.reason);
    if (c.yiaddr) assert.is(d.reply?.yiaddr, c.yiaddr);
    if (c.effect) assert.is(d.effect?.kind, c.effect);
    if (c.reason.startsWith('nak')) assert.is(type(d), 'nak');
    if (c.reason.startsWith('ignored') || c.reason === 'released' || c.reason === 'declined') assert.is(d.reply, null);
  });
}

a('only a new pool address moves the next-fit cursor (a returning client\'s old one does not)', () => {
  const rangeOf = (d: Decision): unknown => (d.effect?.kind === 'hold' ? d.effect.range : 'no hold');
  assert.equal(rangeOf(auth(msg(1))), BASE.pool?.range, 'a new client takes the candidate and moves the cursor');
  const lease = { ...addr('10.77.0.120', { holder: 'self' as const }), state: 'bound' as const, active: true, ...ROW };
  assert.is(rangeOf(auth(msg(1), { lease })), null, 'its lease again');
  assert.is(rangeOf(auth(msg(1), { offered: IP('10.77.0.130') })), null, 'its held offer again');
  assert.is(rangeOf(auth(msg(1, [50, 4, ...ipBytes('10.77.0.150')]), { requested: addr('10.77.0.150') })), null, 'the address it asked for');
  assert.is(rangeOf(auth(msg(1), { known: true, reservation: addr('10.77.0.50', { reserved: 'self' }) })), null, 'its reservation');
});

a('a young lease is reused as it stands (no write), with what it has left; an older or changed one is bound again', () => {
  const pool = { ...(BASE.pool as NonNullable<AuthoritativeFacts['pool']>), cacheThreshold: 0.25 };
  const select = msg(3, [54, 4, ...ipBytes('10.77.0.1'), 50, 4, ...ipBytes('10.77.0.120')]);
  const renew = msg(3, [], { ciaddr: ipBytes('10.77.0.120') });
  const lease = (leftSeconds: number, over: Partial<{ clientId: string | null; hostname: string | null; durable: boolean }> = {}) => ({
    ...addr('10.77.0.120', { holder: 'self' }),
    state: 'bound' as const,
    active: true,
    until: BASE.now + leftSeconds * 1000,
    clientId: null,
    hostname: null,
    durable: true,
    ...over,
  });
  const facts = (leftSeconds: number, over: Partial<AuthoritativeFacts> = {}, row = {}): Partial<AuthoritativeFacts> => ({
    pool,
    offered: IP('10.77.0.120'),
    requested: addr('10.77.0.120', { holder: 'self' }),
    lease: lease(leftSeconds, row),
    ...over,
  });
  const times = (d: Decision): number[] => [OPTION.LEASE_TIME, OPTION.RENEWAL_TIME, OPTION.REBINDING_TIME].map((c) => (d.reply ? (getUint32(d.reply.options, c) ?? -1) : -1));

  // 590 of 600 s left: younger than a quarter of a lease.
  const reused = auth(select, facts(590.5));
  assert.is(reused.reason, 'ack-reused');
  assert.is(type(reused), 'ack');
  assert.is(reused.reply?.yiaddr, '10.77.0.120');
  assert.equal(times(reused), [590, 295, 516], 'the time left, T1 and T2 at 0.5 and 0.875 of it');
  assert.is(reused.effect?.kind, 'unhold', 'nothing to bind; the offer it answered is dropped');
  assert.is(auth(renew, facts(590, { offered: null })).effect, null, 'a renewal with no offer: no effect at all');
  assert.equal(times(auth(msg(1), facts(590, { offered: null }))), [590, 295, 516], 'its OFFER already says what the ACK will');

  const bound = (d: Decision, why: string): void => {
    assert.is(d.reason, 'ack', why);
    assert.is(d.effect?.kind, 'bind', why);
    assert.equal(times(d), [600, 300, 525], why);
  };
  bound(auth(select, facts(450)), 'a quarter of the lease gone: bound anew');
  bound(auth(select, facts(700)), 'more left than one lease time (the setting was lowered): bound anew');
  bound(auth(select, facts(590, { pool: { ...pool, cacheThreshold: 0 } })), 'cache threshold 0: every ACK is written');
  bound(auth(select, facts(590, {}, { hostname: 'old-name' })), 'the host name changed');
  bound(auth(select, facts(590, {}, { clientId: '01aabbcc' })), 'the client id changed');
  bound(auth(select, { ...facts(590), lease: { ...lease(590), state: 'released', active: false } }), 'a released lease');
  bound(auth(select, facts(590, {}, { durable: false })), 'a binding whose commit has not finished (a retransmitted REQUEST): it waits for the commit');
});

a('OFFER carries mask before router, DNS, lease with T1/T2 (§4.4.5), server id', () => {
  const d = auth(msg(1));
  const o = d.reply?.options;
  assert.ok(o);
  assert.is(getIp(o, OPTION.SERVER_ID), '10.77.0.1');
  assert.is(getUint32(o, OPTION.LEASE_TIME), 600);
  assert.is(getUint32(o, OPTION.RENEWAL_TIME), 300);
  assert.is(getUint32(o, OPTION.REBINDING_TIME), 525);
  const keys = [...o.keys()];
  assert.ok(keys.indexOf(1) < keys.indexOf(3));
  assert.is(keys[0], 53);
});

a('option 82 from a relay is echoed, last (RFC 3046 §2.2)', () => {
  const d = auth(msg(1, [82, 6, 1, 4, 1, 2, 3, 4], { giaddr: ipBytes('10.77.0.2') }));
  const keys = [...(d.reply?.options.keys() ?? [])];
  assert.is(keys[keys.length - 1], 82);
});

a('iPXE gets boot.ipxe and 175.176 = 1 (no ProxyDHCP wait)', () => {
  const d = auth(msg(1, [...PXE_BIOS, 77, 4, ...ascii('iPXE')]));
  assert.is(d.reply?.file, 'http://10.77.0.1:8080/boot.ipxe');
  assert.equal([...decodeSubOptions(d.reply?.options.get(175) ?? Buffer.alloc(0))], [[176, Buffer.from([1])]]);
});

const dest = suite('dhcp reply destination (RFC 2131 §4.1)');
dest('relayed → giaddr:67', () => {
  const req = msg(1, [], { giaddr: ipBytes('10.77.5.1') });
  assert.equal(destination(req, auth(req).reply as DhcpPacket, 67), { address: '10.77.5.1', port: 67, broadcast: false, why: 'relay' });
});
dest('NAK without relay → broadcast', () => {
  const req = msg(3, [50, 4, ...ipBytes('10.99.0.5')], { ciaddr: ipBytes('10.99.0.5') });
  assert.is(destination(req, auth(req, { requested: addr('10.99.0.5') }).reply as DhcpPacket, 67).why, 'nak-broadcast');
});
dest('ciaddr set → unicast to ciaddr:68', () => {
  const req = msg(3, [], { ciaddr: ipBytes('10.77.0.140') });
  const d = auth(req, { requested: addr('10.77.0.140', { holder: 'self' }), lease: { ...addr('10.77.0.140', { holder: 'self' }), state: 'bound', active: true, ...ROW } });
  assert.equal(destination(req, d.reply as DhcpPacket, 67), { address: '10.77.0.140', port: 68, broadcast: false, why: 'ciaddr' });
});
dest('broadcast flag → broadcast; otherwise broadcast too (no ARP injection from Node)', () => {
  const withFlag = decodeDhcp(Object.assign(rawRequest([53, 1, 1, 255]), {}).fill(0x80, 10, 11));
  assert.is(destination(withFlag, auth(withFlag).reply as DhcpPacket, 67).why, 'broadcast-flag');
  const plain = msg(1);
  assert.is(destination(plain, auth(plain).reply as DhcpPacket, 67).why, 'broadcast');
});

const P: ProxyFacts = { serverId: IP('10.77.0.1'), nextServer: IP('10.77.0.1'), ignoreUnknown: false, known: false };
const proxy = (p: DhcpPacket, f: Partial<ProxyFacts> = {}): Decision => decideProxy(p, classify(p, BOOT), { ...P, ...f });
const bootServer = (p: DhcpPacket): Decision => decideBootServer(p, classify(p, BOOT), P);
const pr = suite('dhcp proxy decisions');

pr('non-PXE DISCOVER: silent (the site server answers)', () => assert.is(proxy(msg(1)).reason, 'ignored-not-pxe'));
pr('BIOS PXE DISCOVER: OFFER without address, PXEClient, GUID echoed, 43.6 = 8, TFTP bootfile', () => {
  const d = proxy(msg(1, PXE_BIOS));
  const r = d.reply as DhcpPacket;
  assert.is(d.reason, 'proxy-offer');
  assert.is(r.yiaddr, '0.0.0.0');
  assert.is(r.siaddr, '10.77.0.1');
  assert.is(r.file, 'undionly.kpxe');
  assert.is(getString(r.options, OPTION.VENDOR_CLASS), 'PXEClient');
  assert.is(r.options.get(97)?.length, 17);
  assert.equal([...decodeSubOptions(r.options.get(43) as Buffer)], [[6, Buffer.from([8])]]);
  assert.is(r.options.has(OPTION.LEASE_TIME), false);
});
pr('UEFI PXE DISCOVER: no option 43, so firmware that ignores proxy offers asks on 4011', () => {
  const r = proxy(msg(1, PXE_UEFI)).reply as DhcpPacket;
  assert.is(r.file, 'ipxe.efi');
  assert.is(r.options.has(43), false);
});
pr('REQUEST on port 67: not ours to answer in proxy mode', () => assert.is(proxy(msg(3, PXE_UEFI)).reason, 'ignored-not-discover'));
pr('unknown MAC with ignore-unknown: silent', () => assert.is(proxy(msg(1, PXE_BIOS), { ignoreUnknown: true }).reason, 'ignored-unknown-mac'));
pr('a PXE client with no binary here: silent', () => assert.is(proxy(msg(1, [60, 9, ...ascii('PXEClient'), 93, 2, 0, 10])).reason, 'ignored-no-bootfile'));
pr('port 4011 REQUEST: ACK with the bootfile, boot item echoed', () => {
  const req = msg(3, [...PXE_UEFI, 43, 7, 71, 4, 0x80, 0, 0, 0, 255], { ciaddr: ipBytes('10.77.0.66') });
  const d = bootServer(req);
  const r = d.reply as DhcpPacket;
  assert.is(d.reason, 'boot-server-ack');
  assert.is(getMessageType(r.options), 'ack');
  assert.is(r.file, 'ipxe.efi');
  assert.is(r.ciaddr, '10.77.0.66');
  assert.equal([...decodeSubOptions(r.options.get(43) as Buffer)], [[71, Buffer.from([0x80, 0, 0, 0])]]);
});

a.run();
dest.run();
pr.run();
