import { suite } from '../lib/suite.js';
import * as assert from 'uvu/assert';
import { classify, type BootConfig } from '../../server/dhcp/classify.js';
import { servedInterfaces } from '../../server/dhcp/interfaces.js';
import { decodeDhcp } from '../../server/dhcp/packet.js';
import { SerialQueue } from '../../server/dhcp/queue.js';
import { replyTargets, route, type ServedNetwork } from '../../server/dhcp/targets.js';
import { transaction, type Transaction } from '../../server/dhcp/transaction.js';
import type { IPv4 } from '../../server/lib/ipv4.js';
import { clientRequest } from '../lib/dhcp-loop.js';

/**
 * The loop's small pure parts: which interfaces an answer leaves through and what the server
 * calls itself there (named cases), and the serial queue datagrams wait in.
 */

const BOOT: BootConfig = { advertise: '10.77.0.1', httpPort: 8080, efiBootfile: 'ipxe.efi', arm64Bootfile: null };
const TWO = servedInterfaces(
  {
    rack1: [{ address: '10.77.0.1', netmask: '255.255.255.0', family: 'IPv4', mac: '02:00:00:00:00:01', internal: false, cidr: null }],
    rack2: [{ address: '10.78.0.1', netmask: '255.255.255.0', family: 'IPv4', mac: '02:00:00:00:00:02', internal: false, cidr: null }],
  },
  undefined,
).served;
const [RACK1, RACK2] = TWO;
const net = (mode: ServedNetwork['mode']): ServedNetwork => ({ mode, served: TWO, poolInterface: RACK2 ?? null, advertise: '10.99.0.1' as IPv4 });

function tx(opts: { from?: string; giaddr?: string; ingress?: 'rack1' | null } = {}): Transaction {
  const req = decodeDhcp(clientRequest('discover', '02:00:00:00:00:0a', { giaddr: opts.giaddr ?? null }));
  const from = { address: opts.from ?? '0.0.0.0', port: 68, family: 'IPv4' as const, size: 300 };
  return transaction({ from, via: { kind: 'dhcp', iface: null }, at: 0, hr: 0 }, req, classify(req, BOOT), null, opts.ingress === 'rack1' ? (RACK1 ?? null) : null);
}

const routes = suite('reply routes');

const CASES: { name: string; tx: Transaction; mode: ServedNetwork['mode']; targets: (string | null)[]; serverIds: string[] }[] = [
  { name: 'known ingress: that interface, its address', tx: tx({ ingress: 'rack1' }), mode: 'proxy', targets: ['rack1'], serverIds: ['10.77.0.1'] },
  { name: 'relayed: no interface; the served address toward the relay', tx: tx({ from: '10.78.0.9', giaddr: '10.78.0.9' }), mode: 'authoritative', targets: [null], serverIds: ['10.78.0.1'] },
  { name: 'relayed from an unserved subnet: the advertise address', tx: tx({ from: '192.0.2.7', giaddr: '192.0.2.7' }), mode: 'authoritative', targets: [null], serverIds: ['10.99.0.1'] },
  { name: 'unicast from a configured client: toward its source', tx: tx({ from: '10.77.0.50' }), mode: 'proxy', targets: [null], serverIds: ['10.77.0.1'] },
  { name: 'broadcast of unknown ingress, authoritative: the pool interface only', tx: tx(), mode: 'authoritative', targets: ['rack2'], serverIds: ['10.78.0.1'] },
  { name: 'broadcast of unknown ingress, proxy: every served interface, each its own server id', tx: tx(), mode: 'proxy', targets: ['rack1', 'rack2'], serverIds: ['10.77.0.1', '10.78.0.1'] },
];

for (const c of CASES) {
  routes(c.name, () => {
    const n = net(c.mode);
    const targets = replyTargets(c.tx, n);
    assert.equal(targets.map((t) => t?.name ?? null), c.targets);
    const rs = targets.map((t) => route(t, c.tx, n));
    assert.equal(rs.map((r) => r.serverId), c.serverIds);
    assert.ok(rs.every((r) => r.nextServer === '10.99.0.1'), 'the bootfile is always at the advertise address');
  });
}

const queue = suite('serial queue');

queue('items run in arrival order, one at a time: one that waits holds the ones behind it', async () => {
  const seen: string[] = [];
  let open: () => void = () => undefined;
  const q = new SerialQueue<string>(
    (item) => {
      seen.push(`start ${item}`);
      if (item === 'b') return new Promise<void>((r) => (open = r)).then(() => void seen.push('end b'));
    },
    () => assert.unreachable('nothing fails'),
    10,
  );
  q.push('a');
  q.push('b');
  q.push('c');
  assert.equal(seen, ['start a', 'start b']);
  assert.is(q.waiting, 1);
  open();
  await q.drained();
  assert.equal(seen, ['start a', 'start b', 'end b', 'start c']);
});

queue('a throw or a rejection is reported and the queue goes on; past its bound nothing is queued', async () => {
  const failed: string[] = [];
  const done: string[] = [];
  const q = new SerialQueue<string>(
    (item) => {
      if (item === 'throw') throw new Error(item);
      if (item === 'reject') return Promise.reject(new Error(item));
      done.push(item);
    },
    (err) => failed.push((err as Error).message),
    2,
  );
  q.push('throw');
  assert.ok(q.push('reject'));
  assert.ok(q.push('x'));
  assert.ok(q.push('y'));
  assert.not.ok(q.push('z'), 'two already waiting behind the rejection');
  await q.drained();
  assert.equal([failed, done], [['throw', 'reject'], ['x', 'y']]);
});

routes.run();
queue.run();
