/**
 * A PXE client in miniature, for proxyDHCP tests without a VM: it broadcasts a DISCOVER with a
 * firmware's PXE options (vendor class PXEClient, arch, UNDI, GUID), collects the offers until
 * both an address offer and a proxy offer are in (or `collectMs` has passed: 8 s), takes the
 * address offer (from the site's DHCP server), REQUESTs it, configures the
 * address, then asks the proxy's boot server on UDP 4011 — what EDK2 does when a proxy offer has
 * no option 43. Runs inside a client namespace whose link has no address but a device route.
 * Usage: node pxe-client.js '{"iface":"…","mac":"…","arch":7}' → prints a JSON result.
 */
import { execFileSync } from 'node:child_process';
import { createSocket, type RemoteInfo } from 'node:dgram';
import { formatDhcp } from '../../server/dhcp/format.js';
import { OPTION, getIp, getMessageType, getString, ipOption, messageTypeOption, stringOption } from '../../server/dhcp/options.js';
import { BROADCAST_FLAG, ZERO_IP, decodeDhcp, encodeDhcp, type DhcpPacket } from '../../server/dhcp/packet.js';
import type { IPv4 } from '../../server/lib/ipv4.js';

interface Args {
  readonly iface: string;
  readonly mac: string;
  readonly arch: number;
  readonly collectMs?: number;
}

const args = JSON.parse(process.argv[2] ?? '{}') as Args;
const xid = Math.floor(Math.random() * 0xffffffff);
const chaddr = Buffer.alloc(16);
Buffer.from(args.mac.replace(/:/g, ''), 'hex').copy(chaddr);
const guid = Buffer.concat([Buffer.from([0]), Buffer.from('3f1c9b0e5d2a4c7e8b6f1a2b3c4d5e6f', 'hex')]);
const vendor = `PXEClient:Arch:${String(args.arch).padStart(5, '0')}:UNDI:003000`;

function request(type: 'discover' | 'request', extra: [number, Buffer][] = [], ciaddr: IPv4 = ZERO_IP): Buffer {
  const options = new Map<number, Buffer>([
    [OPTION.MESSAGE_TYPE, messageTypeOption(type)],
    ...extra,
    [OPTION.PARAMETER_LIST, Buffer.from([1, 3, 6, 43, 54, 60, 66, 67, 97])],
    [OPTION.CLIENT_GUID, guid],
    [OPTION.CLIENT_NDI, Buffer.from([1, 3, 0])],
    [OPTION.CLIENT_ARCH, Buffer.from([args.arch >> 8, args.arch & 255])],
    [OPTION.VENDOR_CLASS, stringOption(vendor)],
  ]);
  const p: DhcpPacket = {
    op: 'BOOTREQUEST', htype: 1, hlen: 6, hops: 0, xid, secs: 0, flags: ciaddr === ZERO_IP ? BROADCAST_FLAG : 0,
    ciaddr, yiaddr: ZERO_IP, siaddr: ZERO_IP, giaddr: ZERO_IP, chaddr, sname: '', file: '', options,
  };
  return encodeDhcp(p);
}

const received: { from: string; packet: DhcpPacket }[] = [];
const sock = createSocket({ type: 'udp4', reuseAddr: true });
sock.on('message', (msg: Buffer, r: RemoteInfo) => {
  try {
    const p = decodeDhcp(msg);
    if (p.xid === xid && p.op === 'BOOTREPLY') received.push({ from: `${r.address}:${r.port}`, packet: p });
  } catch {
    /* not for us */
  }
});
await new Promise<void>((r) => sock.bind(68, () => r()));
sock.setBroadcast(true);
const send = (b: Buffer, port: number, to: string): Promise<void> => new Promise((r, j) => sock.send(b, port, to, (e) => (e ? j(e) : r())));
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
/**
 * Waits until `done` holds or `ms` have passed. Each answer is awaited, not given a fixed time: a
 * server starved of CPU beside other suites may answer late.
 */
async function until(done: () => boolean, ms: number): Promise<void> {
  for (const deadline = Date.now() + ms; !done() && Date.now() < deadline; ) await sleep(20);
}
const offerOf = (o: { packet: DhcpPacket }): boolean => getMessageType(o.packet.options) === 'offer';
const ackOf = (o: { packet: DhcpPacket }): boolean => getMessageType(o.packet.options) === 'ack';
const isProxy = (p: DhcpPacket): boolean => p.yiaddr === ZERO_IP && getString(p.options, OPTION.VENDOR_CLASS) === 'PXEClient';
const summary = (p: DhcpPacket): Record<string, unknown> => ({
  type: getMessageType(p.options),
  yiaddr: p.yiaddr,
  siaddr: p.siaddr,
  file: p.file,
  serverId: getIp(p.options, OPTION.SERVER_ID),
  vendorClass: getString(p.options, OPTION.VENDOR_CLASS),
  hasOption43: p.options.has(OPTION.VENDOR_SPECIFIC),
  guidEchoed: p.options.get(OPTION.CLIENT_GUID)?.equals(guid) ?? false,
  text: formatDhcp(p),
});

const result: Record<string, unknown> = {};
try {
  await send(request('discover'), 67, '255.255.255.255');
  await until(() => received.some((o) => offerOf(o) && o.packet.yiaddr !== ZERO_IP) && received.some((o) => offerOf(o) && isProxy(o.packet)), args.collectMs ?? 8000);
  const offers = received.splice(0).filter(offerOf);
  result['offers'] = offers.map((o) => ({ from: o.from, ...summary(o.packet) }));
  const lease = offers.find((o) => o.packet.yiaddr !== ZERO_IP);
  const proxy = offers.find((o) => isProxy(o.packet));
  if (!lease) throw new Error('no address offer');
  const leaseServer = getIp(lease.packet.options, OPTION.SERVER_ID) as IPv4;
  await send(request('request', [[OPTION.SERVER_ID, ipOption(leaseServer)], [OPTION.REQUESTED_IP, ipOption(lease.packet.yiaddr)]]), 67, '255.255.255.255');
  await until(() => received.some(ackOf), 8000);
  const ack = received.splice(0).find(ackOf);
  if (!ack) throw new Error('no ACK from the DHCP server');
  result['ack'] = { from: ack.from, ...summary(ack.packet) };
  const mask = getIp(ack.packet.options, OPTION.SUBNET_MASK) ?? '255.255.255.0';
  const prefix = mask.split('.').reduce((n, o) => n + (Number(o).toString(2).match(/1/g)?.length ?? 0), 0);
  execFileSync('ip', ['addr', 'add', `${ack.packet.yiaddr}/${prefix}`, 'dev', args.iface]);
  if (proxy) {
    const bootServer = getIp(proxy.packet.options, OPTION.SERVER_ID) as IPv4;
    await send(request('request', [], ack.packet.yiaddr), 4011, bootServer);
    await until(() => received.some(ackOf), 8000);
    const bs = received.splice(0).find(ackOf);
    result['bootServer'] = bs ? { from: bs.from, ...summary(bs.packet) } : null;
  }
} catch (err) {
  result['error'] = (err as Error).message;
} finally {
  sock.close();
}
process.stdout.write(JSON.stringify(result) + '\n');
