import { test } from '../lib/suite.js';
import * as assert from 'uvu/assert';
import { patchDirectory } from '../../server/dhcp/directory.js';
import type { MachineDirectory, MachineFacts } from '../../server/inventory/store.js';
import type { Mac } from '../../server/lib/mac.js';
import { tempInventory } from '../lib/inventory.js';

/**
 * The machine directory DHCP answers from (server/inventory/sqlite/lookup.ts): one read of every
 * machine's facts and reservations, a revision that moves exactly when who is known or reserved
 * changes, and the MACs of those changes — so the service patches it (server/dhcp/directory.ts)
 * before the next datagram, not up to a second later.
 */
const A = '52:54:00:00:01:0a' as Mac;
const B = '52:54:00:00:01:0b' as Mac;

test('the revision moves on add, readdress and delete, and not on a step; the directory reflects each', async () => {
  const inv = tempInventory();
  try {
    await inv.clusters.create({ name: 'c1', ubuntuRelease: '22.04', kubernetesVersion: '1.30.0', containerRuntime: 'containerd', cni: 'flannel' });
    const empty = inv.lookup.directory();
    assert.is(empty.byMac.size, 0);
    assert.is(empty.revision, inv.lookup.revision());

    await inv.machines.create({ mac: A, hostname: 'n1', role: 'worker', cluster: 'c1', ip: '10.77.0.50' });
    assert.is.not(inv.lookup.revision(), empty.revision, 'a new machine moves the revision');
    const one = inv.lookup.directory();
    assert.equal(one.byMac.get(A), { mac: A, ip: '10.77.0.50', lastStep: null, bootLoader: null, secureBoot: null });
    assert.is(one.byIp.get('10.77.0.50'), A);

    await inv.machines.setLastStep(A, 'tftp');
    assert.is(inv.lookup.revision(), one.revision, "a step is not a change of who is known (it ages out with the directory)");

    await inv.machines.update(A, { ip: '10.77.0.51' }, 'test');
    assert.is.not(inv.lookup.revision(), one.revision, 'a new address moves the revision');
    const moved = inv.lookup.directory();
    assert.is(moved.byIp.get('10.77.0.50'), undefined);
    assert.is(moved.byIp.get('10.77.0.51'), A);
    assert.is(moved.byMac.get(A)?.lastStep, 'tftp');

    const { created } = await inv.machines.recordSighting({ mac: B, arch: 'x64', source: 'dhcp' });
    assert.ok(created);
    assert.is.not(inv.lookup.revision(), moved.revision, "DHCP's own sighting moves it too");
    const seen = inv.lookup.revision();
    await inv.machines.delete(B);
    assert.is.not(inv.lookup.revision(), seen, 'a deletion moves the revision');
    assert.equal([...inv.lookup.directory().byMac.keys()], [A]);

    assert.equal(inv.lookup.changedSince(empty.revision), [A, A, A, B, B], 'added, readdressed (old and new row), sighted, deleted');
    assert.equal(inv.lookup.changedSince(inv.lookup.revision()), []);
    assert.equal(inv.lookup.machine(A), { mac: A, ip: '10.77.0.51', lastStep: 'tftp', bootLoader: null, secureBoot: null });
    assert.is(inv.lookup.machine(B), null);
  } finally {
    await inv.destroy();
  }
});

test('a change log overrun answers null (read the directory whole), never a partial list', async () => {
  const inv = tempInventory();
  try {
    const start = inv.lookup.revision();
    for (let i = 0; i < 1100; i++) await inv.machines.recordSighting({ mac: `02:00:00:00:${((i >> 8) & 255).toString(16).padStart(2, '0')}:${(i & 255).toString(16).padStart(2, '0')}` as Mac, source: 'dhcp' });
    assert.is(inv.lookup.revision(), start + 1100);
    assert.is(inv.lookup.changedSince(start), null);
    assert.is(inv.lookup.changedSince(start + 1100 - 10)?.length, 10);
  } finally {
    await inv.destroy();
  }
});

const facts = (mac: string, ip: string | null): MachineFacts => ({ mac: mac as Mac, ip, lastStep: null, bootLoader: null, secureBoot: null });
const directoryOf = (...machines: MachineFacts[]): MachineDirectory => ({
  byMac: new Map(machines.map((m) => [m.mac, m])),
  byIp: new Map(machines.filter((m) => m.ip !== null).map((m) => [m.ip as string, m.mac])),
  revision: 0,
});

test('patching: two machines that swap addresses end up each with its own, in either order', () => {
  for (const order of [[A, B], [B, A]]) {
    const d = directoryOf(facts(A, '10.0.0.1'), facts(B, '10.0.0.2'));
    const store = new Map([[A, facts(A, '10.0.0.2')], [B, facts(B, '10.0.0.1')]]);
    const patched = patchDirectory(d, order, (mac) => store.get(mac) ?? null, 7);
    assert.equal([...patched.byIp].sort(), [['10.0.0.1', B], ['10.0.0.2', A]], `order ${order.join(' ')}`);
    assert.is(patched.revision, 7);
  }
});

test('patching: a MAC renamed or deleted leaves nothing behind; a new one is added', () => {
  const C = '52:54:00:00:01:0c';
  const d = directoryOf(facts(A, '10.0.0.1'), facts(B, '10.0.0.2'));
  // A's row now carries MAC C (UPDATE OF mac: the old and the new MAC change); B is deleted.
  const store = new Map([[C, facts(C, '10.0.0.1')]]);
  const patched = patchDirectory(d, [A, C, B], (mac) => store.get(mac) ?? null, 3);
  assert.equal([...patched.byMac.keys()], [C]);
  assert.equal([...patched.byIp], [['10.0.0.1', C]]);
});

test.run();
