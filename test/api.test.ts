import { rmSync } from 'node:fs';
import { suite } from './lib/suite.js';
import * as assert from 'uvu/assert';
import { api, startRacksmith, type RacksmithProcess } from './lib/racksmith.js';

/**
 * The foundation's acceptance: the real `racksmith serve` on a temporary data directory and a
 * free port, driven over HTTP only, with the token made by the real CLI.
 */
const test = suite('api: the real server over HTTP');

const BMC_PASSWORD = 'Sup3r-s3cret-BMC';
let rs: RacksmithProcess;
let admin = '';
let viewer = '';
const seen: string[] = [];

async function call(token: string | null, method: string, path: string, body?: unknown, type?: string) {
  const r = await api(rs.url, token, method, `/api/v1${path}`, body, type);
  seen.push(r.text);
  return r;
}

test.before(async () => {
  rs = await startRacksmith();
  admin = (await rs.cli(['token', 'create', '--role', 'admin', '--name', 'test admin'])).trim();
  viewer = (await rs.cli(['token', 'create', '--role', 'viewer'])).trim();
});

test.after(async () => {
  await rs?.stop();
  // After the restart test `rs` is a second process on the first one's directory: remove it here.
  if (rs) rmSync(rs.dataDir, { recursive: true, force: true });
});

test('tokens come from the CLI, look like tokens, and work at once', async () => {
  assert.match(admin, /^rs_[A-Za-z0-9_-]{43}$/);
  const r = await call(admin, 'GET', '/clusters');
  assert.is(r.status, 200);
  assert.equal(r.body, []);
});

test('no token → 401, bad token → 401, both with the error body', async () => {
  const none = await call(null, 'GET', '/machines');
  assert.is(none.status, 401);
  assert.is(none.body.error.code, 'ERR_UNAUTHORIZED');
  const bad = await call('rs_not-a-real-token', 'GET', '/machines');
  assert.is(bad.status, 401);
});

test('create a cluster; defaults filled; duplicate → 409', async () => {
  const body = { name: 'lab', ubuntuRelease: '22.04', kubernetesVersion: '1.28.4', containerRuntime: 'containerd', cni: 'flannel' };
  const r = await call(admin, 'POST', '/clusters', body);
  assert.is(r.status, 201, r.text);
  assert.is(r.body.podSubnet, '10.244.0.0/16');
  assert.is(r.body.state, 'pending');
  const again = await call(admin, 'POST', '/clusters', body);
  assert.is(again.status, 409);
  assert.is(again.body.error.field, 'name');
});

test('docker on Kubernetes ≥ 1.24 is refused, naming containerRuntime', async () => {
  const r = await call(admin, 'POST', '/clusters', { name: 'old', ubuntuRelease: '18.04', kubernetesVersion: '1.28.0', containerRuntime: 'docker', cni: 'weave' });
  assert.is(r.status, 400);
  assert.is(r.body.error.field, 'containerRuntime');
});

const FORMS = [
  ['52:54:00:AA:BB:01', '52:54:00:aa:bb:01'],
  ['52-54-00-aa-bb-02', '52:54:00:aa:bb:02'],
  ['5254.00aa.bb03', '52:54:00:aa:bb:03'],
  ['525400aabb04', '52:54:00:aa:bb:04'],
] as const;

test('machines given their MACs in all four forms come back normalised', async () => {
  for (const [i, [given, canonical]] of FORMS.entries()) {
    const r = await call(admin, 'POST', '/machines', {
      mac: given,
      hostname: `node${i + 1}`,
      role: i === 0 ? 'loadbalancer' : i < 3 ? 'control-plane' : 'worker',
      cluster: 'lab',
      ip: `10.77.0.${11 + i}`,
      rack: 'r1',
      bmc: { driver: 'ipmi', address: `10.77.1.${11 + i}`, username: 'admin', password: BMC_PASSWORD },
    });
    assert.is(r.status, 201, r.text);
    assert.is(r.body.mac, canonical);
    assert.is(r.body.state, 'assigned');
    // Any spelling finds it again.
    const got = await call(viewer, 'GET', `/machines/${encodeURIComponent(given)}`);
    assert.is(got.status, 200);
    assert.is(got.body.mac, canonical);
  }
  const lb = await call(viewer, 'GET', '/clusters/lab');
  assert.is(lb.body.controlPlaneEndpoint, '10.77.0.11:6443');
  assert.is(lb.body.machines.length, 4);
});

test('a cluster VIP: taken by a machine → 409, an explicit endpoint that differs → 400, else the endpoint is vip:6443', async () => {
  const base = { ubuntuRelease: '22.04', kubernetesVersion: '1.30.6', containerRuntime: 'containerd', cni: 'flannel' };
  const taken = await call(admin, 'POST', '/clusters', { name: 'pair-a', ...base, vip: '10.77.0.11' });
  assert.is(taken.status, 409, taken.text);
  assert.is(taken.body.error.code, 'ERR_VIP_TAKEN');
  assert.is(taken.body.error.field, 'vip');
  const clash = await call(admin, 'POST', '/clusters', { name: 'pair-a', ...base, vip: '10.77.0.250', controlPlaneEndpoint: '10.77.0.11:6443' });
  assert.is(clash.status, 400, clash.text);
  const ok = await call(admin, 'POST', '/clusters', { name: 'pair-a', ...base, vip: '10.77.0.250' });
  assert.is(ok.status, 201, ok.text);
  assert.is(ok.body.vip, '10.77.0.250');
  assert.is(ok.body.controlPlaneEndpoint, '10.77.0.250:6443');
  const again = await call(admin, 'POST', '/clusters', { name: 'pair-b', ...base, vip: '10.77.0.250' });
  assert.is(again.status, 409, 'one VIP per cluster');
  assert.is((await call(admin, 'DELETE', '/clusters/pair-a')).status, 204);
});

test('a write without a JSON body → 415 naming content-type', async () => {
  const r = await call(admin, 'POST', '/machines', 'mac=52:54:00:aa:bb:cc', 'application/x-www-form-urlencoded');
  assert.is(r.status, 415, r.text);
  assert.is(r.body.error.field, 'content-type');
  const csv = await call(admin, 'POST', '/machines/import', { mac: 'x' });
  assert.is(csv.status, 415, csv.text);
});

test('a bad MAC → 400 naming the field', async () => {
  const r = await call(admin, 'POST', '/machines', { mac: '52:54:00:zz:00:01', hostname: 'x', role: 'worker', cluster: 'lab' });
  assert.is(r.status, 400);
  assert.is(r.body.error.field, 'mac');
  assert.match(r.body.error.message, /not a MAC/);
  const path = await call(viewer, 'GET', '/machines/not-a-mac');
  assert.is(path.status, 400);
  assert.is(path.body.error.field, 'mac');
});

test('only real MACs: broadcast, multicast and all-zero → 400 naming the field, in the API and the CSV import', async () => {
  for (const mac of ['ff:ff:ff:ff:ff:ff', 'FF-FF-FF-FF-FF-FF', '01:00:5e:00:00:fb', '3333.0000.0001', '00:00:00:00:00:00']) {
    const r = await call(admin, 'POST', '/machines', { mac, hostname: 'ghost', role: 'worker', cluster: 'lab' });
    assert.is(r.status, 400, `${mac}: ${r.text}`);
    assert.is(r.body.error.field, 'mac');
    assert.match(r.body.error.message, /broadcast|multicast|all-zero/);
  }
  const csv = ['hostname,mac,role,cluster', 'g1,52:54:00:dd:00:01,worker,lab', 'g2,01:00:5e:00:00:01,worker,lab'].join('\n');
  const r = await call(admin, 'POST', '/machines/import', csv, 'text/csv');
  assert.is(r.status, 400, r.text);
  assert.match(r.body.error.message, /^row 2, column mac: 01:00:5e:00:00:01: a multicast address/);
  assert.is(r.body.error.field, 'mac');
  assert.is((await call(viewer, 'GET', '/machines/52:54:00:dd:00:01')).status, 404, 'nothing stored');
  const boot = await api(rs.url, null, 'GET', '/boot.ipxe?mac=ff-ff-ff-ff-ff-ff&platform=pcbios');
  assert.is(boot.status, 400, boot.text);
  assert.is(boot.body.error.field, 'mac');
  assert.is((await call(viewer, 'GET', '/machines?state=discovered')).body.filter((m: any) => m.mac === 'ff:ff:ff:ff:ff:ff').length, 0);
});

test('PATCH of bmc merges: fields not sent keep their values; null port or cipher suite goes back to the default', async () => {
  const mac = '52:54:00:aa:bb:02';
  const set = await call(admin, 'PATCH', `/machines/${mac}`, { bmc: { port: 1623, cipherSuite: 3 } });
  assert.is(set.status, 200, set.text);
  assert.equal(set.body.bmc, { driver: 'ipmi', address: '10.77.1.12', port: 1623, username: 'admin', cipherSuite: 3, passwordSet: true, solCapture: null });
  // What the console sends when a user changes only the BMC address.
  const moved = await call(admin, 'PATCH', `/machines/${mac}`, { bmc: { address: '10.77.1.99' } });
  assert.equal(moved.body.bmc, { driver: 'ipmi', address: '10.77.1.99', port: 1623, username: 'admin', cipherSuite: 3, passwordSet: true, solCapture: null });
  const back = await call(admin, 'PATCH', `/machines/${mac}`, { bmc: { port: null, cipherSuite: null } });
  assert.equal(back.body.bmc, { driver: 'ipmi', address: '10.77.1.99', port: 623, username: 'admin', cipherSuite: null, passwordSet: true, solCapture: null });
  // The other protocol's settings: refused on this BMC even when the patch does not name the driver...
  const wrong = await call(admin, 'PATCH', `/machines/${mac}`, { bmc: { systemId: 'System.Embedded.1' } });
  assert.is(wrong.status, 400, wrong.text);
  assert.is(wrong.body.error.field, 'bmc.systemId');
  assert.match(wrong.body.error.message, /a Redfish setting; this BMC uses IPMI/);
  assert.is((await call(admin, 'PATCH', `/machines/${mac}`, { bmc: { cipherSuite: 17, solCapture: true } })).status, 200);
  // ...and dropped when the BMC moves to the other protocol.
  const redfish = await call(admin, 'PATCH', `/machines/${mac}`, { bmc: { driver: 'redfish', address: 'https://10.77.1.99:8443', systemId: '1' } });
  assert.is(redfish.status, 200, redfish.text);
  assert.equal(redfish.body.bmc, { driver: 'redfish', address: 'https://10.77.1.99:8443', port: null, username: 'admin', cipherSuite: null, passwordSet: true, systemId: '1', verifyTls: true, tlsFingerprint: null, solCapture: null });
  const sol = await call(admin, 'PATCH', `/machines/${mac}`, { bmc: { solCapture: true } });
  assert.is(sol.status, 400, sol.text);
  assert.is(sol.body.error.field, 'bmc.solCapture');
  const ipmi = await call(admin, 'PATCH', `/machines/${mac}`, { bmc: { driver: 'ipmi', address: '10.77.1.99' } });
  assert.equal(ipmi.body.bmc, { driver: 'ipmi', address: '10.77.1.99', port: 623, username: 'admin', cipherSuite: null, passwordSet: true, solCapture: null });
  const ev = await call(viewer, 'GET', `/machines/${mac}/events`);
  assert.ok(ev.body.some((e: any) => e.type === 'machine.updated' && /bmc \(address\)/.test(e.message)), 'the event names the BMC fields');
  // A machine without a BMC: a partial one is refused, naming what is missing.
  const bare = await call(admin, 'POST', '/machines', { mac: '52:54:00:aa:bb:77', hostname: 'node77', role: 'worker', cluster: 'lab' });
  assert.is(bare.status, 201, bare.text);
  const partial = await call(admin, 'PATCH', '/machines/52:54:00:aa:bb:77', { bmc: { address: '10.77.1.77', username: 'admin' } });
  assert.is(partial.status, 400, partial.text);
  assert.is(partial.body.error.field, 'bmc.password');
  const noAddress = await call(admin, 'PATCH', '/machines/52:54:00:aa:bb:77', { bmc: { port: 1623 } });
  assert.is(noAddress.body.error.field, 'bmc.address');
  const bad = await call(admin, 'PATCH', `/machines/${mac}`, { bmc: { port: 70000 } });
  assert.is(bad.status, 400);
  assert.is(bad.body.error.field, 'bmc.port');
  assert.is((await call(admin, 'DELETE', '/machines/52:54:00:aa:bb:77')).status, 204);
});

test('CSV import: optional bmc_port and bmc_cipher_suite columns, in any order; a bad one names its row and column', async () => {
  const csv = [
    'bmc_cipher_suite,mac,hostname,role,cluster,bmc_address,bmc_username,bmc_password,bmc_port',
    `3,52:54:00:ee:00:01,e1,worker,lab,10.77.1.71,admin,${BMC_PASSWORD},1623`,
    `,52:54:00:ee:00:02,e2,worker,lab,10.77.1.72,admin,${BMC_PASSWORD},`,
  ].join('\n');
  const bad = await call(admin, 'POST', '/machines/import', csv.replace(',1623', ',16x3'), 'text/csv');
  assert.is(bad.status, 400, bad.text);
  assert.match(bad.body.error.message, /^row 1, column bmc_port: /);
  assert.is(bad.body.error.field, 'bmc_port');
  const tooHigh = await call(admin, 'POST', '/machines/import', csv.replace('3,52', '99,52'), 'text/csv');
  assert.match(tooHigh.body.error.message, /^row 1, column bmc_cipher_suite: /);
  const ok = await call(admin, 'POST', '/machines/import', csv, 'text/csv');
  assert.is(ok.status, 201, ok.text);
  const [e1, e2] = ok.body.machines;
  assert.equal([e1.bmc.port, e1.bmc.cipherSuite], [1623, 3]);
  assert.equal([e2.bmc.port, e2.bmc.cipherSuite], [623, null]);
  for (const m of ['52:54:00:ee:00:01', '52:54:00:ee:00:02']) assert.is((await call(admin, 'DELETE', `/machines/${m}`)).status, 204);
});

test('a duplicate hostname → 409 naming the field; unknown machine → 404', async () => {
  const r = await call(admin, 'POST', '/machines', { mac: '52:54:00:aa:bb:99', hostname: 'node1', role: 'worker', cluster: 'lab' });
  assert.is(r.status, 409);
  assert.is(r.body.error.field, 'hostname');
  const dupIp = await call(admin, 'POST', '/machines', { mac: '52:54:00:aa:bb:98', hostname: 'node98', role: 'worker', cluster: 'lab', ip: '10.77.0.11' });
  assert.is(dupIp.status, 409);
  assert.is(dupIp.body.error.field, 'ip');
  const missing = await call(viewer, 'GET', '/machines/52:54:00:00:00:00');
  assert.is(missing.status, 404);
});

test('a viewer token writing → 403', async () => {
  const r = await call(viewer, 'POST', '/machines', { mac: '52:54:00:aa:bb:97', hostname: 'node97', role: 'worker', cluster: 'lab' });
  assert.is(r.status, 403);
  assert.is(r.body.error.code, 'ERR_FORBIDDEN');
  const del = await call(viewer, 'DELETE', '/machines/52:54:00:aa:bb:01');
  assert.is(del.status, 403);
});

test('filters: cluster, role, state, rack; a bad filter → 400', async () => {
  const workers = await call(viewer, 'GET', '/machines?role=worker');
  assert.equal(workers.body.map((m: any) => m.hostname), ['node4']);
  const rack = await call(viewer, 'GET', '/machines?rack=r1&cluster=lab&state=assigned');
  assert.is(rack.body.length, 4);
  const bad = await call(viewer, 'GET', '/machines?role=chef');
  assert.is(bad.status, 400);
  assert.is(bad.body.error.field, 'query.role');
  const unknown = await call(viewer, 'GET', '/machines?colour=red');
  assert.is(unknown.status, 400);
});

test('CSV import with one bad row → 400 naming row and column, and nothing stored', async () => {
  const csv = [
    'mac,hostname,role,cluster,ip,rack,bmc_address,bmc_username,bmc_password',
    `52:54:00:cc:00:01,w1,worker,lab,10.77.0.31,r2,10.77.1.31,admin,${BMC_PASSWORD}`,
    `52:54:00:cc:00:02,w2,worker,lab,10.77.0.32,r2,10.77.1.32,admin,${BMC_PASSWORD}`,
    `52:54:00:cc:00:03,w3,wizard,lab,10.77.0.33,r2,10.77.1.33,admin,${BMC_PASSWORD}`,
  ].join('\n');
  const r = await call(admin, 'POST', '/machines/import', csv, 'text/csv');
  assert.is(r.status, 400, r.text);
  assert.match(r.body.error.message, /row 3, column role/);
  assert.is(r.body.error.field, 'role');
  const after = await call(viewer, 'GET', '/machines?rack=r2');
  assert.equal(after.body, []);

  // A conflict with the stored inventory is found inside the transaction: still nothing stored.
  const clash = csv.replace('wizard', 'worker').replace('w2,', 'node2,');
  const c = await call(admin, 'POST', '/machines/import', clash, 'text/csv');
  assert.is(c.status, 409, c.text);
  assert.match(c.body.error.message, /row 2, column hostname/);
  assert.equal((await call(viewer, 'GET', '/machines?rack=r2')).body, []);

  const ok = await call(admin, 'POST', '/machines/import', csv.replace('wizard', 'worker'), 'text/csv');
  assert.is(ok.status, 201, ok.text);
  assert.is(ok.body.imported, 3);
});

test('machine events record what happened', async () => {
  const r = await call(viewer, 'GET', '/machines/52:54:00:cc:00:01/events');
  assert.is(r.status, 200);
  assert.ok(r.body.some((e: any) => e.type === 'state' && e.data.to === 'assigned'));
});

test('PATCH changes fields; moving an assigned machine back to discovered clears its role', async () => {
  const r = await call(admin, 'PATCH', '/machines/52:54:00:cc:00:03', { hostname: 'w3b', rack: null });
  assert.is(r.status, 200, r.text);
  assert.is(r.body.hostname, 'w3b');
  assert.is(r.body.rack, null);
  const un = await call(admin, 'PATCH', '/machines/52:54:00:cc:00:03', { role: null, cluster: null });
  assert.is(un.body.state, 'discovered');
  const re = await call(admin, 'PATCH', '/machines/52:54:00:cc:00:03', { role: 'worker', cluster: 'lab' });
  assert.is(re.body.state, 'assigned');
});

test('a cluster with machines cannot be deleted (409)', async () => {
  const r = await call(admin, 'DELETE', '/clusters/lab');
  assert.is(r.status, 409);
});

test('the SSH public key is served as text', async () => {
  const r = await call(viewer, 'GET', '/ssh-key');
  assert.is(r.status, 200);
  assert.match(r.text, /^ssh-ed25519 [A-Za-z0-9+/=]+ racksmith\n$/);
});

test('stop and start again on the same data directory: everything is still there', async () => {
  const before = (await call(viewer, 'GET', '/machines')).body;
  const key = (await call(viewer, 'GET', '/ssh-key')).text;
  assert.is(await rs.stop(), 0);
  const firstOutput = rs.output();
  rs = await startRacksmith({ dataDir: rs.dataDir });
  seen.push(firstOutput);
  const after = (await call(viewer, 'GET', '/machines')).body;
  assert.equal(after, before);
  assert.is((await call(viewer, 'GET', '/ssh-key')).text, key);
  assert.is((await call(admin, 'GET', '/clusters/lab')).status, 200);
});

test('the BMC password is in no response and no log line', async () => {
  const m = await call(admin, 'GET', '/machines/52:54:00:aa:bb:01');
  assert.is(m.body.bmc.passwordSet, true);
  assert.not.ok('password' in m.body.bmc);
  const everything = seen.join('\n') + rs.output();
  assert.ok(everything.length > 1000);
  assert.not.ok(everything.includes(BMC_PASSWORD), 'the BMC password leaked');
});

test('the OpenAPI document is served without a token', async () => {
  const r = await call(null, 'GET', '/openapi.json');
  assert.is(r.status, 200);
  assert.is(r.body.openapi, '3.1.0');
});

test.run();
