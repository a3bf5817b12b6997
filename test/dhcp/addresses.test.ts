import { suite } from '../lib/suite.js';
import * as assert from 'uvu/assert';
import { AddressSpace, RESERVED_SKIP_MS, poolOn, type Pool } from '../../server/dhcp/addresses.js';
import { OFFER_HOLD_MS } from '../../server/dhcp/authoritative.js';
import { classify, type BootConfig } from '../../server/dhcp/classify.js';
import { DIRECTORY_PATCH_MAX, INVENTORY_CACHE_MS, lookupFeed, type MachineFeed } from '../../server/dhcp/directory.js';
import { servedInterfaces } from '../../server/dhcp/interfaces.js';
import { decodeDhcp } from '../../server/dhcp/packet.js';
import { transaction, type Transaction } from '../../server/dhcp/transaction.js';
import type { Route } from '../../server/dhcp/targets.js';
import type { MachineDirectory, MachineFacts } from '../../server/inventory/store.js';
import { parseRange, type IPv4 } from '../../server/lib/ipv4.js';
import type { Mac } from '../../server/lib/mac.js';
import { clientRequest, interfaceTable } from '../lib/dhcp-loop.js';
import { tempInventory } from '../lib/inventory.js';

/**
 * The address space over a fake clock (every call takes the time) and a fake machine feed: what
 * it tells the decision about a request, and what each effect does to it. The lookup feed over
 * the real SQLite inventory: when the directory is patched, read whole, or read again.
 */

const IP = (s: string): IPv4 => s as IPv4;
const T0 = 1_800_000_000_000;
const A = '02:00:00:00:00:0a' as Mac;
const B = '02:00:00:00:00:0b' as Mac;
const BOOT: BootConfig = { advertise: '10.77.0.1', httpPort: 8080, efiBootfile: 'ipxe.efi', arm64Bootfile: null };
const SERVED = servedInterfaces(interfaceTable('pxe0', '10.77.0.1', '255.255.255.0'), 'pxe0').served;
const SETTINGS = { dhcpRange: '10.77.0.100-10.77.0.103', dhcpNetmask: undefined, dhcpRouter: undefined, dhcpDns: undefined, dhcpLeaseSeconds: 600, dhcpCacheThreshold: 0 };
const POOL: Pool = poolOn(parseRange(SETTINGS.dhcpRange) as NonNullable<ReturnType<typeof parseRange>>, SETTINGS, SERVED);
const ROUTE: Route = { target: SERVED[0] ?? null, serverId: IP('10.77.0.1'), nextServer: IP('10.77.0.1') };

/** A feed over fixed machines; counts the times it was told it is behind. */
function fixedFeed(machines: readonly MachineFacts[]): MachineFeed & { invalidated: number; directory: MachineDirectory } {
  const directory: MachineDirectory = {
    byMac: new Map(machines.map((m) => [m.mac, m])),
    byIp: new Map(machines.filter((m) => m.ip !== null).map((m) => [m.ip as string, m.mac])),
    revision: 0,
  };
  return {
    directory,
    invalidated: 0,
    current: () => directory,
    invalidate() {
      this.invalidated++;
    },
  };
}

/** A request from `mac` at time `at`, as the loop would hand it over (broadcast, no relay). */
function tx(space: AddressSpace, type: 'discover' | 'request', mac: Mac, at: number, opts: Parameters<typeof clientRequest>[2] = {}): Transaction {
  const req = decodeDhcp(clientRequest(type, mac, opts));
  const from = { address: '0.0.0.0', port: 68, family: 'IPv4' as const, size: 300 };
  return transaction({ from, via: { kind: 'dhcp', iface: null }, at, hr: 0 }, req, classify(req, BOOT), space.machine(mac, at), SERVED[0] ?? null);
}

const space = suite('address space (fake clock, fake machine feed)');

space('a new client is offered the next free address; a held offer keeps it from the next client until it lapses', () => {
  const s = new AddressSpace(POOL, fixedFeed([]), false);
  const f = s.facts(tx(s, 'discover', A, T0), ROUTE);
  assert.is(f.candidate, '10.77.0.100');
  assert.equal([f.known, f.lease, f.offered, f.reservation], [false, null, null, null]);
  s.apply({ kind: 'hold', ip: IP('10.77.0.100'), mac: A, until: T0 + OFFER_HOLD_MS, range: POOL.range }, T0);
  assert.is(s.facts(tx(s, 'discover', A, T0 + 1), ROUTE).offered, '10.77.0.100');
  assert.is(s.facts(tx(s, 'discover', B, T0 + 1), ROUTE).candidate, '10.77.0.101');
  assert.is(s.facts(tx(s, 'discover', A, T0 + OFFER_HOLD_MS), ROUTE).offered, null, 'the offer lapsed');
  assert.equal(s.facts(tx(s, 'request', B, T0 + 2, { requested: '10.77.0.100' }), ROUTE).requested, { ip: '10.77.0.100', onSubnet: true, inRange: true, holder: 'other', reserved: null });
});

space("on a shared database only the pool's own subnet is loaded: another instance's lease of a MAC is not this pool's", () => {
  const s = new AddressSpace(POOL, fixedFeed([]), false);
  const lease = (ip: string, mac: Mac) => ({ ip, mac, state: 'bound' as const, clientId: null, hostname: null, startsAt: new Date(T0).toISOString(), expiresAt: new Date(T0 + 600_000).toISOString(), updatedAt: new Date(T0).toISOString() });
  s.load([lease('10.77.0.101', A), lease('10.78.0.100', B)]);
  assert.is(s.leaseCount, 1);
  assert.is(s.facts(tx(s, 'discover', A, T0), ROUTE).lease?.ip, '10.77.0.101');
  assert.is(s.facts(tx(s, 'discover', B, T0), ROUTE).lease, null, 'B holds an address on the other network only');
  assert.is(s.facts(tx(s, 'discover', B, T0), ROUTE).candidate, '10.77.0.100');
});

space("the candidate search passes over another machine's reservation, and keeps passing over it for a while", () => {
  const feed = fixedFeed([{ mac: B, ip: '10.77.0.100', lastStep: null, bootLoader: null, secureBoot: null }]);
  const s = new AddressSpace(POOL, feed, false);
  assert.is(s.facts(tx(s, 'discover', A, T0), ROUTE).candidate, '10.77.0.101');
  // The reservation goes away; the address is still skipped until the skip ends.
  feed.directory.byIp.clear();
  assert.is(s.facts(tx(s, 'discover', A, T0 + RESERVED_SKIP_MS - 1), ROUTE).candidate, '10.77.0.101');
  assert.is(s.facts(tx(s, 'discover', A, T0 + RESERVED_SKIP_MS), ROUTE).candidate, '10.77.0.100');
});

space("a known machine's facts: its reservation is its own, another's is someone else's; a relay off the pool's subnet has no pool", () => {
  const s = new AddressSpace(POOL, fixedFeed([{ mac: A, ip: '10.77.0.50', lastStep: null, bootLoader: null, secureBoot: null }, { mac: B, ip: '10.77.0.51', lastStep: 'tftp', bootLoader: null, secureBoot: null }]), false);
  assert.equal(s.machine(B, T0), { mac: B, ip: '10.77.0.51', lastStep: 'tftp', bootLoader: null, secureBoot: null });
  const f = s.facts(tx(s, 'request', A, T0, { requested: '10.77.0.51' }), ROUTE);
  assert.is(f.known, true);
  assert.equal(f.reservation, { ip: '10.77.0.50', onSubnet: true, inRange: false, holder: 'none', reserved: 'self' });
  assert.is(f.requested?.reserved, 'other');
  const relayed = s.facts(tx(s, 'discover', A, T0, { giaddr: '10.99.0.1' }), { ...ROUTE, target: null });
  assert.equal([relayed.pool, relayed.candidate, relayed.reservation], [null, null, null]);
});

space('a binding is mirrored at once, durable after its commit, and replaced by the store rows on resync', () => {
  const feed = fixedFeed([]);
  const s = new AddressSpace(POOL, feed, false);
  s.apply({ kind: 'bind', ip: IP('10.77.0.102'), mac: A, until: T0 + 600_000, clientId: null, hostname: 'a' }, T0);
  const bound = s.facts(tx(s, 'request', A, T0 + 1, { requested: '10.77.0.102' }), ROUTE).lease;
  assert.equal([bound?.ip, bound?.holder, bound?.active, bound?.durable], ['10.77.0.102', 'self', true, false]);
  s.durable('10.77.0.102', A);
  assert.is(s.facts(tx(s, 'request', A, T0 + 2), ROUTE).lease?.durable, true);
  // The store says B holds it (the commit was refused): the book takes the store's word.
  s.resync('10.77.0.102', A, [{ ip: '10.77.0.102', mac: B, state: 'bound', clientId: null, hostname: null, startsAt: new Date(T0).toISOString(), expiresAt: new Date(T0 + 600_000).toISOString(), updatedAt: new Date(T0).toISOString() }, null]);
  assert.is(s.facts(tx(s, 'request', A, T0 + 3), ROUTE).lease, null);
  assert.is(s.facts(tx(s, 'request', A, T0 + 3, { requested: '10.77.0.102' }), ROUTE).requested?.holder, 'other');
  assert.equal([s.leaseCount, s.offerCount], [1, 0]);
  s.reservedElsewhere('10.77.0.103', T0);
  assert.is(feed.invalidated, 1, 'the directory is read again after a refusal it did not foresee');
});

space('release frees the address at once; decline quarantines it until its end', () => {
  const s = new AddressSpace(POOL, fixedFeed([]), false);
  s.apply({ kind: 'bind', ip: IP('10.77.0.100'), mac: A, until: T0 + 600_000, clientId: null, hostname: null }, T0);
  s.apply({ kind: 'release', ip: IP('10.77.0.100'), mac: A }, T0 + 10);
  const released = s.facts(tx(s, 'discover', A, T0 + 11), ROUTE).lease;
  assert.equal([released?.state, released?.holder, released?.active], ['released', 'none', false]);
  s.apply({ kind: 'decline', ip: IP('10.77.0.101'), mac: B, until: T0 + 1000 }, T0 + 12);
  assert.is(s.facts(tx(s, 'request', B, T0 + 13, { requested: '10.77.0.101' }), ROUTE).requested?.holder, 'quarantine');
  assert.is(s.facts(tx(s, 'request', B, T0 + 1000, { requested: '10.77.0.101' }), ROUTE).requested?.holder, 'none');
});

space("a directory that throws for one MAC throws to the caller (the loop counts it as an internal error), for that MAC only", () => {
  const feed = fixedFeed([{ mac: B, ip: null, lastStep: null, bootLoader: null, secureBoot: null }]);
  const broken: MachineFeed = {
    current: (now) => {
      const d = feed.current(now);
      return { ...d, byMac: new (class extends Map<string, MachineFacts> {
        override get(mac: string): MachineFacts | undefined {
          if (mac === A) throw new Error('injected: cannot read');
          return super.get(mac);
        }
      })(d.byMac) };
    },
    invalidate: () => feed.invalidate(),
  };
  const s = new AddressSpace(POOL, broken, false);
  assert.throws(() => s.machine(A, T0), /injected/);
  assert.is(s.machine(B, T0)?.mac, B);
});

const feed = suite('machine directory fed by polling the SQLite lookup (fake clock)');

feed('a new machine is patched in before the next lookup; a last step is seen once the directory ages out or is invalidated', async () => {
  const inv = tempInventory();
  try {
    await inv.clusters.create({ name: 'c1', ubuntuRelease: '22.04', kubernetesVersion: '1.30.0', containerRuntime: 'containerd', cni: 'flannel' });
    const f = lookupFeed(inv.lookup);
    assert.is(f.current(T0).byMac.size, 0);
    await inv.machines.create({ mac: A, hostname: 'n1', role: 'worker', cluster: 'c1', ip: '10.77.0.50' });
    assert.is(f.current(T0).byIp.get('10.77.0.50'), A, 'the same instant: patched in, not a second later');
    await inv.machines.setLastStep(A, 'tftp');
    assert.is(f.current(T0 + INVENTORY_CACHE_MS - 1).byMac.get(A)?.lastStep, null, 'a step is not a change of who is known');
    assert.is(f.current(T0 + INVENTORY_CACHE_MS).byMac.get(A)?.lastStep, 'tftp', 'read whole once a second old');
    await inv.machines.setLastStep(A, 'ipxe');
    f.invalidate();
    assert.is(f.current(T0 + INVENTORY_CACHE_MS + 1).byMac.get(A)?.lastStep, 'ipxe', 'read whole after invalidate');
  } finally {
    await inv.destroy();
  }
});

feed('more changes than a patch takes: read whole', async () => {
  const inv = tempInventory();
  try {
    const f = lookupFeed(inv.lookup);
    const first = f.current(T0);
    for (let i = 0; i <= DIRECTORY_PATCH_MAX; i++) await inv.machines.recordSighting({ mac: `02:00:00:01:${((i >> 8) & 255).toString(16).padStart(2, '0')}:${(i & 255).toString(16).padStart(2, '0')}` as Mac, source: 'dhcp' });
    const after = f.current(T0 + 1);
    assert.is.not(after.byMac, first.byMac, 'a new read, not the old maps patched');
    assert.is(after.byMac.size, DIRECTORY_PATCH_MAX + 1);
    await inv.machines.recordSighting({ mac: A, source: 'dhcp' });
    const patched = f.current(T0 + 2);
    assert.is(patched.byMac, after.byMac, 'one change: patched in place');
    assert.ok(patched.byMac.has(A));
  } finally {
    await inv.destroy();
  }
});

space.run();
feed.run();
