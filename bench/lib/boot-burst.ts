/**
 * Many machines powering on at once on one provisioning network, each going the way a BIOS
 * machine with a PXE ROM goes: DHCP as the ROM (DISCOVER/OFFER/REQUEST/ACK, broadcast, vendor
 * class PXEClient) → TFTP of the bootfile it is named (blksize 1468, as iPXE's and EDK2's
 * clients ask) → DHCP again as the chained iPXE (user class `iPXE`) → its boot script
 * (`/boot.ipxe?mac=…`, the query the chain script builds) → the seed the script names
 * (meta-data, user-data, from the token in the script) → the phone-home of the installed system
 * (cloud-init's form, one ed25519 host key). HTTP and TFTP leave from the machine's leased
 * address, so racksmith's address checks apply as to real machines. The installer's kernel,
 * initrd and ISO are not fetched (the artifacts benchmark measures those bytes).
 *
 * Runs inside the network's client namespace, whose link already holds every machine's reserved
 * address (a host route each) and routes the network and 255.255.255.255 out of it:
 *   node boot-burst.js '{"machines":"/tmp/m.json","server":"10.100.0.1","httpPort":8080,"out":"/tmp/r.jsonl"}'
 * `machines` holds `[{"mac","ip"}]`; one JSON line per machine goes to `out`, a summary to stdout.
 * Retries follow the firmware: DHCP every 4, 8, 16 s (the PXE spec's schedule),
 * HTTP 3 tries 2 s apart (iPXE's chain script and cloud-init retry too); TFTP backs off 1, 2, 4,
 * 8, 8, 8 s (test/lib/pxe-rom-tftp.ts, shared with the TFTP burst test). A machine whose boot
 * fails reboots and starts over from DHCP, twice at most.
 */
import { randomBytes } from 'node:crypto';
import { createSocket } from 'node:dgram';
import { readFileSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { OPTION, getIp, getMessageType, getString, ipOption, messageTypeOption, stringOption } from '../../server/dhcp/options.js';
import { BROADCAST_FLAG, ZERO_IP, decodeDhcp, encodeDhcp, type DhcpPacket } from '../../server/dhcp/packet.js';
import type { IPv4 } from '../../server/lib/ipv4.js';
import { romTftp } from '../../test/lib/pxe-rom-tftp.js';

interface Args {
  readonly machines: string;
  readonly server: string;
  readonly httpPort: number;
  readonly out: string;
  /** Power-on times are spread evenly over this many ms (POST takes longer on some machines). */
  readonly spreadMs?: number;
  /** Skip the TFTP step (then the bootfile is only named, not fetched). */
  readonly skipTftp?: boolean;
  readonly timeoutMs?: number;
}

interface Result {
  mac: string;
  ok: boolean;
  error?: string;
  state?: string;
  /** ms from this machine's power-on to each step's end. */
  dhcp?: number;
  tftp?: number;
  bootfileBytes?: number;
  ipxeDhcp?: number;
  script?: number;
  seed?: number;
  phoneHome?: number;
  retries: number;
  reboots: number;
}

const a = JSON.parse(process.argv[2] ?? '{}') as Args;
const machines = JSON.parse(readFileSync(a.machines, 'utf8')) as { mac: string; ip: string }[];
const started = Date.now();
const deadline = started + (a.timeoutMs ?? 300_000);
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

// ── DHCP: one socket on port 68 for every machine, replies matched by xid ──────────────────────
const dhcp = createSocket({ type: 'udp4', reuseAddr: true, recvBufferSize: 8 * 1024 * 1024 });
const waiting = new Map<number, (p: DhcpPacket) => void>();
dhcp.on('message', (msg) => {
  let p: DhcpPacket;
  try {
    p = decodeDhcp(msg);
  } catch {
    return;
  }
  if (p.op === 'BOOTREPLY') waiting.get(p.xid)?.(p);
});
let xidSeq = randomBytes(4).readUInt32BE(0) & 0x7fffffff;

function dhcpPacket(mac: string, xid: number, type: 'discover' | 'request', ipxe: boolean, offer: DhcpPacket | null): Buffer {
  const chaddr = Buffer.alloc(16);
  Buffer.from(mac.replace(/:/g, ''), 'hex').copy(chaddr);
  const options = new Map<number, Buffer>([[OPTION.MESSAGE_TYPE, messageTypeOption(type)]]);
  if (type === 'request' && offer) {
    options.set(OPTION.SERVER_ID, ipOption(getIp(offer.options, OPTION.SERVER_ID) ?? ZERO_IP));
    options.set(OPTION.REQUESTED_IP, ipOption(offer.yiaddr));
  }
  options.set(OPTION.PARAMETER_LIST, Buffer.from([1, 3, 6, 43, 54, 60, 66, 67, 97, 175]));
  options.set(OPTION.CLIENT_ARCH, Buffer.from([0, 0]));
  options.set(OPTION.CLIENT_NDI, Buffer.from([1, 2, 1]));
  options.set(OPTION.VENDOR_CLASS, stringOption('PXEClient:Arch:00000:UNDI:002001'));
  if (ipxe) options.set(OPTION.USER_CLASS, stringOption('iPXE'));
  return encodeDhcp({
    op: 'BOOTREQUEST', htype: 1, hlen: 6, hops: 0, xid, secs: 0, flags: BROADCAST_FLAG,
    ciaddr: ZERO_IP, yiaddr: ZERO_IP, siaddr: ZERO_IP, giaddr: ZERO_IP, chaddr, sname: '', file: '', options,
  });
}

/** One send and the first reply of `type` for its xid within `ms`, or null. */
function exchange(buf: Buffer, xid: number, type: 'offer' | 'ack', ms: number): Promise<DhcpPacket | null> {
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      waiting.delete(xid);
      resolve(null);
    }, ms);
    waiting.set(xid, (p) => {
      const t = getMessageType(p.options);
      if (t !== type && t !== 'nak') return;
      clearTimeout(timer);
      waiting.delete(xid);
      resolve(p);
    });
    dhcp.send(buf, 67, '255.255.255.255');
  });
}

const DHCP_TIMEOUTS = [4000, 8000, 16_000];

async function dora(r: Result, mac: string, ipxe: boolean): Promise<DhcpPacket> {
  for (let attempt = 0; attempt < DHCP_TIMEOUTS.length * 2; attempt++) {
    const wait = DHCP_TIMEOUTS[Math.min(attempt, DHCP_TIMEOUTS.length - 1)] as number;
    if (attempt > 0) r.retries++;
    const xid = xidSeq++ >>> 0;
    const offer = await exchange(dhcpPacket(mac, xid, 'discover', ipxe, null), xid, 'offer', wait);
    if (!offer || getMessageType(offer.options) !== 'offer') continue;
    const ack = await exchange(dhcpPacket(mac, xid, 'request', ipxe, offer), xid, 'ack', wait);
    if (ack && getMessageType(ack.options) === 'ack') return ack;
    if (Date.now() > deadline) break;
  }
  throw new Error(`${ipxe ? 'iPXE ' : ''}DHCP: no lease`);
}

// ── HTTP from the machine's address, one connection per request (as iPXE and cloud-init) ───────
function http(local: string, method: 'GET' | 'POST', path: string, body?: string): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const req = request(
      { host: a.server, port: a.httpPort, method, path, localAddress: local, agent: false, timeout: 30_000, headers: body === undefined ? {} : { 'content-type': 'application/x-www-form-urlencoded', 'content-length': Buffer.byteLength(body) } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString() }));
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error('timed out')));
    req.on('error', reject);
    req.end(body);
  });
}

async function httpOk(r: Result, local: string, method: 'GET' | 'POST', path: string, body?: string): Promise<string> {
  let last = '';
  for (let attempt = 0; attempt < 3; attempt++) {
    if (attempt > 0) {
      r.retries++;
      await sleep(2000);
    }
    try {
      const res = await http(local, method, path, body);
      if (res.status === 200) return res.text;
      last = `${res.status} ${res.text.slice(0, 200)}`;
      if (res.status < 500) break; // a refusal does not change on a retry
    } catch (err) {
      last = (err as Error).message;
    }
  }
  throw new Error(`${method} ${path.replace(/\/seed\/[^/]+/, '/seed/…')}: ${last}`);
}

function hostKey(): string {
  const type = Buffer.from('ssh-ed25519');
  const blob = Buffer.alloc(4 + type.length + 4 + 32);
  blob.writeUInt32BE(type.length, 0);
  type.copy(blob, 4);
  blob.writeUInt32BE(32, 4 + type.length);
  randomBytes(32).copy(blob, 8 + type.length);
  return `ssh-ed25519 ${blob.toString('base64')} root@bench`;
}

/** A machine whose boot fails reboots and tries again (a PXE ROM's default), twice at most. */
async function boot(m: { mac: string; ip: string }, delay: number): Promise<Result> {
  const r: Result = { mac: m.mac, ok: false, retries: 0, reboots: 0 };
  await sleep(delay);
  const t0 = Date.now();
  for (;;) {
    const error = await bootOnce(r, m, t0);
    if (error === null) return r;
    r.error = error;
    if (r.reboots >= 2 || Date.now() > deadline) return r;
    r.reboots++;
  }
}

async function bootOnce(r: Result, m: { mac: string; ip: string }, t0: number): Promise<string | null> {
  try {
    const ack = await dora(r, m.mac, false);
    r.dhcp = Date.now() - t0;
    if (ack.yiaddr !== m.ip) throw new Error(`DHCP: leased ${ack.yiaddr}, reserved ${m.ip}`);
    const file = ack.file || getString(ack.options, OPTION.BOOTFILE_NAME) || '';
    if (!file) throw new Error('DHCP: the PXE ROM was named no bootfile');
    if (!a.skipTftp) {
      const tftpServer = ack.siaddr !== ZERO_IP ? ack.siaddr : (getIp(ack.options, OPTION.SERVER_ID) as IPv4);
      r.bootfileBytes = (await romTftp(r, m.ip, tftpServer, file)).bytes;
      r.tftp = Date.now() - t0;
    }
    const ipxe = await dora(r, m.mac, true);
    r.ipxeDhcp = Date.now() - t0;
    const url = ipxe.file || getString(ipxe.options, OPTION.BOOTFILE_NAME) || '';
    if (!url.startsWith('http://')) throw new Error(`iPXE DHCP: bootfile ${JSON.stringify(url)} is no HTTP URL`);
    const script = await httpOk(r, m.ip, 'GET', `${new URL(url).pathname}?mac=${m.mac.replace(/:/g, '-')}&arch=i386&platform=pcbios`);
    r.script = Date.now() - t0;
    const token = /\/seed\/([A-Za-z0-9_-]+)\//.exec(script)?.[1];
    if (!token) throw new Error(`boot script names no seed: ${script.split('\n').slice(0, 3).join(' | ')}`);
    await httpOk(r, m.ip, 'GET', `/seed/${token}/meta-data`);
    await httpOk(r, m.ip, 'GET', `/seed/${token}/user-data`);
    r.seed = Date.now() - t0;
    const form = new URLSearchParams({ pub_key_ed25519: hostKey(), instance_id: `iid-${m.mac.replace(/:/g, '')}`, hostname: `h${m.mac.replace(/:/g, '')}`, fqdn: 'N/A' }).toString();
    const reply = JSON.parse(await httpOk(r, m.ip, 'POST', `/seed/${token}/phone-home`, form)) as { state?: string };
    r.phoneHome = Date.now() - t0;
    r.state = reply.state ?? '?';
    r.ok = true;
    delete r.error;
    return null;
  } catch (err) {
    return (err as Error).message;
  }
}

await new Promise<void>((res) => dhcp.bind(68, () => res()));
dhcp.setBroadcast(true);
const spread = a.spreadMs ?? 1000;
const results = await Promise.all(machines.map((m, i) => boot(m, (spread * i) / Math.max(1, machines.length))));
dhcp.close();
writeFileSync(a.out, results.map((r) => JSON.stringify(r)).join('\n') + '\n');
const ok = results.filter((r) => r.ok);
const times = ok.map((r) => r.phoneHome ?? 0).sort((x, y) => x - y);
process.stdout.write(
  JSON.stringify({
    machines: results.length,
    ok: ok.length,
    failed: results.length - ok.length,
    retried: results.filter((r) => r.retries > 0).length,
    rebooted: results.filter((r) => r.reboots > 0).length,
    lastPhoneHomeMs: ok.length ? Date.now() - started : null,
    p50Ms: times[Math.floor((times.length - 1) / 2)] ?? null,
    maxMs: times.at(-1) ?? null,
    firstErrors: results.filter((r) => !r.ok).slice(0, 5).map((r) => `${r.mac}: ${r.error}`),
  }) + '\n',
);
