import { copyFileSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { truncate } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { suite } from './lib/suite.js';
import * as assert from 'uvu/assert';
import { startAptCache, type AptCache } from './lib/apt-cache.js';
import { endBootProof, PxeBed, SERVER_IP, type Vm } from './lib/pxe.js';
import { machineApi } from './lib/qemu-run.js';
import type { RacksmithProcess } from './lib/racksmith.js';
import { requirements, skipNote } from './lib/tools.js';

// racksmith-test: both engines — the installer's reports and boot steps go through the store, and its reporter's reports were once lost on
// PostgreSQL alone (decision 2204).
// racksmith-test: minutes 2

/**
 * Debian's real netboot installer (debian-installer-12-netboot-amd64) driven by racksmith, as far
 * as it runs on this machine: PXE through racksmith's DHCP and iPXE, d-i's kernel and initrd with
 * racksmith's kernel command line, the preseed over HTTP, its early_command starting racksmith's
 * progress reporter — whose events racksmith records, step by step — and Debian's mirror checked
 * and accepted through the site's apt proxy (racksmith's --apt-proxy, apt-cacher-ng on the test bed).
 *
 * Debian's mirror answers 404 for every .udeb here, so d-i cannot go past "Download installer
 * components": the test stops the VM when anna, having read the components' index through the
 * proxy, asks for its first .udeb. Partitioning (and so the install disk rule in
 * partman/early_command) lies beyond it; the rule itself is tested by sh over a fake sysfs
 * (agent-disk-rule.test.ts).
 */
const test = suite('qemu: debian-installer 12 with racksmith\'s preseed, reporter and apt proxy, up to its first .udeb');

const HTTP_PORT = 8080;
const BASE = `http://${SERVER_IP}:${HTTP_PORT}`;
const DI = '/usr/lib/debian-installer/images/12/amd64/text/debian-installer/amd64';
const M = { mac: '52:54:00:77:00:41', ip: '10.77.0.41', hostname: 'deb1' };
const TIMEOUT_MS = 8 * 60_000;
const UDEB_TIMEOUT_MS = 3 * 60_000;

const missing = requirements(['qemu-system-x86_64', 'dnsmasq', 'apt-cacher-ng', 'curl', `${DI}/linux`, `${DI}/initrd.gz`], { netns: true });

let bed: PxeBed | null = null;
let rs: RacksmithProcess | null = null;
let cache: AptCache | null = null;
let work = '';
let admin = '';
let vm: Vm | null = null;
let failed = true;

const { call: api, events } = machineApi(() => bed!, BASE, () => admin);

/**
 * The question d-i's newt frontend shows last on the serial console, if its screen ends on one:
 * a dialog titled "[!] …" or "[!!] …" with <Continue>, after no progress bar.
 */
function diQuestion(serial: string): string | null {
  // eslint-disable-next-line no-control-regex
  const text = serial.slice(-6000).replace(/\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][0-9A-Za-z]/g, ' ');
  const at = Math.max(text.lastIndexOf('[!] '), text.lastIndexOf('[!!] '));
  if (at < 0 || !text.includes('<Continue>', at) || /\d+%/.test(text.slice(at))) return null;
  return text.slice(at).replace(/\s+/g, ' ').replace(/\b[lqxkmjtu]+\b/g, ' ').replace(/\s+/g, ' ').slice(0, 120).trim();
}

test.before(async () => {
  if (missing) return;
  work = mkdtempSync(join(tmpdir(), 'racksmith-di-'));
  const artifacts = join(work, 'artifacts');
  mkdirSync(join(artifacts, 'debian-12'), { recursive: true });
  for (const f of ['linux', 'initrd.gz']) copyFileSync(join(DI, f), join(artifacts, 'debian-12', f));
  bed = await new PxeBed('dbi').setup();
  bed.raSender();
  cache = await startAptCache(bed.tb, bed.srv, SERVER_IP);
  // DNS servers from DHCP, as a site hands out, and no router: d-i's DHCP client script then drops
  // them, and only racksmith's netcfg/get_nameservers on the command line keeps netcfg from asking.
  // Nothing needs to answer on them: the mirror is reached through the proxy.
  // Debian's own mirror, which d-i checks through the proxy (a test's racksmith otherwise names a
  // port nobody serves: the proxy refuses it, and d-i calls the mirror bad).
  rs = await bed.racksmith(work, artifacts, HTTP_PORT, { RACKSMITH_APT_PROXY: cache.url, RACKSMITH_DEBIAN_MIRROR: 'http://deb.debian.org/debian', RACKSMITH_LOG_LEVEL: 'info', RACKSMITH_DHCP_DNS: SERVER_IP });
  admin = (await rs.cli(['token', 'create', '--role', 'admin'])).trim();
});

test.after(async () => {
  await endBootProof({ vms: [vm], failed, work, rs, bed, evidence: 'debian-installer', evidenceFiles: (): Record<string, string> => (cache ? { 'apt-cacher-ng.log': cache.log() } : {}), services: [cache] });
});

test('d-i boots with racksmith\'s command line, loads the preseed, reports its steps, accepts the mirror through the proxy; stopped at its first .udeb', async (ctx) => {
  if (missing) return skipNote(ctx.__test__, missing);
  const c = await api('POST', '/clusters', { name: 'deb', os: 'debian-12', kubernetesVersion: '1.28.4', containerRuntime: 'containerd', cni: 'flannel' });
  assert.is(c.status, 201, JSON.stringify(c.body));
  assert.is(c.body.installMethod, 'preseed', "Debian's own installer by default");
  assert.is((await api('POST', '/machines', { mac: M.mac, hostname: M.hostname, role: 'worker', cluster: 'deb', ip: M.ip })).status, 201);
  const disk = join(work, 'disk.img');
  writeFileSync(disk, '');
  await truncate(disk, 10 * 1024 ** 3);
  vm = await bed!.vm({ name: 'd-i', mac: M.mac, firmware: 'bios', serialLog: join(work, 'd-i.log'), memoryMiB: 1536, disks: [{ file: disk, bus: 'virtio', serial: 'DISK0001', bootindex: 2 }] });
  const started = Date.now();
  let reached: any = null;
  const seen: string[] = [];
  while (!reached && Date.now() - started < TIMEOUT_MS) {
    const ev = (await events(M.mac)).filter((e) => e.type === 'installer.event');
    for (const e of ev) if (!seen.includes(e.data.name)) {
      seen.push(e.data.name);
      process.stdout.write(`  ${((Date.now() - started) / 1000).toFixed(0).padStart(4)} s  ${e.message}\n`);
    }
    reached = ev.find((e) => e.data?.name === 'd-i/download-installer');
    if (!vm.running) break;
    // A question on d-i's screen at priority critical is an install that waits for ever: say which, now.
    const question = reached ? null : diQuestion(vm.serial());
    if (question) assert.unreachable(`d-i stopped to ask "${question}" (reported: ${seen.join(', ') || 'nothing'}; apt proxy served: ${cache!.served().join(' ') || 'nothing'})`);
    if (!reached) await new Promise((r) => setTimeout(r, 2000));
  }
  assert.ok(reached, `d-i never reported "Download installer components" (reported: ${seen.join(', ')})\n${vm.serial().slice(-2000)}`);
  // As far as the bed allows: anna reads the installer components' index from the accepted mirror
  // and asks for its first .udeb, through the proxy; the mirror reached from here answers 404.
  const udebWait = Date.now() + UDEB_TIMEOUT_MS;
  let udeb: string | undefined;
  while (!udeb && Date.now() < udebWait && vm.running) {
    udeb = cache!.served().find((p) => /\.udeb\b/.test(p));
    if (!udeb) await new Promise((r) => setTimeout(r, 2000));
  }
  await vm.stop();
  assert.ok(udeb, `d-i asked the proxy for no .udeb within ${UDEB_TIMEOUT_MS / 1000} s of "Download installer components": ${cache!.served().join(' ')}`);
  process.stdout.write(`  stopped the VM at d-i's first .udeb, ${((Date.now() - started) / 1000).toFixed(0)} s in: ${udeb}\n`);

  const ev = await events(M.mac);
  // The boot: racksmith's script with d-i's kernel and initrd and racksmith's command line.
  const script = ev.find((e) => e.type === 'http.ipxe' && e.data?.script === 'install');
  assert.match(script?.message ?? '', /install Debian 12 \(debian-installer\)/);
  for (const f of ['linux', 'initrd.gz']) assert.ok(ev.some((e) => e.type === 'http.artifact' && e.data?.release === 'debian-12' && e.data?.file === f), `artifact ${f}`);
  // The preseed, then the reporter the early_command fetched and started.
  const seeds = ev.filter((e) => e.type === 'http.seed').map((e) => e.data.file);
  assert.equal(seeds.slice(0, 2), ['preseed.cfg', 'di-reporter.sh']);
  // The reporter's events: the preseed, then d-i's own steps in its order, named as on screen.
  const steps = ev.filter((e) => e.type === 'installer.event').map((e) => e.data.name);
  assert.is(steps[0], 'd-i/preseed');
  for (const s of ['d-i/netcfg', 'd-i/choose-mirror', 'd-i/download-installer']) assert.ok(steps.includes(s), `${s} in ${steps.join(', ')}`);
  assert.ok(steps.indexOf('d-i/choose-mirror') < steps.indexOf('d-i/download-installer'));
  assert.match(reached.message, /^start d-i\/download-installer: Download installer components$/);
  const m = (await api('GET', `/machines/${M.mac}`)).body;
  assert.is(m.state, 'provisioning');
  assert.is(m.lastStep, 'installer');
  // The mirror was checked through the site's apt proxy: its Release files, then the index of the
  // installer components, then the first component (which Debian's mirror does not serve here).
  const served = cache!.served();
  assert.ok(served.some((p) => /^debrep\/dists\/bookworm\/Release$/.test(p)), `apt-cacher-ng served the mirror's Release: ${served.join(' ')}`);
  assert.ok(served.some((p) => /^debrep\/dists\/bookworm\/main\/debian-installer\/binary-amd64\/Packages/.test(p)), `apt-cacher-ng served the installer components' index: ${served.join(' ')}`);
  assert.match(udeb!, /^debrep\/pool\/main\/.+\.udeb/);
  failed = false;
});

test.run();
