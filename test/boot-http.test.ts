import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { suite } from './lib/suite.js';
import * as assert from 'uvu/assert';
import { parse as parseYaml } from 'yaml';
import { api, startRacksmith, type RacksmithProcess } from './lib/racksmith.js';
import { rawRequest } from './lib/http.js';
import { requirements, skipNote, which } from './lib/tools.js';

/**
 * The machine-facing HTTP surface of the real `racksmith serve`, driven the way machines drive it:
 * iPXE asks for its script, the installer reads its seed and reports, cloud-init phones home —
 * each from its own loopback address (127.0.0.11 is cp1, 127.0.0.12 is cp2), so the token's
 * address rule is exercised for real.
 */
const test = suite('boot over HTTP: script → seed → installed → phone-home → local boot');

let rs: RacksmithProcess;
let admin = '';
const work = mkdtempSync(join(tmpdir(), 'racksmith-boothttp-'));
const ARTIFACTS = join(work, 'artifacts');
const KERNEL = Buffer.from(Array.from({ length: 70_000 }, (_, i) => i % 251));
const CP1 = '52:54:00:77:01:11';
const CP2 = '52:54:00:77:01:12';
const W1 = '52:54:00:77:01:21';
const D1 = '52:54:00:77:01:31';
const missing = requirements(['ssh-keygen']);
const noBusybox = requirements(['busybox']);

async function get(path: string, from = '127.0.0.11', headers: Record<string, string> = {}) {
  return rawRequest(`${rs.url}${path}`, { localAddress: from, headers });
}
async function post(path: string, body: string, type: string, from = '127.0.0.11') {
  return rawRequest(`${rs.url}${path}`, { method: 'POST', body, headers: { 'content-type': type }, localAddress: from });
}
async function machine(mac: string) {
  return (await api(rs.url, admin, 'GET', `/api/v1/machines/${mac}`)).body;
}
async function events(mac: string): Promise<any[]> {
  return (await api(rs.url, admin, 'GET', `/api/v1/machines/${mac}/events`)).body;
}

test.before(async () => {
  mkdirSync(join(ARTIFACTS, '22.04'), { recursive: true });
  writeFileSync(join(ARTIFACTS, '22.04', 'vmlinuz'), KERNEL);
  writeFileSync(join(ARTIFACTS, '22.04', 'initrd'), 'initrd');
  mkdirSync(join(work, 'tftp'), { recursive: true });
  writeFileSync(join(work, 'tftp', 'ipxe.efi'), 'MZ fake ipxe.efi');
  writeFileSync(join(work, 'tftp', 'secret.txt'), 'not a boot binary');
  rs = await startRacksmith({ env: { RACKSMITH_ARTIFACTS_DIR: ARTIFACTS, RACKSMITH_INSTALLER_KERNEL_ARGS: 'console=ttyS0,115200', RACKSMITH_TFTP_ROOT: join(work, 'tftp') } });
  admin = (await rs.cli(['token', 'create', '--role', 'admin'])).trim();
  const c = await api(rs.url, admin, 'POST', '/api/v1/clusters', { name: 'lab', ubuntuRelease: '22.04', kubernetesVersion: '1.28.4', containerRuntime: 'containerd', cni: 'flannel' });
  assert.is(c.status, 201, c.text);
  for (const [mac, hostname, role, ip] of [[CP1, 'cp1', 'control-plane', '127.0.0.11'], [CP2, 'cp2', 'control-plane', '127.0.0.12'], [W1, 'w1', 'worker', null]] as const) {
    const r = await api(rs.url, admin, 'POST', '/api/v1/machines', { mac, hostname, role, cluster: 'lab', ...(ip ? { ip } : {}) });
    assert.is(r.status, 201, r.text);
  }
});

test.after(async () => {
  await rs?.stop();
  rs?.cleanup();
  rmSync(work, { recursive: true, force: true });
});

test('no MAC: the chain script asks again with mac, arch, platform and uuid, with bounded retries', async () => {
  const r = await get('/boot.ipxe');
  assert.is(r.status, 200);
  const s = r.text();
  assert.ok(s.startsWith('#!ipxe\n'));
  assert.ok(s.includes(`chain --autofree ${rs.url}/boot.ipxe?mac=\${net0/mac:hexhyp}&arch=\${buildarch}&platform=\${platform}&uuid=\${uuid}`), s);
  assert.is(s.match(/^chain /gm)?.length, 5);
  assert.match(s, /^reboot$/m);
});

test('UEFI HTTP Boot: the iPXE binaries of the TFTP root at /ipxe/, nothing else', async () => {
  const r = await get('/ipxe/ipxe.efi');
  assert.is(r.status, 200);
  assert.is(r.text(), 'MZ fake ipxe.efi');
  for (const bad of ['/ipxe/secret.txt', '/ipxe/snponly.efi', '/ipxe/..%2Fsecret.txt', '/ipxe/../tftp/secret.txt']) assert.is((await get(bad)).status, 404, bad);
  assert.ok((await events(CP1)).some((e) => e.type === 'http.bootfile'), 'an event on the machine at that address');
});

test('an unknown MAC is recorded as discovered, with its arch and firmware, and waits', async () => {
  const r = await get('/boot.ipxe?mac=52-54-00-77-01-99&arch=x86_64&platform=efi&uuid=8c3e6a4e-0000-4000-8000-000000000001', '127.0.0.99');
  assert.is(r.status, 200);
  assert.match(r.text(), /waiting for a role/);
  assert.not.match(r.text(), /kernel/);
  const m = await machine('52:54:00:77:01:99');
  assert.is(m.state, 'discovered');
  assert.is(m.firmware, 'efi');
  assert.is(m.arch, 'x86_64');
  assert.is(m.uuid, '8c3e6a4e-0000-4000-8000-000000000001');
  assert.ok((await events('52:54:00:77:01:99')).some((e) => e.type === 'http.ipxe'));
});

test('a bad MAC is a 400 naming mac; a newline in any other field never reaches the script', async () => {
  const bad = await get('/boot.ipxe?mac=zz');
  assert.is(bad.status, 400);
  assert.is(bad.json().error.field, 'mac');
  const sneaky = await get(`/boot.ipxe?mac=52-54-00-77-01-98&arch=${encodeURIComponent('x86_64\nshell')}&platform=${encodeURIComponent('efi\nreboot')}`);
  assert.is(sneaky.status, 200);
  assert.not.match(sneaky.text(), /^shell$/m);
  assert.not.match(sneaky.text(), /efi\nreboot/);
  assert.not.ok(sneaky.text().includes('x86_64\n'));
});

let seedUrl = '';

test('assigned → the installer script, the machine is provisioning, with a fresh instance id', async () => {
  const r = await get('/boot.ipxe?mac=52-54-00-77-01-11&arch=x86_64&platform=efi');
  assert.is(r.status, 200);
  const s = r.text();
  assert.match(s, /^kernel --name kernel http:\/\/127\.0\.0\.1:\d+\/artifacts\/22\.04\/vmlinuz\?mac=52-54-00-77-01-11 initrd=initrd /m);
  assert.match(s, / autoinstall ds=nocloud-net;s=http:\/\/127\.0\.0\.1:\d+\/seed\/[A-Za-z0-9_-]+\/ cloud-config-url=\/dev\/null console=ttyS0,115200 /);
  seedUrl = /s=(http:\/\/\S+?\/seed\/[A-Za-z0-9_-]+\/)/.exec(s)?.[1] ?? '';
  assert.ok(seedUrl);
  const m = await machine(CP1);
  assert.is(m.state, 'provisioning');
  assert.is(m.lastStep, 'installer');
});

test('artifacts: served from the artifacts directory, with Range, as a machine event', async () => {
  const whole = await get('/artifacts/22.04/vmlinuz?mac=52-54-00-77-01-11');
  assert.is(whole.status, 200);
  assert.ok(whole.body.equals(KERNEL));
  assert.is(whole.headers['accept-ranges'], 'bytes');
  const part = await get('/artifacts/22.04/vmlinuz', '127.0.0.11', { range: 'bytes=1000-1999' });
  assert.is(part.status, 206);
  assert.is(part.headers['content-range'], `bytes 1000-1999/${KERNEL.length}`);
  assert.ok(part.body.equals(KERNEL.subarray(1000, 2000)));
  for (const bad of ['/artifacts/22.04/..%2F..%2Fetc%2Fpasswd', '/artifacts/22.04/.hidden', '/artifacts/99.04/vmlinuz', '/artifacts/22.04/nosuchfile']) {
    assert.is((await get(bad)).status, 404, bad);
  }
  const ev = await events(CP1);
  assert.ok(ev.filter((e) => e.type === 'http.artifact').length >= 2, 'artifact events (by ?mac= and by address)');
});

test('seeds: the machine reads its own; another address gets 403; an unknown token 404', async () => {
  const path = new URL(seedUrl).pathname;
  const ud = await get(`${path}user-data`);
  assert.is(ud.status, 200, ud.text());
  const doc = parseYaml(ud.text()) as Record<string, any>;
  assert.is(doc['autoinstall'].identity.hostname, 'cp1');
  const md = parseYaml((await get(`${path}meta-data`)).text()) as Record<string, any>;
  assert.match(String(md['instance-id']), /^iid-525400770111-/);
  for (const f of ['vendor-data', 'network-config']) assert.is((await get(`${path}${f}`)).status, 200, f);
  assert.is((await get(`${path}preseed.cfg`)).status, 404, 'no preseed for 22.04');
  const stolen = await get(`${path}user-data`, '127.0.0.12');
  assert.is(stolen.status, 403);
  assert.is(stolen.json().error.code, 'ERR_WRONG_ADDRESS');
  assert.is((await get('/seed/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA/user-data')).status, 404);
  assert.is((await get('/seed/x/user-data')).status, 404);
  assert.ok((await events(CP1)).some((e) => e.type === 'http.seed.refused'));
});

test('installer progress events are recorded; /installed moves to installed', async () => {
  const path = new URL(seedUrl).pathname;
  const ev = await post(`${path}events`, JSON.stringify({ event_type: 'start', name: 'subiquity/Install/install', description: 'installing system', origin: 'curtin', level: 'INFO' }), 'application/json');
  assert.is(ev.status, 200, ev.text());
  assert.is((await post(`${path}events`, '{not json', 'application/json')).status, 400);
  const inst = await post(`${path}installed`, 'source=late-commands', 'application/x-www-form-urlencoded');
  assert.is(inst.status, 200, inst.text());
  assert.is(inst.json().state, 'installed');
  assert.is((await post(`${path}installed`, '', 'application/x-www-form-urlencoded')).json().state, 'installed', 'a retried report is harmless');
  const m = await machine(CP1);
  assert.is(m.lastStep, 'installed');
  assert.ok((await events(CP1)).some((e) => e.type === 'installer.event' && /installing system/.test(e.message)));
});

test('phone-home (form-encoded, as cloud-init posts it) pins the host keys → ready; the token then expires', async () => {
  if (missing) return skipNote('phone-home with real keys', missing);
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', join(work, 'hk')]);
  const key = readFileSync(join(work, 'hk.pub'), 'utf8').trim();
  const path = new URL(seedUrl).pathname;
  const md = parseYaml((await get(`${path}meta-data`)).text()) as Record<string, any>;
  const bad = await post(`${path}phone-home`, 'pub_key_rsa=N/A&hostname=cp1', 'application/x-www-form-urlencoded');
  assert.is(bad.status, 400, 'no host key');
  const forged = await post(`${path}phone-home`, `pub_key_ed25519=${encodeURIComponent('ssh-rsa ' + key.split(' ')[1])}`, 'application/x-www-form-urlencoded');
  assert.is(forged.status, 400, 'key type does not match its blob');
  const body = new URLSearchParams({ pub_key_rsa: 'N/A', pub_key_ecdsa: 'N/A', pub_key_ed25519: key, pub_key_dsa: 'N/A', instance_id: String(md['instance-id']), hostname: 'cp1', fqdn: 'cp1.lab' }).toString();
  const r = await post(`${path}phone-home`, body, 'application/x-www-form-urlencoded');
  assert.is(r.status, 200, r.text());
  assert.is(r.json().state, 'ready');
  const m = await machine(CP1);
  assert.equal(m.hostKeys, ['ssh-ed25519']);
  assert.is(m.lastStep, 'ready');
  assert.is((await get(`${path}user-data`)).status, 404, 'expired once ready');
  const cluster = (await api(rs.url, admin, 'GET', '/api/v1/clusters/lab')).body;
  assert.is(cluster.machines.find((x: any) => x.mac === CP1).lastStep, 'ready');
  const types = (await events(CP1)).map((e) => e.type);
  for (const t of ['http.ipxe', 'http.artifact', 'http.seed', 'installer.event', 'phone-home', 'state']) assert.ok(types.includes(t), t);
});

test('its next PXE boot gets the boot-from-disk script', async () => {
  const efi = await get('/boot.ipxe?mac=52-54-00-77-01-11&arch=x86_64&platform=efi');
  assert.match(efi.text(), /^exit 1$/m);
  assert.not.match(efi.text(), /kernel/);
  const bios = await get('/boot.ipxe?mac=52-54-00-77-01-11&arch=x86_64&platform=pcbios');
  assert.match(bios.text(), /^sanboot --no-describe --drive 0x80/m);
  assert.is((await machine(CP1)).lastStep, 'local-boot');
});

test('a FAIL from the installer marks the machine failed at the installer step, and it then waits', async () => {
  const s = (await get('/boot.ipxe?mac=52-54-00-77-01-21&platform=pcbios', '127.0.0.21')).text();
  const path = new URL(/s=(http:\/\/\S+?\/seed\/[A-Za-z0-9_-]+\/)/.exec(s)?.[1] ?? 'http://x/').pathname;
  const r = await post(`${path}events`, JSON.stringify({ event_type: 'finish', name: 'subiquity/Install/install/curtin', result: 'FAIL', description: 'partitioning failed' }), 'application/json', '127.0.0.21');
  assert.is(r.status, 200, r.text());
  const m = await machine(W1);
  assert.is(m.state, 'failed');
  assert.is(m.failure.step, 'installer');
  assert.match(m.failure.reason, /partitioning failed/);
  const again = await get('/boot.ipxe?mac=52-54-00-77-01-21&platform=pcbios', '127.0.0.21');
  assert.match(again.text(), /waiting for an operator/);
  assert.is((await get(`${path}user-data`, '127.0.0.21')).status, 404, 'a failed machine cannot read its seed');
});

const W2 = '52:54:00:77:01:22';

test('a machine without an ip: its token works only from the address its boot script went to; others get 403 and an event', async () => {
  assert.is((await api(rs.url, admin, 'POST', '/api/v1/machines', { mac: W2, hostname: 'w2', role: 'worker', cluster: 'lab' })).status, 201);
  const tokenOf = (script: string): string => /\/seed\/([A-Za-z0-9_-]+)\//.exec(script)?.[1] ?? '';
  const first = tokenOf((await get('/boot.ipxe?mac=52-54-00-77-01-22&platform=pcbios', '127.0.0.22')).text());
  assert.ok(first);
  assert.is((await get(`/seed/${first}/user-data`, '127.0.0.22')).status, 200, 'the installer, same machine, same address');
  // Someone else who learnt the token (a log, a sniffed request) can neither read nor report.
  const theirs = [
    await get(`/seed/${first}/user-data`, '127.0.0.23'),
    await post(`/seed/${first}/installed`, '', 'application/x-www-form-urlencoded', '127.0.0.23'),
    await post(`/seed/${first}/events`, JSON.stringify({ event_type: 'finish', name: 'x', result: 'FAIL' }), 'application/json', '127.0.0.23'),
    await post(`/seed/${first}/phone-home`, 'pub_key_ed25519=ssh-ed25519%20AAAA', 'application/x-www-form-urlencoded', '127.0.0.23'),
  ];
  for (const r of theirs) {
    assert.is(r.status, 403, r.text());
    assert.is(r.json().error.code, 'ERR_WRONG_ADDRESS');
  }
  const m = await machine(W2);
  assert.is(m.state, 'provisioning', 'nothing moved it');
  assert.equal(m.hostKeys, []);
  const refused = (await events(W2)).filter((e) => e.type === 'http.seed.refused');
  assert.is(refused.length, 4);
  assert.match(refused[0].message, /127\.0\.0\.23, not from the machine's address \(127\.0\.0\.22\)/);
  // iPXE asking again from its address keeps the token; the machine back on another address
  // gets a new one, and the old one is dead.
  assert.is(tokenOf((await get('/boot.ipxe?mac=52-54-00-77-01-22&platform=pcbios', '127.0.0.22')).text()), first);
  const second = tokenOf((await get('/boot.ipxe?mac=52-54-00-77-01-22&platform=pcbios', '127.0.0.24')).text());
  assert.ok(second && second !== first);
  assert.is((await get(`/seed/${first}/user-data`, '127.0.0.22')).status, 404);
  assert.is((await get(`/seed/${second}/user-data`, '127.0.0.24')).status, 200);
  assert.ok((await events(W2)).some((e) => e.type === 'http.seed.rebound' && e.data.from === '127.0.0.22' && e.data.to === '127.0.0.24'));
});

test('300 made-up MACs from one address add at most its allowance; the refusal is counted and recorded once', async () => {
  const before = (await api(rs.url, admin, 'GET', '/api/v1/machines?state=discovered')).body.length;
  for (let i = 0; i < 300; i++) {
    const mac = `52-54-00-f0-${(i >> 8).toString(16).padStart(2, '0')}-${(i & 255).toString(16).padStart(2, '0')}`;
    const r = await get(`/boot.ipxe?mac=${mac}&platform=pcbios`, '127.0.0.66');
    assert.is(r.status, 200);
    assert.match(r.text(), /waiting for a role/, 'answered like any unknown machine');
  }
  const after = (await api(rs.url, admin, 'GET', '/api/v1/machines?state=discovered')).body.length;
  assert.is(after - before, 8, `${after - before} discovered rows added`);
  const metrics = await (await fetch(`${rs.url}/metrics`)).text();
  assert.match(metrics, /^racksmith_discovery_refused_total\{path="http"\} 292$/m);
  const store = await rs.openStore();
  try {
    const limited = await store.events.list({ type: 'discovery.limited' });
    assert.is(limited.length, 1, 'recorded once, not per request');
    assert.is(limited[0]?.source, 'http 127.0.0.66');
  } finally {
    await store.close();
  }
  assert.is((rs.output().match(/more unknown MACs than its allowance/g) ?? []).length, 1, 'logged once');
  // Another address still adds its own machine.
  await get('/boot.ipxe?mac=52-54-00-f1-00-01&platform=pcbios', '127.0.0.67');
  assert.is((await machine('52:54:00:f1:00:01')).state, 'discovered');
});

test('d-i\'s reporter, run by busybox sh with busybox nc as in the installer: its report, sent half-closed, is answered and recorded', async () => {
  if (noBusybox) return skipNote('the reporter under busybox', noBusybox);
  // busybox nc shuts its sending side once the request is written, as d-i's does; a server that
  // takes that FIN for an abort drops the report while its handler awaits the store.
  const c = await api(rs.url, admin, 'POST', '/api/v1/clusters', { name: 'deb', os: 'debian-12', kubernetesVersion: '1.28.4', containerRuntime: 'containerd', cni: 'flannel' });
  assert.is(c.status, 201, c.text);
  assert.is((await api(rs.url, admin, 'POST', '/api/v1/machines', { mac: D1, hostname: 'd1', role: 'worker', cluster: 'deb', ip: '127.0.0.1' })).status, 201);
  const script = (await get(`/boot.ipxe?mac=${D1}&arch=x86_64&platform=pcbios`, '127.0.0.1')).text();
  const token = /\/seed\/([A-Za-z0-9_-]+)\/preseed\.cfg/.exec(script)?.[1];
  assert.ok(token, script);
  const reporter = await get(`/seed/${token}/di-reporter.sh`, '127.0.0.1');
  assert.is(reporter.status, 200);
  // Its functions and its first report, without the loop that follows d-i's syslog.
  const text = reporter.text();
  const first = text.slice(0, text.indexOf('\n', text.indexOf('rs_event start d-i/preseed')) + 1);
  assert.match(first, /nc -w 10 '127\.0\.0\.1'/);
  const bin = join(work, 'busybox-bin');
  mkdirSync(bin, { recursive: true });
  for (const applet of ['nc', 'wc', 'sed', 'tr', 'printf']) symlinkSync(which('busybox')!, join(bin, applet));
  for (let i = 1; i <= 3; i++) execFileSync(which('busybox')!, ['sh', '-c', first], { env: { PATH: bin }, timeout: 30_000 });
  const reports = (await events(D1)).filter((e) => e.type === 'installer.event' && e.data?.name === 'd-i/preseed');
  assert.is(reports.length, 3, 'every report recorded');
  assert.not.ok((await events(D1)).some((e) => e.type === 'http.seed.refused'), 'none refused');
  assert.match(rs.output(), /"method":"POST","path":"\/seed\/\[redacted\]\/events","status":200/);
});

test('no seed token in the access log', async () => {
  const tokens = [...rs.output().matchAll(/\/seed\/([A-Za-z0-9_-]{16,})\//g)].map((m) => m[1]);
  assert.equal(tokens, [], 'a seed token was logged');
  assert.match(rs.output(), /"path":"\/seed\/\[redacted\]\/user-data"/);
});

test('phone-home as JSON is accepted too', async () => {
  if (missing) return skipNote('JSON phone-home', missing);
  const s = (await get('/boot.ipxe?mac=52-54-00-77-01-12&platform=pcbios', '127.0.0.12')).text();
  const path = new URL(/s=(http:\/\/\S+?\/seed\/[A-Za-z0-9_-]+\/)/.exec(s)?.[1] ?? 'http://x/').pathname;
  assert.is((await post(`${path}installed`, '', 'text/plain', '127.0.0.12')).status, 200);
  const key = readFileSync(join(work, 'hk.pub'), 'utf8').trim();
  const r = await post(`${path}phone-home`, JSON.stringify({ pub_key_ed25519: key, hostname: 'cp2' }), 'application/json', '127.0.0.12');
  assert.is(r.status, 200, r.text());
  assert.is((await machine(CP2)).state, 'ready');
});

test.run();
