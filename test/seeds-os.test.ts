import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Ajv } from 'ajv';
import { suite } from './lib/suite.js';
import * as assert from 'uvu/assert';
import { parse as parseYaml } from 'yaml';
import { AGENT_INSTALLER, DEFAULT_INSTALLERS, clusterInstaller, installerTables } from '../server/boot/releases.js';
import { ROLES, type Cluster, type Machine } from '../server/inventory/model.js';
import { installMethodProblem, OS_IDS, type InstallMethod, type OsId } from '../server/inventory/os.js';
import { AUTOINSTALL_DIR, PACKAGE_ROOT } from '../server/lib/paths.js';
import { createRenderer } from '../server/render/templates.js';
import { seedContext, type SeedSettings } from '../server/seeds/context.js';
import { isInstallDisk, subiquityMatch } from '../server/seeds/install-disk.js';
import { renderRoleConfig, renderSeedFile, SEED_FILES, type SeedFile } from '../server/seeds/render.js';
import { matchGolden } from './lib/golden.js';
import { INSTANCE_ID, ROLE_HOST, SEED_SETTINGS, TOKEN, fixtureClusterOs, fixtureMembers } from './lib/seed-fixtures.js';
import { requirements, skipNote } from './lib/tools.js';

/**
 * The seeds of the new operating system and install method — Debian 12 by d-i preseed, any OS by
 * image through the deploy agent — the apt proxy in every seed, and the install disk rule in its
 * d-i and subiquity forms: golden files, and each file checked by the tool that reads it
 * (debconf-set-selections, cloud-init's schema and network parser, the subiquity schema, sh).
 */
const run = promisify(execFile);
const test = suite('seeds: Debian 12, image deployment, the apt proxy and the install disk rule');
const missing = requirements(['cloud-init', 'debconf-set-selections', 'sh', 'busybox']);
const renderer = createRenderer(AUTOINSTALL_DIR);
const work = mkdtempSync(join(tmpdir(), 'racksmith-seeds-os-'));
const schema = JSON.parse(readFileSync(join(PACKAGE_ROOT, 'test', 'fixtures', 'autoinstall-schema.json'), 'utf8')) as object;
const ajv = new Ajv({ strict: false, allErrors: true });
ajv.addFormat('uri', /^[a-z][a-z0-9+.-]*:\S+$/i);
const validateAutoinstall = ajv.compile(schema);
const PROXY = 'http://10.77.0.1:3142';
const IMAGE = { url: 'http://10.77.0.1:8080/artifacts/images/debian-12.img.zst?mac=52-54-00-77-00-10', sha256: 'a'.repeat(64), format: 'zst', rawSize: 1342177280 };

test.after(() => rmSync(work, { recursive: true, force: true }));

const TABLES = installerTables(DEFAULT_INSTALLERS);

function render(os: OsId, method: InstallMethod, role: (typeof ROLES)[number], settings: Partial<SeedSettings> = {}, machineOver: Partial<Machine> = {}, clusterOver: Partial<Cluster> = {}): Partial<Record<SeedFile, string>> {
  const cluster = { ...fixtureClusterOs(os, method), ...clusterOver };
  const members = fixtureMembers(cluster.name);
  const machine = { ...members.find((m) => m.hostname === ROLE_HOST[role])!, ...machineOver };
  const installer = clusterInstaller(cluster, TABLES);
  if (!installer) throw new Error(`no installer for ${os} by ${method}`);
  const ctx = { ...seedContext({ machine, cluster, members, installer, token: TOKEN, instanceId: INSTANCE_ID }, { ...SEED_SETTINGS, ...settings }), image: IMAGE };
  const out: Partial<Record<SeedFile, string>> = {};
  for (const f of SEED_FILES) {
    const body = renderSeedFile(renderer, f, installer.kind, ctx);
    if (body !== null) out[f] = body;
  }
  return out;
}

async function cloudInitValid(name: string, text: string): Promise<void> {
  const file = join(work, name);
  writeFileSync(file, text);
  const { stdout } = await run('cloud-init', ['schema', '-c', file], { timeout: 60_000 }).catch((e: { stdout?: string; stderr?: string }) => ({ stdout: `${e.stdout ?? ''}${e.stderr ?? ''}` }));
  assert.match(stdout, /Valid cloud-config/, `${name}: ${stdout}`);
}

test('which OS installs which way: preseed for 18.04 and Debian, autoinstall for 20.04+, images for all', () => {
  for (const os of OS_IDS) {
    assert.is(installMethodProblem(os, 'image'), null, `${os} by image`);
    assert.is(installMethodProblem(os, 'preseed') === null, os === 'ubuntu-18.04' || os === 'debian-12', `${os} by preseed`);
    assert.is(installMethodProblem(os, 'autoinstall') === null, os.startsWith('ubuntu-') && os !== 'ubuntu-18.04', `${os} by autoinstall`);
  }
  assert.is(clusterInstaller({ os: 'debian-12', installMethod: 'preseed' }, TABLES)?.release, 'debian-12');
  assert.is(clusterInstaller({ os: 'ubuntu-22.04', installMethod: 'image' }, TABLES), AGENT_INSTALLER);
  // Neither Debian's installer nor the deploy agent exists for ARM64 machines: no installer, not an amd64 one.
  assert.is(clusterInstaller({ os: 'debian-12', installMethod: 'preseed' }, TABLES, 'arm64'), null);
  assert.is(clusterInstaller({ os: 'ubuntu-22.04', installMethod: 'image' }, TABLES, 'arm64'), null);
  assert.is(clusterInstaller({ os: 'ubuntu-22.04', installMethod: 'autoinstall' }, TABLES, 'arm64')?.arch, 'arm64');
  assert.match(DEFAULT_INSTALLERS['debian-12'].upstream['linux'] ?? '', /^http:\/\/deb\.debian\.org\/debian\/dists\/bookworm\/main\/installer-amd64\/current\/images\/netboot\/debian-installer\/amd64\/linux$/);
});

test('Debian 12 by preseed: one template with 18.04, the Debian answers, the rule for the disk; debconf accepts it', async () => {
  for (const role of ROLES) {
    const files = render('debian-12', 'preseed', role);
    assert.equal(Object.keys(files).sort(), ['di-reporter.sh', 'install-disk.sh', 'meta-data', 'network-config', 'preseed.cfg', 'user-data', 'vendor-data']);
    for (const f of ['preseed.cfg', 'user-data', 'meta-data'] as const) matchGolden(`seeds/debian-12/${role}/${f}`, files[f] ?? '');
    const pre = files['preseed.cfg'] ?? '';
    assert.match(pre, /^d-i mirror\/http\/hostname string deb\.debian\.org$/m);
    assert.match(pre, /^d-i mirror\/http\/directory string \/debian$/m);
    assert.match(pre, /^d-i mirror\/suite string bookworm$/m);
    assert.match(pre, /^tasksel tasksel\/first multiselect standard, ssh-server$/m);
    assert.not.match(pre, /partman-auto\/disk string/, 'the disk comes from the rule, never a fixed /dev/sda');
    assert.match(pre, /^d-i partman\/early_command string wget -q -O \/tmp\/racksmith-install-disk\.sh '[^']+\/seed\/tok3n-[^/]+\/install-disk\.sh' && sh \/tmp\/racksmith-install-disk\.sh$/m);
    // The reporter runs in the background with every inherited descriptor closed.
    assert.match(pre, /^d-i preseed\/early_command string .*di-reporter\.sh.* <\/dev\/null >\/dev\/null 2>&1 3>&- 4>&- 5>&- 6>&- 7>&- 8>&- 9>&- &\)$/m);
    // The user-data is the role's cloud-config itself, as for 18.04.
    assert.match(files['user-data'] ?? '', /^#cloud-config\n# racksmith: \S+ \S+ of cluster \S+ \(Debian 12/);
  }
  if (missing) return skipNote('debconf-set-selections', missing);
  const file = join(work, 'debian.cfg');
  writeFileSync(file, render('debian-12', 'preseed', 'worker', { aptProxy: PROXY })['preseed.cfg'] ?? '');
  const { stderr } = await run('debconf-set-selections', ['-c', file]);
  assert.is(stderr.trim(), '', stderr);
});

test('the d-i scripts: the disk rule verbatim, the reporter; sh and busybox sh parse both', async () => {
  const files = render('debian-12', 'preseed', 'worker', {}, { installDisk: 'serial:S5GXNF0R123456' });
  const disk = files['install-disk.sh'] ?? '';
  const rule = readFileSync(join(PACKAGE_ROOT, 'agent', 'disk-rule.sh'), 'utf8');
  assert.ok(disk.includes(rule), 'install-disk.sh carries agent/disk-rule.sh unchanged');
  matchGolden('seeds/debian-12/install-disk.sh', disk.replace(rule, '# (agent/disk-rule.sh, verbatim)\n'));
  matchGolden('seeds/debian-12/di-reporter.sh', files['di-reporter.sh'] ?? '');
  assert.match(disk, /rs_pick_disk \/sys 'smallest' '8000000000' 'serial:S5GXNF0R123456'/);
  assert.match(disk, /debconf-set partman-auto\/disk "\/dev\/\$RS_DISK"/);
  assert.match(disk, /debconf-set grub-installer\/bootdev "\/dev\/\$RS_DISK"/);
  // d-i's busybox wget cannot POST: the events go over nc to racksmith's address and port.
  for (const text of [disk, files['di-reporter.sh'] ?? '']) assert.match(text, /\| nc -w 10 '10\.77\.0\.1' '8080'/);
  assert.match(files['di-reporter.sh'] ?? '', /'\/seed\/tok3n-Abcdefghijklmnopqrstuv\/events'/);
  if (missing) return skipNote('sh -n', missing);
  for (const [name, text] of [['install-disk.sh', disk], ['di-reporter.sh', files['di-reporter.sh'] ?? '']] as const) {
    const file = join(work, name);
    writeFileSync(file, text);
    await run('sh', ['-n', file]);
    await run('busybox', ['sh', '-n', file]);
  }
});

test('image deployment: deploy.env for the agent, cloud.cfg for the installed cloud-init, the role config as user-data', async () => {
  for (const os of ['debian-12', 'ubuntu-22.04'] as const) {
    const files = render(os, 'image', 'loadbalancer', { aptProxy: PROXY }, { installDisk: '/dev/disk/by-id/nvme-Samsung_SSD_980_PRO_1TB_S5GXNF0R123456' });
    assert.equal(Object.keys(files).sort(), ['cloud.cfg', 'deploy.env', 'meta-data', 'network-config', 'user-data', 'vendor-data']);
    const env = Object.fromEntries((files['deploy.env'] ?? '').split('\n').filter((l) => l && !l.startsWith('#')).map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
    assert.equal(env, {
      IMAGE_URL: IMAGE.url,
      IMAGE_SHA256: IMAGE.sha256,
      IMAGE_FORMAT: 'zst',
      IMAGE_SIZE: '1342177280',
      DISK_RULE: 'smallest',
      DISK_MIN_BYTES: '8000000000',
      INSTALL_DISK: '/dev/disk/by-id/nvme-Samsung_SSD_980_PRO_1TB_S5GXNF0R123456',
      INSTANCE_ID,
      HOSTNAME: 'lb1',
    });
    const cfg = parseYaml(files['cloud.cfg'] ?? '') as Record<string, any>;
    assert.equal(cfg['datasource_list'], ['NoCloud', 'None']);
    assert.equal(cfg['network'], { version: 2, ethernets: { boot: { match: { macaddress: '52:54:00:77:00:10' }, dhcp4: true } } });
    const role = parseYaml(files['user-data'] ?? '') as Record<string, any>;
    assert.equal(role['apt'], { proxy: PROXY, conf: 'Acquire::http::Proxy::10.77.0.1 "DIRECT";\n' });
    assert.ok(role['packages'].includes('haproxy'));
    assert.match(files['user-data'] ?? '', /^# racksmith: loadbalancer lb1 of cluster \S+ \((Debian 12|Ubuntu 22\.04)\)\.$/m);
  }
  matchGolden('seeds/image/deploy.env', render('debian-12', 'image', 'worker')['deploy.env'] ?? '');
  matchGolden('seeds/image/cloud.cfg', render('debian-12', 'image', 'worker')['cloud.cfg'] ?? '');
  if (missing) return skipNote('cloud-init', missing);
  await cloudInitValid('image-user-data', render('debian-12', 'image', 'loadbalancer', { aptProxy: PROXY })['user-data'] ?? '');
  // cloud-init's own parser takes the network part of cloud.cfg.
  const cfgFile = join(work, 'cloud.cfg');
  writeFileSync(cfgFile, render('debian-12', 'image', 'worker')['cloud.cfg'] ?? '');
  const python = (readFileSync('/usr/bin/cloud-init', 'utf8').split('\n')[0] ?? '').slice(2).trim().split(' ')[0] ?? 'python3';
  const script = 'import sys, yaml\nfrom cloudinit.net.network_state import parse_net_config_data\nns = parse_net_config_data(yaml.safe_load(open(sys.argv[1]))["network"])\nprint(",".join(i["mac_address"] for i in ns.iter_interfaces()))';
  assert.is((await run(python, ['-c', script, cfgFile])).stdout.trim(), '52:54:00:77:00:21');
});

test('the apt proxy reaches every seed: d-i mirror/http/proxy, autoinstall proxy, cloud-init apt proxy', async () => {
  const pre = render('ubuntu-18.04', 'preseed', 'worker', { aptProxy: PROXY })['preseed.cfg'] ?? '';
  assert.match(pre, /^d-i mirror\/http\/proxy string http:\/\/10\.77\.0\.1:3142$/m);
  assert.match(render('ubuntu-18.04', 'preseed', 'worker')['preseed.cfg'] ?? '', /^d-i mirror\/http\/proxy string$/m, 'no proxy: the question answered empty');
  const ai = parseYaml(render('ubuntu-22.04', 'autoinstall', 'worker', { aptProxy: PROXY })['user-data'] ?? '') as Record<string, any>;
  assert.is(ai['autoinstall'].proxy, PROXY);
  assert.ok(validateAutoinstall(structuredClone(ai['autoinstall'])), JSON.stringify(validateAutoinstall.errors));
  assert.equal(ai['autoinstall']['user-data'].apt, { proxy: PROXY, conf: 'Acquire::http::Proxy::10.77.0.1 "DIRECT";\n' }, "racksmith's own host is never proxied");
  // The Kubernetes repository's key comes through the proxy as well, like the packages it signs.
  const setup = (ai['autoinstall']['user-data'].write_files as { path: string; content: string }[]).find((f) => f.path === '/usr/local/sbin/racksmith-role-setup')?.content ?? '';
  assert.match(setup, /curl -fsSL --retry 5 --proxy 'http:\/\/10\.77\.0\.1:3142' --noproxy '10\.77\.0\.1' "\$1"/);
  assert.not.ok((parseYaml(render('ubuntu-22.04', 'autoinstall', 'worker')['user-data'] ?? '') as Record<string, any>)['autoinstall'].proxy);
  if (missing) return skipNote('cloud-init', missing);
  const cluster = fixtureClusterOs('ubuntu-24.04', 'autoinstall');
  const members = fixtureMembers(cluster.name);
  const ctx = seedContext({ machine: members[4]!, cluster, members, installer: DEFAULT_INSTALLERS['24.04'], token: TOKEN, instanceId: INSTANCE_ID }, { ...SEED_SETTINGS, aptProxy: PROXY });
  await cloudInitValid('proxy-role', renderRoleConfig(renderer, ctx));
});

test('subiquity: the rule and an explicit disk as storage match specs, valid against the autoinstall schema', () => {
  const cases: [OsId, 'smallest' | 'largest' | 'first', string | null, unknown][] = [
    ['ubuntu-22.04', 'smallest', null, { size: 'smallest' }],
    ['ubuntu-22.04', 'largest', null, { size: 'largest' }],
    ['ubuntu-22.04', 'first', null, {}],
    ['ubuntu-24.04', 'first', null, [{ path: '/dev/nvme0n1' }, { path: '/dev/sda' }, { path: '/dev/vda' }, { path: '/dev/mmcblk0' }]],
    ['ubuntu-22.04', 'smallest', '/dev/sdb', { path: '/dev/sdb' }],
    ['ubuntu-22.04', 'smallest', 'serial:ZC1ABCDE', { serial: '*ZC1ABCDE' }],
    ['ubuntu-22.04', 'largest', '/dev/disk/by-id/ata-ST4000NM0035-1V4107_ZC1ABCDE', { serial: 'ST4000NM0035-1V4107_ZC1ABCDE' }],
    ['ubuntu-20.04', 'smallest', '/dev/disk/by-id/nvme-Samsung_SSD_980_PRO_1TB_S5GX', { serial: 'Samsung_SSD_980_PRO_1TB_S5GX' }],
  ];
  for (const [os, rule, disk, expected] of cases) {
    assert.equal(subiquityMatch(os, rule, disk), expected, `${os} ${rule} ${disk}`);
    const ai = parseYaml(render(os, 'autoinstall', 'worker', {}, { installDisk: disk }, { installDiskRule: rule })['user-data'] ?? '') as Record<string, any>;
    assert.equal(ai['autoinstall'].storage.layout.match, expected);
    assert.ok(validateAutoinstall(structuredClone(ai['autoinstall'])), JSON.stringify(validateAutoinstall.errors));
  }
  // A name subiquity cannot match by fails that machine's seed with the reason, not silently.
  assert.throws(() => subiquityMatch('ubuntu-22.04', 'smallest', '/dev/disk/by-id/wwn-0x5000c500a1b2c3d4'), /subiquity matches disks by serial/);
  assert.throws(() => render('ubuntu-22.04', 'autoinstall', 'worker', {}, { installDisk: '/dev/disk/by-id/wwn-0x5000c500a1b2c3d4' }), /subiquity matches disks by serial/);
});

test('installDisk: the forms the rule reads, nothing that could break a line, a word or a YAML scalar', () => {
  for (const ok of ['/dev/sda', '/dev/nvme0n1', '/dev/vdb', '/dev/disk/by-id/ata-ST4000NM0035-1V4107_ZC1ABCDE', '/dev/disk/by-id/wwn-0x5000c500a1b2c3d4', 'serial:S5GXNF0R123456', 'serial:VIRTIO-DATA']) assert.ok(isInstallDisk(ok), ok);
  for (const bad of ['sda', '/dev/', '/dev/disk', '/dev/sda 1', "/dev/sda'", '/dev/disk/by-path/pci-0000:00:1f.2-ata-1', '/dev/disk/by-id/', 'serial:', 'serial:a b', 'serial:x\ny', '/dev/$(reboot)', '/dev/../etc/passwd', `serial:${'x'.repeat(200)}`]) {
    assert.not.ok(isInstallDisk(bad), JSON.stringify(bad));
  }
});

test.run();
