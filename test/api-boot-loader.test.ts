import { rmSync } from 'node:fs';
import { suite } from './lib/suite.js';
import * as assert from 'uvu/assert';
import { api, startRacksmith, type RacksmithProcess } from './lib/racksmith.js';

/**
 * A machine's boot loader and Secure Boot through the API: set on create and patch, checked,
 * shown with what racksmith saw (Secure Boot as seen, the last loader served, a stall), and a
 * GRUB config served through the same path as the iPXE script records the loader's Secure Boot.
 */
const test = suite('api: boot loader and Secure Boot per machine');

let rs: RacksmithProcess;
let admin = '';
const MAC = '52:54:00:19:00:01';
const call = (method: string, path: string, body?: unknown) => api(rs.url, admin, method, `/api/v1${path}`, body);

test.before(async () => {
  rs = await startRacksmith({ env: { RACKSMITH_BOOT_LOADER: 'auto' } });
  admin = (await rs.cli(['token', 'create', '--role', 'admin'])).trim();
  assert.is((await call('POST', '/clusters', { name: 'c', ubuntuRelease: '22.04', kubernetesVersion: '1.28.4', containerRuntime: 'containerd', cni: 'flannel' })).status, 201);
});

test.after(async () => {
  await rs?.stop();
  if (rs) rmSync(rs.dataDir, { recursive: true, force: true });
});

test('create with bootLoader and secureBoot; shown as set, nothing seen yet', async () => {
  const r = await call('POST', '/machines', { mac: MAC, hostname: 'sb1', role: 'worker', cluster: 'c', bootLoader: 'shim-grub', secureBoot: true });
  assert.is(r.status, 201, r.text);
  assert.is(r.body.bootLoader, 'shim-grub');
  assert.is(r.body.secureBoot, true);
  assert.is(r.body.secureBootSeen, null);
  assert.equal(r.body.boot, { lastLoader: null, bootfile: null, bootfileAt: null, loaderAt: null, stuck: null });
});

test('bad values are 400 naming the field; null goes back to the site default', async () => {
  const bad = await call('PATCH', `/machines/${MAC}`, { bootLoader: 'pxelinux' });
  assert.is(bad.status, 400);
  assert.match(JSON.stringify(bad.body.error), /bootLoader/);
  assert.is((await call('PATCH', `/machines/${MAC}`, { secureBoot: 'yes' })).status, 400);
  const cleared = await call('PATCH', `/machines/${MAC}`, { bootLoader: null, secureBoot: false });
  assert.is(cleared.status, 200, cleared.text);
  assert.is(cleared.body.bootLoader, null);
  assert.is(cleared.body.secureBoot, false);
  const ev = (await call('GET', `/machines/${MAC}/events`)).body as any[];
  assert.ok(ev.some((e) => e.type === 'machine.updated' && e.data?.changes?.bootLoader?.from === 'shim-grub'), 'the change is in the log');
});

test('a GRUB config fetched over HTTP: its lockdown is Secure Boot as seen, the loader ran', async () => {
  const r = await fetch(`${rs.url}/grub/grub.cfg-01-52-54-00-19-00-01?arch=x86_64&platform=efi&lockdown=y`);
  assert.is(r.status, 200);
  const cfg = await r.text();
  assert.match(cfg, /^linux '\/artifacts\/22\.04\/vmlinuz' /m, 'the install config');
  const m = (await call('GET', `/machines/${MAC}`)).body;
  assert.is(m.secureBootSeen, 'enforced');
  assert.ok(m.boot.loaderAt, 'the loader asked');
  assert.is(m.state, 'provisioning');
  const ev = (await call('GET', `/machines/${MAC}/events`)).body as any[];
  assert.ok(ev.some((e) => e.type === 'boot.grub' && e.data?.script === 'install' && e.data?.lockdown === true));
  // iPXE running on EFI shows Secure Boot off.
  assert.is((await fetch(`${rs.url}/boot.ipxe?mac=52-54-00-19-00-01&arch=x86_64&platform=efi`)).status, 200);
  const seen = (await call('GET', `/machines/${MAC}`)).body;
  assert.is(seen.secureBootSeen, 'off');
  // The four facts the console shows per machine, as the API carries them.
  assert.equal([seen.firmware, seen.arch, seen.bootLoader, seen.secureBootSeen], ['efi', 'x86_64', null, 'off']);
  assert.ok('lastLoader' in seen.boot, 'the loader served is part of the machine JSON');
  assert.is((await fetch(`${rs.url}/grub/grub.cfg`)).status, 200);
  assert.is((await fetch(`${rs.url}/grub/grub.cfg-01-zz`)).status, 404);
});

test('CSV import: boot_loader and secure_boot columns; a bad cell names its row and column', async () => {
  const csv = 'mac,hostname,role,cluster,boot_loader,secure_boot\n52:54:00:19:00:02,w2,worker,c,auto,yes\n52:54:00:19:00:03,w3,worker,c,,\n';
  const r = await api(rs.url, admin, 'POST', '/api/v1/machines/import', csv, 'text/csv');
  assert.is(r.status, 201, r.text);
  const [a, b] = r.body.machines;
  assert.is(a.bootLoader, 'auto');
  assert.is(a.secureBoot, true);
  assert.is(b.bootLoader, null);
  assert.is(b.secureBoot, null);
  const bad = await api(rs.url, admin, 'POST', '/api/v1/machines/import', 'mac,hostname,role,cluster,boot_loader,secure_boot\n52:54:00:19:00:04,w4,worker,c,grub,maybe\n', 'text/csv');
  assert.is(bad.status, 400);
  assert.match(JSON.stringify(bad.body.error), /row 1/);
  assert.match(JSON.stringify(bad.body.error), /boot_loader|secure_boot/);
});

test.run();
