import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { suite } from './lib/suite.js';
import * as assert from 'uvu/assert';
import { parse as parseYaml } from 'yaml';
import { rawRequest } from './lib/http.js';
import { api, startRacksmith, type RacksmithProcess } from './lib/racksmith.js';

/**
 * Image deployment and the new cluster and machine fields over the real `racksmith serve`, the
 * way the deploy agent and an admin drive them, each machine from its own loopback address: the
 * agent's boot script, deploy.env naming the image and its SHA-256, the image and the agent
 * served from the artifacts directory, the agent's events (the disk it picked lands on the
 * machine; a FAIL fails it), and what the API accepts and refuses for os, installMethod,
 * installDiskRule and installDisk.
 */
const test = suite('image deployment over HTTP: boot script, deploy.env, image, events; os and installDisk in the API');

let rs: RacksmithProcess;
let admin = '';
const work = mkdtempSync(join(tmpdir(), 'racksmith-imagehttp-'));
const ARTIFACTS = join(work, 'artifacts');
const IMAGE = Buffer.concat([Buffer.from([0x28, 0xb5, 0x2f, 0xfd]), Buffer.alloc(50_000, 7)]);
const IMAGE_SHA = createHash('sha256').update(IMAGE).digest('hex');
const M1 = { mac: '52:54:00:77:05:01', ip: '127.0.0.21' };
const M2 = { mac: '52:54:00:77:05:02', ip: '127.0.0.22' };
const M3 = { mac: '52:54:00:77:05:03', ip: '127.0.0.23' };

const get = async (path: string, from: string) => {
  const r = await rawRequest(`${rs.url}${path}`, { localAddress: from });
  return { status: r.status, body: r.text(), raw: r.body };
};
const post = async (path: string, body: unknown, from: string) => {
  const r = await rawRequest(`${rs.url}${path}`, { method: 'POST', body: JSON.stringify(body), headers: { 'content-type': 'application/json' }, localAddress: from });
  return { status: r.status, body: r.text() };
};
const call = (method: string, path: string, body?: unknown) => api(rs.url, admin, method, `/api/v1${path}`, body);

test.before(async () => {
  mkdirSync(join(ARTIFACTS, 'agent'), { recursive: true });
  mkdirSync(join(ARTIFACTS, 'images'), { recursive: true });
  writeFileSync(join(ARTIFACTS, 'agent', 'vmlinuz'), 'agent kernel');
  writeFileSync(join(ARTIFACTS, 'agent', 'initrd.img'), 'agent initrd');
  writeFileSync(join(ARTIFACTS, 'images', 'site.img.zst'), IMAGE);
  rs = await startRacksmith({ env: { RACKSMITH_ARTIFACTS_DIR: ARTIFACTS, RACKSMITH_INSTALLER_KERNEL_ARGS: 'console=ttyS0,115200', RACKSMITH_APT_PROXY: 'http://10.0.0.2:3142' } });
  admin = (await rs.cli(['token', 'create', '--role', 'admin'])).trim();
});
test.after(async () => {
  await rs?.stop();
  rs?.cleanup();
  rmSync(work, { recursive: true, force: true });
});

test('clusters: os, or ubuntuRelease as before; install methods that fit the OS; responses carry both names', async () => {
  const base = { kubernetesVersion: '1.28.4', containerRuntime: 'containerd', cni: 'flannel' };
  const legacy = await call('POST', '/clusters', { ...base, name: 'old', ubuntuRelease: '22.04' });
  assert.is(legacy.status, 201, legacy.text);
  assert.equal([legacy.body.os, legacy.body.ubuntuRelease, legacy.body.installMethod, legacy.body.installDiskRule], ['ubuntu-22.04', '22.04', 'autoinstall', 'smallest']);
  const deb = await call('POST', '/clusters', { ...base, name: 'deb', os: 'debian-12' });
  assert.equal([deb.status, deb.body.ubuntuRelease, deb.body.installMethod], [201, null, 'preseed']);
  const refusals: [Record<string, unknown>, RegExp][] = [
    [{ os: 'debian-12', installMethod: 'autoinstall' }, /Debian 12 has no subiquity autoinstall/],
    [{ os: 'ubuntu-18.04', installMethod: 'autoinstall' }, /subiquity autoinstall starts with Ubuntu 20\.04/],
    [{ os: 'ubuntu-24.04', installMethod: 'preseed' }, /Ubuntu 24\.04 has no debian-installer/],
    [{ os: 'ubuntu-22.04', ubuntuRelease: '20.04' }, /contradicts os/],
    [{}, /give the cluster's os/],
    [{ os: 'debian-12', installMethod: 'image', imageSha256: 'a'.repeat(64) }, /imageSha256 pins the cluster's imageUrl/],
    [{ os: 'debian-12', installMethod: 'image', imageUrl: 'file:///etc/passwd' }, /imageUrl/],
    [{ os: 'debian-11' }, /os/],
    [{ os: 'debian-12', installDiskRule: 'random' }, /installDiskRule/],
  ];
  for (const [body, why] of refusals) {
    const r = await call('POST', '/clusters', { ...base, name: 'bad', ...body });
    assert.is(r.status, 400, `${JSON.stringify(body)}: ${r.text}`);
    assert.match(r.text, why);
  }
  // PATCH: a new OS takes its own installer; a method that does not fit is refused.
  assert.equal((await call('PATCH', '/clusters/deb', { os: 'ubuntu-24.04' })).body.installMethod, 'autoinstall');
  const bad = await call('PATCH', '/clusters/deb', { installMethod: 'preseed' });
  assert.equal([bad.status, bad.body.error.field], [400, 'installMethod']);
  const img = await call('PATCH', '/clusters/deb', { os: 'debian-12', installMethod: 'image', imageUrl: 'site.img.zst', installDiskRule: 'largest' });
  assert.equal([img.body.os, img.body.installMethod, img.body.imageUrl, img.body.installDiskRule], ['debian-12', 'image', 'site.img.zst', 'largest']);
  assert.is((await call('PATCH', '/clusters/deb', { os: 'ubuntu-22.04' })).body.installMethod, 'image', 'an image cluster stays one');
});

test('machines: installDisk in its three forms; anything else refused', async () => {
  await call('POST', '/clusters', { name: 'img', os: 'debian-12', installMethod: 'image', imageUrl: 'site.img.zst', kubernetesVersion: '1.28.4', containerRuntime: 'containerd', cni: 'flannel' });
  for (const [m, disk] of [[M1, 'serial:NVME0001'], [M2, null], [M3, '/dev/disk/by-id/nvme-QEMU_NVMe_Ctrl_NVME0003']] as const) {
    const r = await call('POST', '/machines', { mac: m.mac, hostname: `h${m.mac.slice(-1)}`, role: 'worker', cluster: 'img', ip: m.ip, ...(disk ? { installDisk: disk } : {}) });
    assert.is(r.status, 201, r.text);
    assert.is(r.body.installDisk, disk);
    assert.is(r.body.installedDisk, null);
  }
  for (const bad of ['sda', '/dev/sda;reboot', 'serial:', '/dev/disk/by-path/pci-0000:00:1f.2-ata-1']) {
    const r = await call('PATCH', `/machines/${M2.mac}`, { installDisk: bad });
    assert.equal([r.status, r.body.error.field], [400, 'installDisk'], bad);
  }
  assert.is((await call('PATCH', `/machines/${M2.mac}`, { installDisk: '/dev/sdb' })).body.installDisk, '/dev/sdb');
  assert.is((await call('PATCH', `/machines/${M2.mac}`, { installDisk: null })).body.installDisk, null);
});

test('the deploy agent boots, reads deploy.env, fetches its image, reports its disk, installs', async () => {
  const script = await get(`/boot.ipxe?mac=${M1.mac}&platform=pcbios`, M1.ip);
  assert.is(script.status, 200, script.body);
  assert.match(script.body, /# racksmith: install Debian 12 \(deploy-agent\)/);
  assert.match(script.body, new RegExp(`kernel --name kernel http://127\\.0\\.0\\.1:\\d+/artifacts/agent/vmlinuz\\?mac=52-54-00-77-05-01 initrd=initrd\\.img racksmith\\.seed=http://127\\.0\\.0\\.1:\\d+/seed/[A-Za-z0-9_-]+/ racksmith\\.mac=52:54:00:77:05:01 quiet console=ttyS0,115200`));
  const seed = /racksmith\.seed=http:\/\/[^/]+(\/seed\/[A-Za-z0-9_-]+\/)/.exec(script.body)?.[1] ?? '';
  assert.is((await get(`/artifacts/agent/initrd.img?mac=52-54-00-77-05-01`, M1.ip)).body, 'agent initrd');

  const env = await get(`${seed}deploy.env`, M1.ip);
  assert.is(env.status, 200, env.body);
  const kv = Object.fromEntries(env.body.split('\n').filter((l) => l && !l.startsWith('#')).map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
  assert.match(kv['IMAGE_URL'] ?? '', /^http:\/\/127\.0\.0\.1:\d+\/artifacts\/images\/site\.img\.zst\?mac=52-54-00-77-05-01$/);
  assert.equal([kv['IMAGE_SHA256'], kv['IMAGE_FORMAT'], kv['DISK_RULE'], kv['DISK_MIN_BYTES'], kv['INSTALL_DISK']], [IMAGE_SHA, 'zst', 'smallest', '8000000000', 'serial:NVME0001']);
  const img = await rawRequest(kv['IMAGE_URL'] ?? '', { localAddress: M1.ip });
  assert.ok(Buffer.compare(img.body, IMAGE) === 0, 'the image as it is in the artifacts directory');
  const cfg = parseYaml((await get(`${seed}cloud.cfg`, M1.ip)).body) as Record<string, any>;
  assert.equal(cfg['datasource_list'], ['NoCloud', 'None']);
  const role = parseYaml((await get(`${seed}user-data`, M1.ip)).body) as Record<string, any>;
  assert.equal(role['apt'].proxy, 'http://10.0.0.2:3142');
  assert.is((await get(`${seed}preseed.cfg`, M1.ip)).status, 404, 'no preseed for an image install');

  const disk = { name: 'nvme0n1', kind: 'nvme', sizeBytes: 6_442_450_944, serial: 'NVME0001', model: 'QEMU NVMe Ctrl', chosenBy: 'serial:NVME0001' };
  const ev = await post(`${seed}events`, { event_type: 'finish', origin: 'racksmith-agent', name: 'racksmith-agent/disk', result: 'SUCCESS', description: '/dev/nvme0n1', disk }, M1.ip);
  assert.is(ev.status, 200, ev.body);
  const m = (await call('GET', `/machines/${M1.mac}`)).body;
  assert.equal({ ...m.installedDisk, reportedAt: undefined }, { ...disk, path: '/dev/nvme0n1', reportedAt: undefined });
  // A bad disk report is refused and changes nothing.
  const bad = await post(`${seed}events`, { event_type: 'finish', name: 'racksmith-agent/disk', disk: { name: '../sda', sizeBytes: 1 } }, M1.ip);
  assert.equal([bad.status, JSON.parse(bad.body).error.field], [400, 'disk.name']);
  assert.is((await call('GET', `/machines/${M1.mac}`)).body.installedDisk.name, 'nvme0n1');
  assert.is((await rawRequest(`${rs.url}${seed}installed`, { method: 'POST', body: 'source=racksmith-agent', headers: { 'content-type': 'application/x-www-form-urlencoded' }, localAddress: M1.ip })).status, 200);
  assert.is((await call('GET', `/machines/${M1.mac}`)).body.state, 'installed');
});

test('an agent FAIL fails the machine with its step and reason; an image racksmith cannot find fails it at deploy.env', async () => {
  const script = await get(`/boot.ipxe?mac=${M2.mac}&platform=efi`, M2.ip);
  const seed = /racksmith\.seed=http:\/\/[^/]+(\/seed\/[A-Za-z0-9_-]+\/)/.exec(script.body)?.[1] ?? '';
  await post(`${seed}events`, { event_type: 'finish', origin: 'racksmith-agent', name: 'racksmith-agent/disk', result: 'FAIL', description: 'no disk matched the rule smallest (at least 8.0 GB, not removable, not USB): vda 2.1 GB, smaller than 8.0 GB' }, M2.ip);
  const m = (await call('GET', `/machines/${M2.mac}`)).body;
  assert.equal([m.state, m.failure.step], ['failed', 'installer']);
  assert.match(m.failure.reason, /^racksmith-agent\/disk: no disk matched the rule smallest/);
  assert.is(m.installedDisk, null);

  await call('PATCH', '/clusters/img', { imageUrl: 'missing.img.zst' });
  const s3 = await get(`/boot.ipxe?mac=${M3.mac}&platform=pcbios`, M3.ip);
  const seed3 = /racksmith\.seed=http:\/\/[^/]+(\/seed\/[A-Za-z0-9_-]+\/)/.exec(s3.body)?.[1] ?? '';
  const env = await get(`${seed3}deploy.env`, M3.ip);
  assert.is(env.status, 404, env.body);
  const m3 = (await call('GET', `/machines/${M3.mac}`)).body;
  assert.equal([m3.state, m3.failure.step], ['failed', 'image']);
  assert.match(m3.failure.reason, /^image missing\.img\.zst: .*no image missing\.img\.zst/);
});

test.run();
