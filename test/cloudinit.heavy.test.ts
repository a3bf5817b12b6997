import type { ChildProcess } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { suite } from './lib/suite.js';
import * as assert from 'uvu/assert';
import { parse } from 'yaml';
import { openSqliteInventory } from '../server/inventory/sqlite/index.js';
import { DB_FILE } from '../server/inventory/sqlite/db.js';
import { createSecretBox } from '../server/lib/secrets.js';
import { PACKAGE_ROOT } from '../server/lib/paths.js';
import { Testbed } from './lib/netns.js';
import { requirements, skipNote } from './lib/tools.js';
import { CALLS_LOG, MachineRoot, sweepStale } from './lib/cloudinit/chroot.js';
import { debconfDatasources, describeRun, runCloudInit, SUBIQUITY_NONE_DATASOURCE_WARNING, writeTestSystemConfig, type CloudInitRun } from './lib/cloudinit/cloudinit.js';
import { groupNames, subiquityFirstBootFiles } from './lib/cloudinit/subiquity.js';
import { activeSwapEntries, containerdFacts, dockerExecOpts, haproxyServers, installedVersions, keyIdentity, moduleNames, sysctlSettings } from './lib/cloudinit/checks.js';
import { ensureRootfs, type RootfsImage } from './lib/cloudinit/rootfs.js';
import { buildSiteMirror, type SiteMirror } from './lib/cloudinit/site-mirror.js';
import { dockerRelease, kubernetesDebVersion } from './lib/cloudinit/standins.js';
import { nsCurl, startRacksmithIn, type NsRacksmith } from './lib/cloudinit/racksmith-ns.js';

/**
 * Issue 9: racksmith's rendered role configs executed by real cloud-init in a real Debian
 * userland, offline, against a package mirror of the test's own — for each role on the
 * 1.18/Docker path (Ubuntu 18.04, debian-installer) and the >= 1.24/containerd path (Ubuntu 22.04,
 * subiquity). Each machine's seed reaches it the way it would on the wire: the boot script, the
 * seed files and the installer's late commands are fetched from racksmith from the machine's own
 * address; cloud-init's phone-home goes back to racksmith; racksmith then logs in over SSH with its
 * own key, checking the host key it pinned. See docs/testing-cloud-init.md.
 */
const test = suite('cloud-init: role configs run for real, offline');

interface PathCase {
  readonly title: string;
  readonly cluster: string;
  readonly ubuntuRelease: '18.04' | '22.04';
  readonly codename: string;
  readonly kubernetesVersion: string;
  readonly containerRuntime: 'docker' | 'containerd';
  readonly cni: 'weave' | 'flannel';
  readonly repo: 'legacy' | 'pkgs';
  /** Last octet of the first machine's address; lb, cp1, cp2, w1 follow. */
  readonly first: number;
}

const PATHS: readonly PathCase[] = [
  { title: '18.04 + Kubernetes 1.18.6 + Docker', cluster: 'lab1804', ubuntuRelease: '18.04', codename: 'bionic', kubernetesVersion: '1.18.6', containerRuntime: 'docker', cni: 'weave', repo: 'legacy', first: 10 },
  { title: '22.04 + Kubernetes 1.30.6 + containerd', cluster: 'lab2204', ubuntuRelease: '22.04', codename: 'jammy', kubernetesVersion: '1.30.6', containerRuntime: 'containerd', cni: 'flannel', repo: 'pkgs', first: 20 },
];

/**
 * Issue 17: a worker whose pinned Kubernetes version is missing from the mirror (its repository
 * has 1.30.6 and 1.30.8, not 1.30.7). Its role setup fails at apt; the machine must end `failed`
 * with apt's error, and the phone-home that follows must not make it ready.
 */
const MISSING: PathCase = { title: '22.04 + Kubernetes 1.30.7, missing from the mirror', cluster: 'miss2204', ubuntuRelease: '22.04', codename: 'jammy', kubernetesVersion: '1.30.7', containerRuntime: 'containerd', cni: 'flannel', repo: 'pkgs', first: 30 };

type Role = 'loadbalancer' | 'control-plane' | 'worker';
const MEMBERS: ReadonlyArray<{ hostname: string; role: Role; offset: number }> = [
  { hostname: 'lb1', role: 'loadbalancer', offset: 0 },
  { hostname: 'cp1', role: 'control-plane', offset: 1 },
  { hostname: 'cp2', role: 'control-plane', offset: 2 },
  { hostname: 'w1', role: 'worker', offset: 3 },
];
/**
 * The machines whose role config runs (cp2 exists so the load balancer has two backends). The
 * load balancer goes last: racksmith's orchestrator starts driving a cluster once its load
 * balancer is ready, and by then every other machine of the cluster has been checked.
 */
const RUN = ['cp1', 'w1', 'lb1'];
/**
 * The test's sshd listens here, not on 22: the orchestrator (port 22) is refused and never
 * reaches a test machine — its kubeadm steps are its own tests' business.
 */
const TEST_SSH_PORT = 2222;
/** Hostnames are unique across clusters. */
const hostnameOf = (p: PathCase, hostname: string): string => `${hostname}-${p.cluster}`;

const SSH_USER = 'racksmith';
/** Machine folders (overlay mounts) live here, under names only this test uses. */
const WORK_PARENT = '/var/tmp';
const WORK_PREFIX = 'racksmith-ci-';
const HTTP_PORT = 8080;
const MIRROR_PORT = 8081;

const missing = requirements(['debootstrap', 'apt-ftparchive', 'dpkg-deb', 'gpg', 'gpgconf', 'unshare', 'flock', 'curl', 'ssh', 'mount', 'openssl'], { netns: true });

let image: RootfsImage;
let work = '';
let tb: Testbed;
let srv = '';
let node = '';
let nodeIf = '';
let srvIf = '';
let net = '';
let mirror: SiteMirror;
let rs: NsRacksmith;
let secretKey = '';
/** The codename the test root reports in /etc/os-release (Debian's): see docs, "codenames". */
let rootCodename = '';
const mirrorLog: string[] = [];
const ran = new Map<string, { run: CloudInitRun; seconds: number; caseSeconds: number }>();

const ipOf = (p: PathCase, offset: number): string => `${net}.${p.first + offset}`;
const macOf = (p: PathCase, offset: number): string => `52:54:00:cc:${p.first.toString(16).padStart(2, '0')}:${offset.toString(16).padStart(2, '0')}`;

// uvu swallows an error thrown by a `before` hook (its runner returns from a finally block): the
// suite would report 0 passed and exit 0. The error is kept and thrown by every test instead.
let setupError: unknown = null;

test.before(async () => {
  if (missing) return;
  try {
    await setUp();
  } catch (err) {
    setupError = err;
  }
});

async function setUp(): Promise<void> {
  // cloudinit-rootfs.heavy.test (run just before this suite) has built the root filesystem on a
  // cold cache; run alone, this suite builds it here. Neither takes the machine-wide heavy lock:
  // the runner runs heavy suites one at a time, and whoever runs them takes it around the command.
  image = await ensureRootfs({ log: (l) => process.stdout.write(`  ${l}\n`) });
  process.stdout.write(`  root filesystem ${image.key}: ${image.built ? `built in ${image.seconds.toFixed(0)} s` : 'from the cache'}\n`);
  rootCodename = /^VERSION_CODENAME=(\S+)$/m.exec(readFileSync(join(image.root, 'etc/os-release'), 'utf8'))?.[1] ?? '';

  const stale = await sweepStale(WORK_PARENT, WORK_PREFIX);
  if (stale.length > 0) process.stdout.write(`  removed what a killed run left: ${stale.join(', ')}\n`);
  work = mkdtempSync(join(WORK_PARENT, `${WORK_PREFIX}${process.pid}-`));
  const t = Date.now();
  mirror = await buildSiteMirror(join(work, 'mirror'), image.debs, {
    ubuntuSuites: PATHS.map((p) => p.codename),
    // The Docker sources line is built on the machine from /etc/os-release, which says Debian's codename here.
    // …and under the Ubuntu codename too, where racksmith's preflight looks for it, as upstream.
    dockerSuites: PATHS.filter((p) => p.containerRuntime === 'docker').flatMap((p) => [{ suite: rootCodename, ubuntu: p.codename }, { suite: p.codename, ubuntu: p.codename }]),
    legacyKubernetes: PATHS.filter((p) => p.repo === 'legacy').map((p) => p.kubernetesVersion),
    kubernetes: PATHS.filter((p) => p.repo === 'pkgs').map((p) => p.kubernetesVersion),
  });
  process.stdout.write(`  package mirror built in ${((Date.now() - t) / 1000).toFixed(1)} s\n`);

  tb = new Testbed('c');
  net = `10.${100 + (randomBytes(1)[0] ?? 0) % 100}.${randomBytes(1)[0] ?? 7}`;
  srv = await tb.addNamespace('s');
  node = await tb.addNamespace('n');
  await tb.veth(srv, 'a', node, 'b', `${net}.1/24`);
  srvIf = tb.name('a');
  nodeIf = tb.name('b');

  const mirrorBase = `http://${net}.1:${MIRROR_PORT}`;
  const mirrorServer = tb.spawn(srv, process.execPath, [join(PACKAGE_ROOT, 'dist/test/lib/cloudinit/static-server.js'), mirror.www, `${net}.1`, String(MIRROR_PORT)]);
  let partial = '';
  mirrorServer.stdout?.on('data', (d: Buffer) => {
    const lines = (partial + d.toString()).split('\n');
    partial = lines.pop() ?? '';
    mirrorLog.push(...lines.filter((l) => l.startsWith('{')));
  });
  await listening(mirrorServer);
  secretKey = randomBytes(32).toString('hex');
  // The preflight's other upstreams, on the mirror and on disk: installer files (never booted
  // here) and the CNI manifests (applied by the orchestrator, which never reaches these machines).
  const artifacts = join(work, 'artifacts');
  for (const [release, names] of [['18.04', ['linux', 'initrd.gz']], ['22.04', ['ubuntu-22.04.5-live-server-amd64.iso', 'vmlinuz', 'initrd']]] as const) {
    mkdirSync(join(artifacts, release), { recursive: true });
    for (const n of names) writeFileSync(join(artifacts, release, n), `${n} stand-in\n`);
  }
  mkdirSync(join(mirror.www, 'cni'), { recursive: true });
  writeFileSync(join(mirror.www, 'cni', 'weave-v2.8.1.yaml'), 'kind: List\n');
  writeFileSync(join(mirror.www, 'cni', 'flannel-v0.27.4.yml'), 'kind: List\n');
  rs = await startRacksmithIn(tb, srv, {
    address: `${net}.1`,
    port: HTTP_PORT,
    secretKey,
    env: {
      RACKSMITH_SSH_USER: SSH_USER,
      ...mirror.settings(mirrorBase),
      RACKSMITH_ARTIFACTS_DIR: artifacts,
      RACKSMITH_CNI_MANIFEST_WEAVE: `${mirrorBase}/cni/weave-{version}.yaml`,
      RACKSMITH_CNI_MANIFEST_FLANNEL: `${mirrorBase}/cni/flannel-{version}.yml`,
    },
  });

  for (const p of PATHS) {
    const c = await rs.api('POST', '/api/v1/clusters', { name: p.cluster, ubuntuRelease: p.ubuntuRelease, kubernetesVersion: p.kubernetesVersion, containerRuntime: p.containerRuntime, cni: p.cni });
    assert.is(c.status, 201, c.text);
    for (const m of MEMBERS) {
      const r = await rs.api('POST', '/api/v1/machines', { mac: macOf(p, m.offset), hostname: hostnameOf(p, m.hostname), role: m.role, cluster: p.cluster, ip: ipOf(p, m.offset) });
      assert.is(r.status, 201, r.text);
    }
  }
  const miss = await rs.api('POST', '/api/v1/clusters', { name: MISSING.cluster, ubuntuRelease: MISSING.ubuntuRelease, kubernetesVersion: MISSING.kubernetesVersion, containerRuntime: MISSING.containerRuntime, cni: MISSING.cni });
  assert.is(miss.status, 201, miss.text);
  const w = await rs.api('POST', '/api/v1/machines', { mac: macOf(MISSING, 3), hostname: hostnameOf(MISSING, 'w1'), role: 'worker', cluster: MISSING.cluster, ip: ipOf(MISSING, 3) });
  assert.is(w.status, 201, w.text);
}

test.after(async () => {
  await rs?.stop();
  await tb?.destroy();
  if (work) rmSync(work, { recursive: true, force: true });
});

/** racksmith's own view of a machine, straight from its store: pinned host keys, SSH key pair. */
function storeFacts(mac: string): Promise<{ hostKeys: string[]; privateKey: string; publicKey: string }> {
  const inv = openSqliteInventory({ file: join(rs.dataDir, DB_FILE), box: createSecretBox(Buffer.from(secretKey, 'hex')) });
  return (async () => {
    try {
      const m = await inv.machines.get(mac as never);
      const privateKey = (await inv.secrets.get('global', 'ssh-private-key')) ?? '';
      const publicKey = (await inv.secrets.get('global', 'ssh-public-key')) ?? '';
      return { hostKeys: (m?.hostKeys ?? []).map((k) => `${k.type} ${k.key}`), privateKey, publicKey };
    } finally {
      await inv.close();
    }
  })();
}

/** Resolves when a static-server child prints `listening` (bounded). */
function listening(child: ChildProcess): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('the test HTTP server did not start within 10 s')), 10_000);
    let out = '';
    child.stdout?.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('listening')) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`the test HTTP server exited (${code})`));
    });
  });
}

/** cloud-init's logs and the shims' record of each machine, kept under test-artifacts/ for a failed CI run. */
function keepLogs(m: MachineRoot, name: string): void {
  const dir = join(PACKAGE_ROOT, 'test-artifacts', 'cloudinit', name);
  try {
    mkdirSync(dir, { recursive: true });
    for (const f of ['/var/log/cloud-init.log', '/var/log/cloud-init-output.log', '/var/log/racksmith-role-setup.log', CALLS_LOG, '/var/lib/cloud/seed/nocloud/user-data', '/etc/cloud/cloud.cfg.d/99-installer.cfg']) {
      if (m.exists(f)) writeFileSync(join(dir, f.split('/').pop() as string), m.read(f));
    }
  } catch {
    /* logs are a convenience */
  }
}

/** What every installer leaves on disk before the first boot: swap, apt sources pointing at the site mirror. */
function installLike(m: MachineRoot, p: PathCase): void {
  // d-i's atomic recipe makes a swap volume; subiquity a swap file (racksmith asks for none, but a
  // site's image may have one): either way the role config must turn it off.
  m.write(
    '/etc/fstab',
    p.ubuntuRelease === '18.04'
      ? '# /etc/fstab: static file system information.\n/dev/mapper/vg-root /               ext4    errors=remount-ro 0       1\n/dev/mapper/vg-swap_1 none            swap    sw              0       0\n'
      : '/dev/disk/by-id/dm-uuid-LVM-root / ext4 defaults 0 1\n/swap.img\tnone\tswap\tsw\t0\t0\n',
  );
  m.write('/etc/apt/sources.list', mirror.ubuntuSources(`http://${net}.1:${MIRROR_PORT}`, p.codename));
  m.write('/etc/apt/trusted.gpg.d/ubuntu-keyring-archive.gpg', mirror.keys.ubuntu.binary);
  writeTestSystemConfig(m);
}

async function machineCurl(args: readonly string[]): Promise<{ status: number; text: string }> {
  return nsCurl(tb, node, args);
}

/**
 * The installer's part, done the way the machine does it, from the machine's address: it asks for
 * its boot script, reads its seed from the URL in it, and runs the installer's last commands.
 * 18.04 (debian-installer): the preseed's answers that shape the installed system (host name,
 * user, cloud-init's datasources) and its late_command, which saves the seed into the new system
 * and reports the install. 22.04 (subiquity): what subiquity hands the installed system's
 * cloud-init (see subiquity.ts) and the late-commands.
 */
async function install(m: MachineRoot, p: PathCase, mac: string, hostname: string): Promise<string> {
  const script = await machineCurl([`${rs.url}/boot.ipxe?mac=${mac.replace(/:/g, '-')}&arch=x86_64&platform=pcbios`]);
  assert.is(script.status, 200, script.text);
  const seedBase = /(http:\/\/\S+\/seed\/[A-Za-z0-9_-]+\/)/.exec(script.text)?.[1];
  assert.ok(seedBase, `no seed URL in the install script:\n${script.text}`);
  if (p.ubuntuRelease === '18.04') {
    const preseed = await machineCurl([`${seedBase}preseed.cfg`]);
    assert.is(preseed.status, 200, preseed.text);
    const answer = (q: string): string => {
      const v = new RegExp(`^\\S+ ${q.replace(/\//g, '\\/')} \\S+ (.*)$`, 'm').exec(preseed.text)?.[1];
      assert.ok(v !== undefined, `the preseed answers ${q}`);
      return v;
    };
    assert.is(answer('netcfg/get_hostname'), hostname);
    m.write('/etc/hostname', `${answer('netcfg/get_hostname')}\n`);
    // d-i's user-setup makes the first user an administrator (group sudo) with the preseeded password.
    const user = answer('passwd/username');
    await m.must(['useradd', '--create-home', '--shell', '/bin/bash', '--comment', answer('passwd/user-fullname'), '--groups', 'adm,cdrom,dip,plugdev,sudo', user]);
    await m.must(['usermod', '--password', answer('passwd/user-password-crypted'), user]);
    m.write('/etc/cloud/cloud.cfg.d/90_dpkg.cfg', debconfDatasources(answer('cloud-init/datasources')));
    // d-i runs late_command with sh in the installer; `in-target` runs a command chrooted in the
    // new system — which is where every command of this one runs.
    const late = answer('preseed/late_command');
    const r = await m.exec(['sh', '-c', late.replace(/(^|;\s*)in-target\s+/g, '$1')]);
    assert.is(r.code, 0, `late_command failed: ${r.stdout}${r.stderr}`);
    assert.ok(m.exists('/var/lib/cloud/seed/nocloud/user-data') && m.exists('/var/lib/cloud/seed/nocloud/meta-data'), 'the late_command saved the seed');
    return seedBase;
  }
  const ud = await machineCurl([`${seedBase}user-data`]);
  assert.is(ud.status, 200, ud.text);
  const autoinstall = (parse(ud.text) as { autoinstall: Record<string, unknown> & { 'late-commands'?: string[] } }).autoinstall;
  const groups = groupNames(m.read('/etc/group'));
  for (const f of subiquityFirstBootFiles(autoinstall, groups, randomUUID())) m.write(f.path, f.content, f.mode);
  assert.is(m.read('/etc/hostname').trim(), hostname);
  // subiquity runs late-commands in the installer system, which has curl and the machine's address.
  for (const cmd of autoinstall['late-commands'] ?? []) {
    const r = await m.exec(['sh', '-c', cmd]);
    assert.is(r.code, 0, `late-command ${cmd} failed: ${r.stdout}${r.stderr}`);
  }
  return seedBase;
}

for (const p of PATHS) {
  for (const member of RUN.map((h) => MEMBERS.find((x) => x.hostname === h) as (typeof MEMBERS)[number])) {
    test(`${p.title}: ${member.role} ${member.hostname}`, async (ctx) => {
      if (missing) {
        skipNote(ctx.__test__, missing);
        return;
      }
      if (setupError) throw setupError;
      const caseStarted = Date.now();
      const mac = macOf(p, member.offset);
      const ip = ipOf(p, member.offset);
      await tb.ip(node, ['addr', 'flush', 'dev', nodeIf]);
      await tb.ip(node, ['addr', 'add', `${ip}/24`, 'dev', nodeIf]);
      const caseDir = join(work, `${p.cluster}-${member.hostname}`);
      mkdirSync(caseDir);
      const m = await MachineRoot.create({ image: image.root, workDir: caseDir, netns: node });
      const backends: Array<{ stop(): void }> = [];
      try {
        await m.installShims();
        installLike(m, p);
        const seedBase = await install(m, p, mac, hostnameOf(p, member.hostname));
        await m.must(['ssh-keygen', '-A']);
        const t = Date.now();
        const run = await runCloudInit(m, { accept: p.ubuntuRelease === '18.04' ? [] : [SUBIQUITY_NONE_DATASOURCE_WARNING] });
        const record = { run, seconds: (Date.now() - t) / 1000, caseSeconds: 0 };
        ran.set(`${p.cluster}/${member.hostname}`, record);
        const story = describeRun(run, m);

        // cloud-init ran to the end: done, no errors, nothing a 23.4+ status would call recoverable.
        assert.is(run.status.status, 'done', story);
        assert.is(run.status.code, 0, story);
        assert.equal(run.status.errors, [], story);
        assert.equal(run.problems, [], story);
        assert.ok(m.exists('/var/lib/cloud/instance/boot-finished'), story);
        const calls = m.calls();

        // racksmith received the real phone-home, and pinned this machine's real host keys.
        const facts = await storeFacts(mac);
        const events = await rs.api('GET', `/api/v1/machines/${mac}/events?limit=1000`);
        const history = events.body as Array<{ type: string; source: string; message: string; data: any }>;
        // `ready` came from the phone-home (the orchestrator may move the machine on afterwards).
        const ready = history.find((e) => e.type === 'state' && e.data?.to === 'ready');
        assert.ok(ready, events.text);
        assert.is(ready.data?.event, 'phoned-home');
        assert.is(ready.source, `http ${ip}`);
        const phoneHomes = history.filter((e) => e.type === 'phone-home');
        assert.is(phoneHomes.length, 1, `exactly one phone-home: ${events.text}`);
        const phoneHome = phoneHomes[0];
        assert.ok(phoneHome, events.text);
        // ... and it was cloud-init's phone_home module that posted it, to the URL the role config gave.
        const ciLog = m.read('/var/log/cloud-init.log');
        assert.ok(ciLog.includes(`Read from ${seedBase}phone-home (200, `), `cloud-init did not post ${seedBase}phone-home:\n${ciLog.split('\n').filter((l) => l.includes('phone')).join('\n')}`);
        assert.ok(ciLog.includes('finish: modules-final/config-phone-home: SUCCESS'), 'config-phone-home ran successfully');
        assert.is(phoneHome.source, `http ${ip}`, 'posted from the machine itself');
        assert.is(phoneHome.data?.hostname, hostnameOf(p, member.hostname), 'the host name cloud-init set');
        assert.is(phoneHome.data?.instanceId, m.read('/var/lib/cloud/data/instance-id').trim(), 'the instance cloud-init ran');
        assert.not.match(phoneHome.message, /not the current install/, 'an ordinary install is not reported as another instance');
        const onDisk = m
          .list('/etc/ssh')
          .filter((f) => /^ssh_host_.*_key\.pub$/.test(f))
          .map((f) => keyIdentity(m.read(`/etc/ssh/${f}`)))
          .sort();
        assert.ok(onDisk.length >= 3, `host keys on disk: ${onDisk.join(', ')}`);
        assert.equal([...facts.hostKeys].sort(), onDisk, 'the pinned keys are exactly the machine\'s host keys');

        // racksmith's key is authorised for its user, with passwordless sudo: proven by logging in
        // with racksmith's private key, checking the pinned host key, and running sudo -n.
        const shadow = m.read('/etc/shadow').split('\n').find((l) => l.startsWith(`${SSH_USER}:`)) ?? '';
        assert.match(shadow.split(':')[1] ?? '', /^[!*]/, `${SSH_USER} has no password to log in with`);
        const authorized = m.readOr(`/home/${SSH_USER}/.ssh/authorized_keys`, '');
        assert.ok(authorized.includes(keyIdentity(facts.publicKey)), authorized);
        m.write('/run/sshd/.keep', '');
        const sshd = m.spawn(['/usr/sbin/sshd', '-D', '-e', '-p', String(TEST_SSH_PORT), '-o', 'ListenAddress=0.0.0.0']);
        let sshdLog = '';
        sshd.stderr?.on('data', (d: Buffer) => (sshdLog += d.toString()));
        const keyFile = join(caseDir, 'id_racksmith');
        const knownHosts = join(caseDir, 'known_hosts');
        writeFileSync(keyFile, facts.privateKey.endsWith('\n') ? facts.privateKey : facts.privateKey + '\n', { mode: 0o600 });
        writeFileSync(knownHosts, facts.hostKeys.map((k) => `[${ip}]:${TEST_SSH_PORT} ${k}`).join('\n') + '\n');
        let login: { stdout: string } | null = null;
        for (let i = 0; i < 50 && login === null; i++) {
          login = await tb
            .exec(srv, 'ssh', ['-p', String(TEST_SSH_PORT), '-i', keyFile, '-o', `UserKnownHostsFile=${knownHosts}`, '-o', 'StrictHostKeyChecking=yes', '-o', 'BatchMode=yes', '-o', 'ConnectTimeout=3', `${SSH_USER}@${ip}`, 'sudo -n id -u'], { timeoutMs: 15_000 })
            .catch(() => null);
          if (login === null) await new Promise((r) => setTimeout(r, 200));
        }
        assert.ok(login, `SSH login as ${SSH_USER} failed; sshd said:\n${sshdLog.slice(-2000)}`);
        assert.is(login.stdout.trim(), '0', 'sudo -n works without a password');

        if (member.role === 'loadbalancer') {
          await checkLoadBalancer(m, p, calls, backends);
        } else {
          checkKubernetesNode(m, p, calls, await m.must(['dpkg-query', '-W', '-f', '${Package} ${Version} ${db:Status-Abbrev}\\n']), await m.must(['apt-mark', 'showhold']));
        }
        record.caseSeconds = (Date.now() - caseStarted) / 1000;
      } finally {
        keepLogs(m, `${p.cluster}-${member.hostname}`);
        for (const b of backends) b.stop();
        await m.destroy();
      }
    });
  }
}

function checkKubernetesNode(m: MachineRoot, p: PathCase, calls: readonly string[], dpkg: { stdout: string }, holds: { stdout: string }): void {
  // Swap: turned off now (recorded: the root shares the host's kernel) and for every later boot.
  assert.ok(calls.includes('swapoff -a'), `swapoff -a was not called: ${calls.join(' | ')}`);
  assert.equal(activeSwapEntries(m.read('/etc/fstab')), [], m.read('/etc/fstab'));

  // The pinned versions, installed and held (the mirror also has a newer patch release).
  const pinned = kubernetesDebVersion(p.kubernetesVersion, p.repo);
  const installed = installedVersions(dpkg.stdout);
  for (const pkg of ['kubelet', 'kubeadm', 'kubectl']) assert.is(installed.get(pkg), pinned, `${pkg} version`);
  // Docker CE too: the release validated with the cluster's Kubernetes, though the mirror has a newer one.
  const held = p.containerRuntime === 'docker' ? ['docker-ce', 'docker-ce-cli', 'kubeadm', 'kubectl', 'kubelet'] : ['kubeadm', 'kubectl', 'kubelet'];
  assert.equal(holds.stdout.split('\n').filter(Boolean).sort(), held);

  // Kernel modules and sysctls for bridged pod traffic, in place for every boot and applied now.
  const modules = m.list('/etc/modules-load.d').flatMap((f) => moduleNames(m.read(`/etc/modules-load.d/${f}`)));
  for (const mod of ['overlay', 'br_netfilter']) {
    assert.ok(modules.includes(mod), `modules-load.d lacks ${mod}`);
    assert.ok(calls.includes(`modprobe ${mod}`), `modprobe ${mod} was not called`);
  }
  const sysctls = new Map(m.list('/etc/sysctl.d').flatMap((f) => [...sysctlSettings(m.read(`/etc/sysctl.d/${f}`))]));
  for (const key of ['net.bridge.bridge-nf-call-iptables', 'net.ipv4.ip_forward']) assert.is(sysctls.get(key), '1', `sysctl ${key}`);
  assert.ok(calls.some((c) => c.startsWith('sysctl --system')), 'sysctl --system was not called');

  // The runtime's cgroup driver is systemd, like the kubelet's; the runtime and kubelet are enabled.
  if (p.containerRuntime === 'docker') {
    assert.ok(dockerExecOpts(m.read('/etc/docker/daemon.json')).includes('native.cgroupdriver=systemd'), m.read('/etc/docker/daemon.json'));
    assert.ok(installed.has('docker-ce') && installed.has('containerd.io'), 'docker-ce and containerd.io installed');
    assert.is(installed.get('docker-ce'), dockerRelease(p.codename).engine, 'docker-ce is the pinned release, not the newer one the mirror also has');
    assert.is(installed.get('docker-ce-cli'), dockerRelease(p.codename).engine, 'docker-ce-cli too');
    assert.ok(calls.includes('systemctl restart docker'), 'docker restarted to read daemon.json');
    assert.ok(m.exists('/etc/systemd/system/multi-user.target.wants/docker.service'), 'docker enabled');
  } else {
    const facts = containerdFacts(m.read('/etc/containerd/config.toml'));
    assert.is(facts.systemdCgroup, 'true', m.read('/etc/containerd/config.toml'));
    assert.is(facts.disabledPlugins, '[]', 'the CRI plugin is enabled');
    assert.ok(installed.has('containerd'), 'containerd installed');
    assert.ok(calls.includes('systemctl restart containerd'), 'containerd restarted to read its config');
    assert.ok(m.exists('/etc/systemd/system/multi-user.target.wants/containerd.service'), 'containerd enabled');
  }
  assert.ok(m.exists('/etc/systemd/system/multi-user.target.wants/kubelet.service'), 'kubelet enabled');
}

async function checkLoadBalancer(m: MachineRoot, p: PathCase, calls: readonly string[], backends: Array<{ stop(): void }>): Promise<void> {
  const cfg = m.read('/etc/haproxy/haproxy.cfg');
  const servers = haproxyServers(cfg);
  const cps = MEMBERS.filter((x) => x.role === 'control-plane');
  assert.equal(
    servers.map((s) => s.address).sort(),
    cps.map((x) => `${ipOf(p, x.offset)}:6443`).sort(),
    cfg,
  );
  assert.ok(servers.every((s) => s.check), 'every backend is health-checked');
  const check = await m.exec(['haproxy', '-c', '-f', '/etc/haproxy/haproxy.cfg']);
  assert.is(check.code, 0, check.stdout + check.stderr);
  assert.match(check.stdout + check.stderr, /Configuration file is valid/);
  const sysctls = new Map(m.list('/etc/sysctl.d').flatMap((f) => [...sysctlSettings(m.read(`/etc/sysctl.d/${f}`))]));
  assert.is(sysctls.get('net.ipv4.ip_nonlocal_bind'), '1');
  assert.ok(calls.some((c) => c.startsWith('sysctl --system')), 'sysctl --system was not called');
  assert.ok(calls.includes('systemctl restart haproxy'), 'haproxy restarted with its new config');
  assert.ok(m.exists('/etc/systemd/system/multi-user.target.wants/haproxy.service'), 'haproxy enabled');

  // Serves: haproxy started from the root with the rendered config forwards TCP to the control
  // plane. Each "API server" is the test's HTTPS server on a control-plane address, answering
  // /healthz (haproxy's health check) and naming itself on /whoami.
  const cert = join(work, 'apiserver.crt');
  const key = join(work, 'apiserver.key');
  await tb.exec(srv, 'openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '1', '-subj', '/CN=kube-apiserver', '-keyout', key, '-out', cert]);
  for (const x of cps) {
    const addr = ipOf(p, x.offset);
    await tb.ip(srv, ['addr', 'add', `${addr}/32`, 'dev', srvIf]);
    const root = join(work, `api-${x.hostname}-${p.cluster}`);
    mkdirSync(root, { recursive: true });
    writeFileSync(join(root, 'whoami'), `${hostnameOf(p, x.hostname)}\n`);
    writeFileSync(join(root, 'healthz'), 'ok');
    const child = tb.spawn(srv, process.execPath, [join(PACKAGE_ROOT, 'dist/test/lib/cloudinit/static-server.js'), root, addr, '6443', cert, key]);
    backends.push({
      stop: () => {
        child.kill('SIGKILL');
        void tb.ip(srv, ['addr', 'del', `${addr}/32`, 'dev', srvIf]).catch(() => undefined);
      },
    });
    await listening(child);
  }
  const haproxy = m.spawn(['haproxy', '-db', '-f', '/etc/haproxy/haproxy.cfg']);
  let haproxyLog = '';
  haproxy.stderr?.on('data', (d: Buffer) => (haproxyLog += d.toString()));
  const answered = new Set<string>();
  const lb = ipOf(p, 0);
  // Round robin over healthy backends: within a few requests every control plane answers.
  const deadline = Date.now() + 20_000;
  while (answered.size < cps.length && Date.now() < deadline) {
    const r = await nsCurl(tb, srv, ['--insecure', '--max-time', '2', `https://${lb}:6443/whoami`]).catch(() => null);
    if (r?.status === 200) answered.add(r.text.trim());
    await new Promise((res) => setTimeout(res, 100));
  }
  assert.equal([...answered].sort(), cps.map((x) => hostnameOf(p, x.hostname)).sort(), `haproxy did not reach every backend; it said:\n${haproxyLog.slice(-2000)}`);
}

test(`${MISSING.title}: the role setup fails at apt, and the machine ends failed with apt's error`, async (ctx) => {
  if (missing) {
    skipNote(ctx.__test__, missing);
    return;
  }
  if (setupError) throw setupError;
  const caseStarted = Date.now();
  const mac = macOf(MISSING, 3);
  const ip = ipOf(MISSING, 3);
  await tb.ip(node, ['addr', 'flush', 'dev', nodeIf]);
  await tb.ip(node, ['addr', 'add', `${ip}/24`, 'dev', nodeIf]);
  const caseDir = join(work, `${MISSING.cluster}-w1`);
  mkdirSync(caseDir);
  const m = await MachineRoot.create({ image: image.root, workDir: caseDir, netns: node });
  try {
    await m.installShims();
    installLike(m, MISSING);
    const seedBase = await install(m, MISSING, mac, hostnameOf(MISSING, 'w1'));
    await m.must(['ssh-keygen', '-A']);
    const t = Date.now();
    const run = await runCloudInit(m, { accept: [SUBIQUITY_NONE_DATASOURCE_WARNING] });
    const record = { run, seconds: (Date.now() - t) / 1000, caseSeconds: 0 };
    ran.set(`${MISSING.cluster}/w1`, record);
    const story = describeRun(run, m);

    // cloud-init itself saw the role setup fail (runcmd's script exited non-zero) …
    assert.ok(run.status.errors.some((e) => /scripts-user|runcmd/i.test(e)) || run.problems.some((p) => /scripts-user|runcmd/.test(p)), story);
    const setupLog = m.read('/var/log/racksmith-role-setup.log');
    assert.match(setupLog, /E: Version '1\.30\.7-\*' for 'kubelet' was not found/, setupLog);

    // … and so does racksmith: failed at the role setup, with the failing command and apt's error.
    const got = await rs.api('GET', `/api/v1/machines/${mac}`);
    const machine = got.body as { state: string; failure: { from: string; step: string; reason: string } | null };
    assert.is(machine.state, 'failed', `${got.text}\n${story}`);
    assert.is(machine.failure?.step, 'role-setup');
    assert.is(machine.failure?.from, 'installed');
    assert.match(machine.failure?.reason ?? '', /^`apt-get install -y kubelet=1\.30\.7-\* kubeadm=1\.30\.7-\* kubectl=1\.30\.7-\*` exited 100: E: Version '1\.30\.7-\*' for 'kubelet' was not found$/);

    const events = await rs.api('GET', `/api/v1/machines/${mac}/events?limit=1000`);
    const history = events.body as Array<{ type: string; source: string; message: string; data: any }>;
    const report = history.find((e) => e.type === 'role-setup');
    assert.ok(report, events.text);
    assert.is(report.source, `http ${ip}`, 'reported by the machine itself');
    assert.is(report.data?.status, 100);
    assert.ok((report.data?.log as string[]).some((l) => l.startsWith("E: Version '1.30.7-*' for 'kubelet' was not found")), 'the log tail carries apt\'s error');
    // The phone-home still came (after the report), and did not make the machine ready.
    const ciLog = m.read('/var/log/cloud-init.log');
    assert.ok(ciLog.includes(`Read from ${seedBase}phone-home (200, `), 'cloud-init phoned home');
    const phoneHome = history.find((e) => e.type === 'phone-home');
    assert.ok(phoneHome && history.indexOf(phoneHome) > history.indexOf(report), 'the phone-home came after the report');
    assert.is(phoneHome.data?.failed, true);
    assert.not.ok(history.some((e) => e.type === 'state' && e.data?.to === 'ready'), `never ready: ${events.text}`);
    assert.is(((await rs.api('GET', `/api/v1/machines/${mac}`)).body as { state: string }).state, 'failed');
    record.caseSeconds = (Date.now() - caseStarted) / 1000;
  } finally {
    keepLogs(m, `${MISSING.cluster}-w1`);
    await m.destroy();
  }
});

test('racksmith\'s preflight reads the same signed mirror: every check passes for both paths; the missing 1.30.7 is named', async () => {
  if (missing) return;
  if (setupError) throw setupError;
  for (const p of PATHS) {
    const r = await rs.api('POST', `/api/v1/clusters/${p.cluster}/preflight`);
    assert.is(r.status, 200, r.text);
    const failed = (r.body.checks as Array<{ id: string; state: string; detail: string }>).filter((c) => c.state !== 'ok');
    assert.equal(failed, [], `${p.cluster}: ${r.text}`);
    const pk = (r.body.checks as Array<{ id: string; detail: string }>).find((c) => c.id === 'kubernetes-packages');
    const v = kubernetesDebVersion(p.kubernetesVersion, p.repo);
    assert.is(pk?.detail, `kubelet ${v}, kubeadm ${v}, kubectl ${v}`);
    if (p.containerRuntime === 'docker') {
      const dk = (r.body.checks as Array<{ id: string; detail: string }>).find((c) => c.id === 'docker-packages');
      assert.match(dk?.detail ?? '', new RegExp(`^docker-ce ${dockerRelease(p.codename).engine.replace(/[.~]/g, '\\$&')}, `));
    }
  }
  const miss = await rs.api('POST', `/api/v1/clusters/${MISSING.cluster}/preflight`);
  assert.is(miss.body.ok, false);
  const pk = (miss.body.checks as Array<{ id: string; state: string; detail: string }>).find((c) => c.id === 'kubernetes-packages');
  assert.is(pk?.state, 'failed');
  assert.match(pk?.detail ?? '', /^kubelet has no version 1\.30\.7-\* \(it has 1\.30\.6-1\.1, 1\.30\.8-1\.1\);/);
});

test('everything came from the test mirror, to the machines: every repository\'s signed index, and packages', () => {
  if (missing) return;
  if (setupError) throw setupError;
  // racksmith's own requests (its preflight) come from the server's address; the rest from the machines.
  const all = mirrorLog.map((l) => JSON.parse(l) as { path: string; status: number; from: string });
  const fromRacksmith = all.filter((f) => f.from.replace(/^::ffff:/, '') === `${net}.1`);
  assert.ok(fromRacksmith.length > 0 && fromRacksmith.every((f) => /\/(In)?Release$|\/Packages(\.gz)?$|\.key$|\/gpg$|apt-key\.gpg$|\/cni\//.test(f.path)), 'the preflight read indexes, keys and manifests only');
  const fetched = all.filter((f) => !fromRacksmith.includes(f));
  const machines = new Set([...PATHS.flatMap((p) => MEMBERS.map((x) => ipOf(p, x.offset))), ipOf(MISSING, 3)]);
  assert.ok(fetched.length > 0 && fetched.every((f) => machines.has(f.from.replace(/^::ffff:/, ''))), 'only the machines used the mirror');
  const ok = (re: RegExp): boolean => fetched.some((f) => f.status === 200 && re.test(f.path));
  assert.ok(ok(/^\/ubuntu\/dists\/\w+\/InRelease$/), 'Ubuntu archive InRelease');
  assert.ok(ok(/^\/download\.docker\.com\/linux\/ubuntu\/dists\/\w+\/InRelease$/), 'Docker InRelease');
  assert.ok(ok(/^\/apt\.kubernetes\.io\/dists\/kubernetes-xenial\/InRelease$/), 'legacy Kubernetes InRelease');
  assert.ok(ok(/^\/pkgs\.k8s\.io\/core:\/stable:\/v1\.30\/deb\/InRelease$/), 'pkgs.k8s.io InRelease');
  assert.ok(ok(/\/haproxy_[^/]+\.deb$/) && ok(/\/containerd_[^/]+\.deb$/) && ok(/\/kubelet_[^/]+\.deb$/), 'packages downloaded from the mirror');
  const times = [...ran.entries()].map(([k, v]) => `${k} ${v.seconds.toFixed(1)} s (case ${v.caseSeconds.toFixed(1)} s)`).join(', ');
  process.stdout.write(`  cloud-init runs: ${times}\n`);
});

test.run();
