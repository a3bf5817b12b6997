import { suite } from '../lib/suite.js';
import * as assert from 'uvu/assert';
import { lookupFeed, type MachineFeed } from '../../server/dhcp/directory.js';
import { OPTION, getIp } from '../../server/dhcp/options.js';
import type { Mac } from '../../server/lib/mac.js';
import { clientRequest, startInProcess, type InProcessDhcp } from '../lib/dhcp-loop.js';
import { faultyInventory } from '../lib/dhcp-faults.js';
import { ascii } from '../lib/dhcp-fixtures.js';
import { tempInventory } from '../lib/inventory.js';

/**
 * The DHCP loop in-process (recording sockets, the real SQLite store behind fault wrappers): the
 * faults that test/dhcp/faults.test.ts drives through a namespace and a child process, here
 * datagram by datagram, plus the ordering rules of the loop — an ACK leaves only once its
 * binding is committed, a stop sends the ACKs still waiting, a refused binding is withheld.
 */

const SERVER = '10.77.0.1';
const CLIENT = { address: '0.0.0.0', port: 68 };
const mac = (i: number): string => `02:00:00:00:00:${i.toString(16).padStart(2, '0')}`;
const dropped = (d: InProcessDhcp, reason: string): number => d.service.counters().dropped[reason] ?? 0;

/**
 * A DISCOVER; the address offered, or null. A client the inventory does not know is answered
 * synchronously, from datagram to reply.
 */
function offerFor(d: InProcessDhcp, m: string, xid: number): string | null {
  const before = d.sockets.to(m).length;
  d.sockets.deliver(clientRequest('discover', m, { xid }), CLIENT);
  const offer = d.sockets.to(m).slice(before).find((s) => s.type === 'offer');
  return offer ? offer.packet.yiaddr : null;
}

const faults = suite('DHCP loop in-process: faults behind the loop');

faults('an inventory that throws for one MAC and a store that refuses a commit: counted, withheld, everyone else served', async () => {
  const inv = tempInventory();
  const FAULTY = mac(3);
  const COUNT = 12;
  const d = await startInProcess({ inventory: faultyInventory(inv, { lookupMac: FAULTY, bindFails: 1 }) });
  try {
    const offers = new Map<string, string>();
    for (let i = 0; i < COUNT; i++) {
      const ip = offerFor(d, mac(i), 0x100 + i);
      if (ip) offers.set(mac(i), ip);
    }
    assert.is(offers.size, COUNT - 1, 'every client but the faulty one got an offer');
    assert.not.ok(offers.has(FAULTY));
    assert.is(dropped(d, 'internal-error'), 1, 'the faulty DISCOVER is an internal error, not bad input');

    const request = (m: string, ip: string, xid: number): void => d.sockets.deliver(clientRequest('request', m, { xid, serverId: SERVER, requested: ip }), CLIENT);
    let xid = 0x200;
    for (const [m, ip] of offers) request(m, ip, xid++);
    await d.until('the refused commit', () => dropped(d, 'store-error') === 1);
    assert.is(d.sockets.sent.filter((s) => s.type === 'ack').length, 0, 'no ACK left for the failed commit');
    assert.is(d.service.health().detail?.['leases'], 0, 'the book forgot the bindings the store did not take');
    assert.is((await inv.leases.list()).length, 0);

    // The clients retry (as they do after a few seconds) and are bound; the faulty one still fails.
    for (const [m, ip] of offers) request(m, ip, xid++);
    await d.until('the retried ACKs', () => d.sockets.sent.filter((s) => s.type === 'ack').length === COUNT - 1);
    assert.is(offerFor(d, FAULTY, 0x300), null);
    assert.is(dropped(d, 'internal-error'), 2, 'every DISCOVER of the faulty MAC is an internal error');
    assert.is(dropped(d, 'store-error'), 1);

    const acks = d.sockets.sent.filter((s) => s.type === 'ack');
    assert.is(new Set(acks.map((a) => a.packet.yiaddr)).size, COUNT - 1, 'no address acknowledged twice');
    const rows = await inv.leases.list();
    assert.is(rows.length, COUNT - 1);
    for (const [m, ip] of offers) assert.ok(rows.some((r) => r.mac === m && r.ip === ip && r.state === 'bound'), `${m} → ${ip} is not in the store`);
  } finally {
    await d.service.stop();
    await inv.destroy();
  }
});

faults('an ACK leaves only once its binding is committed; a stop sends the ACKs still waiting', async () => {
  const inv = tempInventory();
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  let commits = 0;
  const d = await startInProcess({
    inventory: faultyInventory(inv, {
      async bindAll(bindings, now) {
        commits++;
        await gate;
        return inv.leases.bindAll(bindings, now);
      },
    }),
  });
  try {
    const ip = offerFor(d, mac(1), 1);
    assert.ok(ip);
    d.sockets.deliver(clientRequest('request', mac(1), { xid: 2, serverId: SERVER, requested: ip }), CLIENT);
    await d.until('the commit to start', () => commits === 1);
    assert.is(d.sockets.to(mac(1)).filter((s) => s.type === 'ack').length, 0, 'the ACK went out before its commit finished');
    const stopped = d.service.stop();
    release();
    await stopped;
    assert.is(d.sockets.to(mac(1)).filter((s) => s.type === 'ack').length, 1, 'the stop sent the committed ACK');
    assert.is((await inv.leases.byMac(mac(1) as Mac))?.ip, ip);
  } finally {
    await d.service.stop();
    await inv.destroy();
  }
});

faults("a binding the store refuses as another machine's reservation: withheld, the directory read again, the address passed over", async () => {
  const inv = tempInventory();
  await inv.clusters.create({ name: 'c1', ubuntuRelease: '22.04', kubernetesVersion: '1.30.0', containerRuntime: 'containerd', cni: 'flannel' });
  // A directory that has not yet seen the reservation (written from outside this racksmith).
  const feed = lookupFeed(inv.lookup);
  let blind = true;
  let invalidated = 0;
  const directory: MachineFeed = {
    current: (now) => (blind ? { byMac: new Map(), byIp: new Map(), revision: -1 } : feed.current(now)),
    invalidate: () => {
      invalidated++;
      blind = false;
      feed.invalidate();
    },
  };
  const d = await startInProcess({ inventory: faultyInventory(inv, {}), directory });
  try {
    await inv.machines.create({ mac: mac(9) as Mac, hostname: 'n9', role: 'worker', cluster: 'c1', ip: '10.77.0.100' });
    const ip = offerFor(d, mac(1), 1);
    assert.is(ip, '10.77.0.100', "the stale directory offers the reservation's address");
    d.sockets.deliver(clientRequest('request', mac(1), { xid: 2, serverId: SERVER, requested: '10.77.0.100' }), CLIENT);
    await d.until('the refusal', () => dropped(d, 'bind-refused') === 1);
    assert.is(d.sockets.to(mac(1)).filter((s) => s.type === 'ack').length, 0);
    assert.is(invalidated, 1);
    assert.is(offerFor(d, mac(1), 3), '10.77.0.101', 'the reserved address is passed over');
    assert.is((await inv.leases.list()).length, 0);
  } finally {
    await d.service.stop();
    await inv.destroy();
  }
});

const loop = suite('DHCP loop in-process: datagrams');

loop('malformed datagrams are counted by the decoder code; the loop serves the next one', async () => {
  const inv = tempInventory();
  const d = await startInProcess({ inventory: inv });
  try {
    d.sockets.deliver(Buffer.from('abc'), CLIENT);
    const truncated = clientRequest('discover', mac(1)).subarray(0, 200);
    d.sockets.deliver(truncated, CLIENT);
    assert.is(dropped(d, 'ERR_DHCP_SHORT'), 2);
    assert.is(offerFor(d, mac(1), 1), '10.77.0.100');
    assert.is(d.service.counters().received, 3);
  } finally {
    await d.service.stop();
    await inv.destroy();
  }
});

loop("a PXE client's first DISCOVER: a discovered machine before the offer, its steps as events", async () => {
  const inv = tempInventory();
  const d = await startInProcess({ inventory: inv });
  try {
    const pxe = new Map<number, Buffer>([
      [OPTION.VENDOR_CLASS, Buffer.from(ascii('PXEClient:Arch:00000:UNDI:002001'))],
      [OPTION.CLIENT_ARCH, Buffer.from([0, 0])],
    ]);
    d.sockets.deliver(clientRequest('discover', mac(5), { xid: 7, options: pxe }), CLIENT);
    await d.until('the offer', () => d.sockets.to(mac(5)).length === 1);
    const offer = d.sockets.to(mac(5))[0];
    assert.is(offer?.type, 'offer');
    assert.is(offer?.packet.file, 'undionly.kpxe');
    assert.is(getIp(offer?.packet.options ?? new Map(), OPTION.SERVER_ID), SERVER);
    assert.is((await inv.machines.get(mac(5) as Mac))?.state, 'discovered');
    const types = async (): Promise<string[]> => (await inv.events.list({ mac: mac(5) as Mac })).map((e) => e.type);
    await d.until('the offer event', async () => (await types()).includes('dhcp.offer'));
    assert.ok((await types()).includes('dhcp.discover'));
    assert.is((await inv.machines.get(mac(5) as Mac))?.lastStep, 'dhcp');
  } finally {
    await d.service.stop();
    await inv.destroy();
  }
});

loop("a known machine is answered while its steps are still being committed; they land in order, one commit at a time", async () => {
  const inv = tempInventory();
  await inv.clusters.create({ name: 'c1', ubuntuRelease: '22.04', kubernetesVersion: '1.30.0', containerRuntime: 'containerd', cni: 'flannel' });
  const created = await inv.machines.create({ mac: mac(6) as Mac, hostname: 'n6', role: 'worker', cluster: 'c1' });
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  let running = 0;
  let most = 0;
  const d = await startInProcess({
    inventory: {
      ...faultyInventory(inv, {}),
      machines: {
        recordSighting: (s) => inv.machines.recordSighting(s),
        async recordBootScripts(steps) {
          most = Math.max(most, ++running);
          await gate;
          try {
            return await inv.machines.recordBootScripts(steps);
          } finally {
            running--;
          }
        },
      },
    },
  });
  try {
    const pxe = new Map<number, Buffer>([
      [OPTION.VENDOR_CLASS, Buffer.from(ascii('PXEClient:Arch:00000:UNDI:002001'))],
      [OPTION.CLIENT_ARCH, Buffer.from([0, 0])],
    ]);
    d.sockets.deliver(clientRequest('discover', mac(6), { xid: 8, options: pxe }), CLIENT);
    const offer = d.sockets.to(mac(6))[0];
    assert.is(offer?.type, 'offer', 'the offer left at once, with the store still busy');
    d.sockets.deliver(clientRequest('request', mac(6), { xid: 8, serverId: SERVER, requested: offer?.packet.yiaddr ?? '', options: pxe }), CLIENT);
    await d.until('the ACK', () => d.sockets.to(mac(6)).some((s) => s.type === 'ack'));
    assert.is((await inv.events.list({ mac: mac(6) as Mac })).filter((e) => e.type.startsWith('dhcp.')).length, 0, 'nothing committed yet');
    release();
    const types = async (): Promise<string[]> => (await inv.events.list({ mac: mac(6) as Mac })).map((e) => e.type).filter((t) => t.startsWith('dhcp.'));
    await d.until('the four steps', async () => (await types()).length === 4);
    assert.equal(await types(), ['dhcp.discover', 'dhcp.offer', 'dhcp.request', 'dhcp.ack'], 'in the order of the exchange');
    assert.is(most, 1, 'one commit at a time');
    const m = await inv.machines.get(mac(6) as Mac);
    assert.is(m?.lastStep, 'dhcp');
    assert.is(m?.firmware, 'bios', 'the first contact\'s facts were recorded with its step');
    assert.is(m?.state, created.state);
    assert.is(m?.hostname, 'n6', 'a known machine is not rediscovered');
  } finally {
    release();
    await d.service.stop();
    await inv.destroy();
  }
});

faults.run();
loop.run();
