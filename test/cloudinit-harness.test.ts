import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { suite } from './lib/suite.js';
import * as assert from 'uvu/assert';
import { parse } from 'yaml';
import { pathInRoot } from './lib/cloudinit/chroot.js';
import { debconfDatasources, logProblems, parseStatus, SUBIQUITY_NONE_DATASOURCE_WARNING } from './lib/cloudinit/cloudinit.js';
import { activeSwapEntries, containerdFacts, dockerExecOpts, haproxyServers, installedVersions, keyIdentity, moduleNames, sysctlSettings } from './lib/cloudinit/checks.js';
import { controlFile, debFileName } from './lib/cloudinit/debs.js';
import { holdLock, LockTimeoutError } from './lib/cloudinit/lock.js';
import { packagesIndex } from './lib/cloudinit/mirror.js';
import { debianMirrors } from './lib/cloudinit/rootfs.js';
import { CONTAINERD_DEFAULT_CONFIG, CONTAINERD_IO_PACKAGED_CONFIG, dockerPackages, dockerRelease, kubernetesDebVersion, kubernetesPackages, newerPatch } from './lib/cloudinit/standins.js';
import { groupNames, mergeCloudInitConfig, pyYaml, subiquityCloudConfig, subiquityFirstBootFiles } from './lib/cloudinit/subiquity.js';

/**
 * The cloud-init test's own parts, without root or a network: the readers that decide pass or
 * fail, the subiquity handoff model, the stand-in packages' metadata. If one of these were wrong
 * the heavy test could pass for the wrong reason.
 */
const test = suite('cloud-init harness: readers, stand-ins, subiquity handoff');

test('logProblems keeps WARNING/ERROR records of cloud-init.log, nothing else', () => {
  const log = [
    "2026-11-25 18:32:57,498 - cc_resizefs.py[WARNING]: Device '/dev/overlay' did not exist. cannot resize",
    '2026-11-25 18:32:57,499 - util.py[DEBUG]: Running command [\'true\']',
    '2026-11-25 18:32:58,158 - util.py[ERROR]: boom',
    '  a continuation line mentioning [WARNING]: not a record',
    '2026-11-25 18:33:00,001 - cc_final_message.py[WARNING]: Used fallback datasource',
  ].join('\n');
  const problems = logProblems(log);
  assert.equal(problems, ["cc_resizefs.py[WARNING]: Device '/dev/overlay' did not exist. cannot resize", 'util.py[ERROR]: boom', 'cc_final_message.py[WARNING]: Used fallback datasource']);
  assert.equal(problems.filter((p) => !SUBIQUITY_NONE_DATASOURCE_WARNING.test(p)).length, 2);
});

test('parseStatus reads `cloud-init status --format json`, and calls garbage unparsable', () => {
  const ok = parseStatus(0, JSON.stringify({ status: 'done', errors: [] }));
  assert.is(ok.status, 'done');
  assert.equal(ok.errors, []);
  const bad = parseStatus(1, JSON.stringify({ status: 'error', errors: ["('locale', ProcessExecutionError(...))"] }));
  assert.is(bad.status, 'error');
  assert.is(bad.errors.length, 1);
  assert.is(parseStatus(1, 'Traceback').status, 'unparsable');
});

test('debconfDatasources writes what cloud-init\'s postinst writes', () => {
  assert.is(debconfDatasources('NoCloud, None'), '# to update this file, run dpkg-reconfigure cloud-init\ndatasource_list: [ NoCloud, None ]\n');
});

test('activeSwapEntries: d-i and subiquity swap lines, commented ones ignored', () => {
  assert.equal(activeSwapEntries('/dev/mapper/vg-root / ext4 errors=remount-ro 0 1\n/dev/mapper/vg-swap_1 none            swap    sw              0       0\n'), ['/dev/mapper/vg-swap_1 none            swap    sw              0       0']);
  assert.equal(activeSwapEntries('/swap.img\tnone\tswap\tsw\t0\t0\n'), ['/swap.img\tnone\tswap\tsw\t0\t0']);
  assert.equal(activeSwapEntries('#/swap.img\tnone\tswap\tsw\t0\t0\n# swap was on /dev/sda5\nUUID=x / ext4 defaults 0 1\n'), []);
});

test('installedVersions: installed and held packages count, removed ones do not', () => {
  const v = installedVersions('kubelet 1.30.6-1.1 hi \nkubectl 1.30.6-1.1 hi \ncurl 7.88.1 ii \nold 1.0 rc \n');
  assert.is(v.get('kubelet'), '1.30.6-1.1');
  assert.is(v.get('curl'), '7.88.1');
  assert.not.ok(v.has('old'));
});

test('containerdFacts: the packaged config, the default, the default after the sed, config v3', () => {
  const packaged = containerdFacts(CONTAINERD_IO_PACKAGED_CONFIG);
  assert.is(packaged.disabledPlugins, '["cri"]');
  assert.is(packaged.systemdCgroup, null);
  const def = containerdFacts(CONTAINERD_DEFAULT_CONFIG);
  assert.is(def.version, '2');
  assert.is(def.systemdCgroup, 'false');
  assert.is(def.disabledPlugins, '[]');
  // Exactly one line for the recipe's sed to change.
  assert.is(CONTAINERD_DEFAULT_CONFIG.split('SystemdCgroup = false').length, 2);
  assert.is(containerdFacts(CONTAINERD_DEFAULT_CONFIG.replace('SystemdCgroup = false', 'SystemdCgroup = true')).systemdCgroup, 'true');
  // A SystemdCgroup under another table does not count.
  assert.is(containerdFacts('version = 2\n[plugins."io.containerd.grpc.v1.cri".containerd]\n  SystemdCgroup = true\n').systemdCgroup, null);
  assert.is(containerdFacts("version = 3\n[plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]\n  SystemdCgroup = true\n").systemdCgroup, 'true');
});

test('dockerExecOpts reads daemon.json and refuses what is not an object', () => {
  assert.equal(dockerExecOpts('{"exec-opts": ["native.cgroupdriver=systemd"], "log-driver": "json-file"}'), ['native.cgroupdriver=systemd']);
  assert.equal(dockerExecOpts('{}'), []);
  assert.throws(() => dockerExecOpts('[1]'));
});

test('sysctlSettings and moduleNames read the .d files', () => {
  const s = sysctlSettings('# comment\nnet.ipv4.ip_forward = 1\n; other\nnet/bridge/bridge-nf-call-iptables=1\n-net.ipv4.ip_nonlocal_bind = 1\n');
  assert.is(s.get('net.ipv4.ip_forward'), '1');
  assert.is(s.get('net.bridge.bridge-nf-call-iptables'), '1');
  assert.is(s.get('net.ipv4.ip_nonlocal_bind'), '1');
  assert.equal(moduleNames('# k8s\noverlay\nbr_netfilter # bridged traffic\n\n'), ['overlay', 'br_netfilter']);
});

test('haproxyServers: servers per backend, with their health checks', () => {
  const cfg = 'global\n    log /dev/log local0\ndefaults\n    mode tcp\nfrontend k8s-api\n    bind *:6443\n    default_backend k8s-api\nbackend k8s-api\n    balance roundrobin\n    server cp1 10.0.0.11:6443 check\n    server cp2 10.0.0.12:6443 check # second\n    # server cp3 10.0.0.13:6443 check\nbackend other\n    server x 10.0.0.99:80\n';
  assert.equal(haproxyServers(cfg), [
    { backend: 'k8s-api', name: 'cp1', address: '10.0.0.11:6443', check: true },
    { backend: 'k8s-api', name: 'cp2', address: '10.0.0.12:6443', check: true },
    { backend: 'other', name: 'x', address: '10.0.0.99:80', check: false },
  ]);
});

test('keyIdentity drops the comment of an OpenSSH key line', () => {
  assert.is(keyIdentity('ssh-ed25519 AAAAC3Nz root@vm\n'), 'ssh-ed25519 AAAAC3Nz');
});

test('pathInRoot follows absolute links inside the root, never onto the host', () => {
  const root = mkdtempSync(join(tmpdir(), 'racksmith-root-'));
  try {
    mkdirSync(join(root, 'var/lib/cloud/instances/iid-1'), { recursive: true });
    writeFileSync(join(root, 'var/lib/cloud/instances/iid-1/boot-finished'), 'x');
    symlinkSync('/var/lib/cloud/instances/iid-1', join(root, 'var/lib/cloud/instance'));
    symlinkSync('/etc', join(root, 'escape'));
    assert.is(pathInRoot(root, '/var/lib/cloud/instance/boot-finished'), join(root, 'var/lib/cloud/instances/iid-1/boot-finished'));
    assert.is(pathInRoot(root, '/escape/passwd'), join(root, 'etc/passwd'));
    assert.is(pathInRoot(root, '/../../etc/passwd'), join(root, 'etc/passwd'));
    symlinkSync('/loop', join(root, 'loop'));
    assert.throws(() => pathInRoot(root, '/loop/x'), /too many symbolic links/);
    assert.throws(() => pathInRoot(root, 'relative'));
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test('stand-in versions: as the repositories name them; a newer patch exists to catch a missing pin', () => {
  assert.is(kubernetesDebVersion('1.18.6', 'legacy'), '1.18.6-00');
  assert.is(kubernetesDebVersion('1.30.6', 'pkgs'), '1.30.6-1.1');
  assert.throws(() => kubernetesDebVersion('1.30', 'pkgs'));
  assert.is(newerPatch('1.30.6'), '1.30.8');
  assert.is(dockerRelease('bionic').engine, '5:19.03.12~3-0~ubuntu-bionic');
  assert.is(dockerRelease('jammy').engine, '5:27.3.1-1~ubuntu.22.04~jammy');
  const names = kubernetesPackages('1.30.6', 'pkgs').map((p) => p.name);
  assert.equal(names.sort(), ['cri-tools', 'kubeadm', 'kubectl', 'kubelet', 'kubernetes-cni']);
  const kubeadm = kubernetesPackages('1.18.6', 'legacy').find((p) => p.name === 'kubeadm');
  assert.ok(kubeadm?.depends?.some((d) => d.startsWith('kubelet')), 'kubeadm pulls kubelet in, as the real one does');
});

test('controlFile and debFileName: fields dpkg-deb and apt-ftparchive expect', () => {
  const cio = dockerPackages('bionic').find((p) => p.name === 'containerd.io');
  assert.ok(cio);
  const control = controlFile(cio);
  assert.match(control, /^Package: containerd\.io\nVersion: 1\.2\.13-2\nArchitecture: amd64\n/);
  assert.match(control, /^Conflicts: containerd, runc$/m);
  assert.match(control, /\nDescription: .+\n( .+\n)+$/);
  assert.ok(cio.files.some((f) => f.path === '/etc/containerd/config.toml' && f.content.includes('disabled_plugins = ["cri"]')));
  const ce = dockerPackages('bionic').find((p) => p.name === 'docker-ce');
  assert.ok(ce);
  assert.is(debFileName(ce), 'docker-ce_5%3a19.03.12~3-0~ubuntu-bionic_amd64.deb');
});

test('packagesIndex reads Package/Version pairs', () => {
  assert.equal(packagesIndex('Package: kubelet\nVersion: 1.30.6-1.1\nArchitecture: amd64\n\nPackage: kubeadm\nVersion: 1.30.6-1.1\n'), [
    { name: 'kubelet', version: '1.30.6-1.1' },
    { name: 'kubeadm', version: '1.30.6-1.1' },
  ]);
});

test('debianMirrors reads deb822 and one-line sources, skipping disabled stanzas', () => {
  const dir = mkdtempSync(join(tmpdir(), 'racksmith-apt-'));
  try {
    mkdirSync(join(dir, 'sources.list.d'));
    writeFileSync(join(dir, 'sources.list.d', 'a.sources'), 'Types: deb\nURIs: http://off.example/debian\nSuites: bookworm\nEnabled: no\n\nTypes: deb\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\nComponents: main\n\nTypes: deb\nURIs: http://security.example/debian-security\nSuites: bookworm-security\n');
    assert.equal(debianMirrors(dir), { mirror: 'http://mirror.example/debian', security: 'http://security.example/debian-security' });
    rmSync(join(dir, 'sources.list.d', 'a.sources'));
    writeFileSync(join(dir, 'sources.list'), 'deb [arch=amd64] http://one.example/debian bookworm main\n');
    assert.is(debianMirrors(dir).mirror, 'http://one.example/debian');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('subiquity handoff: identity user first, user-data merged in (lists appended), None datasource', () => {
  const autoinstall = {
    version: 1,
    locale: 'en_US',
    identity: { hostname: 'cp1', username: 'racksmith', realname: 'racksmith provisioning', password: '!' },
    ssh: { 'install-server': true, 'allow-pw': false, 'authorized-keys': ['ssh-ed25519 AAAA racksmith'] },
    'user-data': { users: ['default', { name: 'racksmith', sudo: 'ALL=(ALL) NOPASSWD:ALL', lock_passwd: true }], growpart: { devices: ['/'] }, runcmd: [['true']] },
  };
  const cfg = subiquityCloudConfig(autoinstall, ['adm', 'sudo', 'users', 'root']);
  assert.equal(cfg['users'], [
    { name: 'racksmith', gecos: 'racksmith provisioning', passwd: '!', shell: '/bin/bash', groups: 'adm,sudo,users', lock_passwd: false, ssh_authorized_keys: ['ssh-ed25519 AAAA racksmith'] },
    'default',
    { name: 'racksmith', sudo: 'ALL=(ALL) NOPASSWD:ALL', lock_passwd: true },
  ]);
  assert.equal(cfg['growpart'], { mode: 'off', devices: ['/'] });
  assert.is(cfg['ssh_pwauth'], false);
  assert.is(cfg['locale'], 'en_US.UTF-8');
  assert.is(cfg['preserve_hostname'], true);
  // The input is not changed by the merge.
  assert.equal(autoinstall['user-data'].users.length, 2);

  const files = subiquityFirstBootFiles(autoinstall, ['sudo'], 'uuid-1');
  const installer = files.find((f) => f.path === '/etc/cloud/cloud.cfg.d/99-installer.cfg');
  assert.ok(installer);
  const parsed = parse(installer.content, { version: '1.1' }) as { datasource_list: string[]; datasource: { None: { userdata_raw: string; metadata: Record<string, string> } } };
  assert.equal(parsed.datasource_list, ['None']);
  assert.is(parsed.datasource.None.metadata['instance-id'], 'uuid-1');
  assert.match(parsed.datasource.None.userdata_raw, /^#cloud-config\n/);
  // Read as YAML 1.1 (PyYAML), growpart's mode must stay the string "off", not false.
  assert.equal((parse(parsed.datasource.None.userdata_raw, { version: '1.1' }) as { growpart: unknown }).growpart, { mode: 'off', devices: ['/'] });
  assert.ok(files.some((f) => f.path === '/etc/cloud/cloud.cfg.d/subiquity-disable-cloudinit-networking.cfg'));
  assert.is(files.find((f) => f.path === '/etc/hostname')?.content, 'cp1\n');
});

test('mergeCloudInitConfig and pyYaml edge cases', () => {
  const t: Record<string, unknown> = { a: [1], b: { c: 1 }, d: 'x' };
  mergeCloudInitConfig(t, { a: [2], b: { e: 2 }, d: ['y'] });
  assert.equal(t, { a: [1, 2], b: { c: 1, e: 2 }, d: ['y'] });
  assert.match(pyYaml({ v: 'yes', w: 'on' }), /v: "yes"\nw: "on"/);
  assert.equal(groupNames('root:x:0:\nsudo:x:27:\n\n'), ['root', 'sudo']);
});

test('holdLock: a second taker times out while the lock is held, and gets it once it is released', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'racksmith-lock-'));
  try {
    const file = join(dir, 'rootfs.lock');
    writeFileSync(file, '');
    const first = await holdLock(file, 5);
    let refused: unknown = null;
    try {
      const again = await holdLock(file, 1);
      await again.release();
    } catch (err) {
      refused = err;
    }
    assert.instance(refused, LockTimeoutError);
    assert.is((refused as LockTimeoutError).code, 'ERR_LOCK_TIMEOUT');
    await first.release();
    const second = await holdLock(file, 5);
    await second.release();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
