import type { Server } from 'node:http';
import { suite } from './lib/suite.js';
import * as assert from 'uvu/assert';
import { createApp } from '../server/http/app.js';
import { silentLogger } from '../server/lib/log.js';
import type { ServiceHealth } from '../server/lib/service.js';
import { tempInventory } from './lib/inventory.js';

/**
 * /healthz is what a readiness check (compose, systemd, a load balancer, our own tests) waits
 * on: 200 only once every service has started and none has failed.
 */
const test = suite('healthz');

test('starting, then ok, then failing: 503, 200, 503 with each service state', async () => {
  const inv = tempInventory();
  let starting = true;
  const services: Record<string, ServiceHealth> = { http: { state: 'serving' }, dhcp: { state: 'starting' } };
  const app = createApp({ log: silentLogger(), version: 'test', health: () => services, starting: () => starting, inventory: inv, revision: inv.revision, sshPublicKey: async () => 'ssh-ed25519 AAAA test' });
  const server = await new Promise<Server>((resolve) => {
    const s = app.listen(0, '127.0.0.1', () => resolve(s));
  });
  const a = server.address();
  const url = `http://127.0.0.1:${typeof a === 'object' && a ? a.port : 0}/healthz`;
  const get = async (): Promise<{ status: number; body: { status: string; services: Record<string, ServiceHealth> } }> => {
    const res = await fetch(url);
    return { status: res.status, body: (await res.json()) as { status: string; services: Record<string, ServiceHealth> } };
  };
  try {
    const early = await get();
    assert.is(early.status, 503);
    assert.is(early.body.status, 'starting');
    assert.is(early.body.services['dhcp']?.state, 'starting');

    starting = false;
    services['dhcp'] = { state: 'serving' };
    const up = await get();
    assert.is(up.status, 200);
    assert.is(up.body.status, 'ok');

    services['dhcp'] = { state: 'failed' };
    const down = await get();
    assert.is(down.status, 503);
    assert.is(down.body.status, 'failing');
  } finally {
    await new Promise((r) => server.close(r));
    await inv.destroy();
  }
});

test.run();
