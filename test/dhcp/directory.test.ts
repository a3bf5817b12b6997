import { test } from 'uvu';
import * as assert from 'uvu/assert';
import type { Mac } from '../../server/lib/mac.js';
import { tempInventory } from '../lib/inventory.js';

/**
 * The machine directory DHCP answers from (server/inventory/sqlite/lookup.ts): one read of every
 * machine's facts and reservations, and a revision that moves exactly when who is known or
 * reserved changes — so the service re-reads it before the next datagram, not up to a second later.
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
    assert.equal(one.byMac.get(A), { mac: A, ip: '10.77.0.50', lastStep: null });
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
  } finally {
    await inv.destroy();
  }
});

test.run();
