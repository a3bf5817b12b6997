import { execFile } from 'node:child_process';
import { createServer } from 'node:http';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Ajv } from 'ajv';
import { suite } from './lib/suite.js';
import * as assert from 'uvu/assert';
import { parse as parseYaml, stringify } from 'yaml';
import { DEFAULT_INSTALLERS } from '../server/boot/releases.js';
import { ROLES, UBUNTU_RELEASES, type Role, type UbuntuRelease } from '../server/inventory/model.js';
import { AUTOINSTALL_DIR, PACKAGE_ROOT } from '../server/lib/paths.js';
import { createRenderer } from '../server/render/templates.js';
import { haproxyContext, seedContext } from '../server/seeds/context.js';
import { renderRoleConfig, renderSeedFile, SEED_FILES, type SeedFile } from '../server/seeds/render.js';
import { otherInstance } from '../server/seeds/phone-home.js';
import { matchGolden } from './lib/golden.js';
import { INSTANCE_ID, ROLE_HOST, SEED_SETTINGS, TOKEN, fixtureCluster, fixtureMembers } from './lib/seed-fixtures.js';
import { requirements, skipNote } from './lib/tools.js';

/**
 * Every seed for every release × role, rendered from the real templates, compared with its golden
 * file and validated by the real tool: `cloud-init schema -c` (Debian's cloud-init) for every
 * cloud-config, the subiquity JSON schema (ajv) for every autoinstall section,
 * `debconf-set-selections -c` for the preseed, cloud-init's own network-config parser, `sh -n`
 * for the role setup script and `haproxy -c` for the load balancer's configuration.
 */
const run = promisify(execFile);
const test = suite('seeds: every release × role, rendered and validated by the real tools');

const TOOLS = ['cloud-init', 'debconf-set-selections', 'haproxy', 'sh', 'python3'];
const missing = requirements(TOOLS);
const renderer = createRenderer(AUTOINSTALL_DIR);
const schema = JSON.parse(readFileSync(join(PACKAGE_ROOT, 'test', 'fixtures', 'autoinstall-schema.json'), 'utf8')) as object;
const ajv = new Ajv({ strict: false, allErrors: true });
// The schema's one format: checked loosely here (ajv-formats is not a dependency).
ajv.addFormat('uri', /^[a-z][a-z0-9+.-]*:\S+$/i);
const validateAutoinstall = ajv.compile(schema);
const work = mkdtempSync(join(tmpdir(), 'racksmith-seeds-'));

/** cloud-init's own interpreter (its shebang), which has the cloudinit package. */
function cloudInitPython(): string {
  const first = readFileSync('/usr/bin/cloud-init', 'utf8').split('\n')[0] ?? '';
  return first.startsWith('#!') ? first.slice(2).trim().split(' ')[0] ?? 'python3' : 'python3';
}

interface Rendered {
  readonly release: UbuntuRelease;
  readonly role: Role;
  readonly files: Partial<Record<SeedFile, string>>;
  readonly roleConfig: string;
}

function renderAll(release: UbuntuRelease, role: Role): Rendered {
  const cluster = fixtureCluster(release);
  const members = fixtureMembers(cluster.name);
  const machine = members.find((m) => m.hostname === ROLE_HOST[role]);
  if (!machine) throw new Error('fixture machine missing');
  const installer = DEFAULT_INSTALLERS[release];
  const ctx = seedContext({ machine, cluster, members, installer, token: TOKEN, instanceId: INSTANCE_ID }, SEED_SETTINGS);
  const files: Partial<Record<SeedFile, string>> = {};
  for (const f of SEED_FILES) {
    const body = renderSeedFile(renderer, f, installer.kind, ctx);
    if (body !== null) files[f] = body;
  }
  return { release, role, files, roleConfig: renderRoleConfig(renderer, ctx) };
}

const ALL: Rendered[] = UBUNTU_RELEASES.flatMap((release) => ROLES.map((role) => renderAll(release, role)));

async function cloudInitSchema(name: string, text: string): Promise<void> {
  const file = join(work, name);
  writeFileSync(file, text);
  try {
    const { stdout } = await run('cloud-init', ['schema', '-c', file], { timeout: 60_000 });
    assert.match(stdout, /Valid cloud-config/, `${name}: ${stdout}`);
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string };
    assert.unreachable(`cloud-init schema rejects ${name}:\n${e.stdout ?? ''}${e.stderr ?? ''}`);
  }
}

test.after(() => rmSync(work, { recursive: true, force: true }));

/** Seed files that are the same for every role: one golden of each (test/seeds-os.test.ts checks them). */
const ROLE_FREE: readonly string[] = ['install-disk.sh', 'di-reporter.sh'];

test('golden files: each template × release × role', () => {
  for (const r of ALL) {
    for (const [f, body] of Object.entries(r.files)) if (!ROLE_FREE.includes(f)) matchGolden(`seeds/${r.release}/${r.role}/${f}`, body);
  }
});

test('the right files exist per installer: preseed only for 18.04', () => {
  for (const r of ALL) {
    assert.is(r.files['preseed.cfg'] !== undefined, r.release === '18.04', `${r.release} preseed`);
    for (const f of ['user-data', 'meta-data', 'vendor-data', 'network-config'] as const) assert.ok(r.files[f], `${r.release} ${r.role} ${f}`);
  }
});

test('meta-data carries the instance id and host name; network-config parses with cloud-init', async () => {
  for (const r of ALL) {
    const md = parseYaml(r.files['meta-data'] ?? '') as Record<string, unknown>;
    assert.is(md['instance-id'], INSTANCE_ID);
    assert.is(md['local-hostname'], ROLE_HOST[r.role]);
  }
  if (missing) return skipNote('network-config parse', missing);
  const sample = ALL[0]?.files['network-config'] ?? '';
  const file = join(work, 'network-config');
  writeFileSync(file, sample);
  const script = 'import sys, yaml\nfrom cloudinit.net.network_state import parse_net_config_data\nns = parse_net_config_data(yaml.safe_load(open(sys.argv[1])))\nprint(",".join(i["mac_address"] for i in ns.iter_interfaces()))';
  const { stdout } = await run(cloudInitPython(), ['-c', script, file], { timeout: 60_000 });
  assert.is(stdout.trim(), '52:54:00:77:00:10');
});

test('autoinstall: only `autoinstall:` at the top, valid against the subiquity schema, with every required part', () => {
  for (const r of ALL.filter((x) => x.release !== '18.04')) {
    const text = r.files['user-data'] ?? '';
    assert.ok(text.startsWith('#cloud-config\n'), 'user-data starts with #cloud-config');
    const doc = parseYaml(text) as Record<string, any>;
    assert.equal(Object.keys(doc), ['autoinstall'], `${r.release} ${r.role}: top-level keys`);
    const ai = doc['autoinstall'];
    const ok = validateAutoinstall(structuredClone(ai));
    assert.ok(ok, `${r.release} ${r.role}: ${JSON.stringify(validateAutoinstall.errors)}`);
    assert.is(ai.version, 1);
    assert.is(ai.identity.hostname, ROLE_HOST[r.role]);
    assert.equal(ai.ssh['authorized-keys'], [SEED_SETTINGS.sshPublicKey]);
    assert.ok(ai.storage.layout.name);
    assert.is(ai.reporting.racksmith.type, 'webhook');
    assert.is(ai.reporting.racksmith.endpoint, `${SEED_SETTINGS.baseUrl}/seed/${TOKEN}/events`);
    assert.ok((ai['late-commands'] as string[]).some((c) => c.includes(`/seed/${TOKEN}/installed`)), 'late-commands post /installed');
    // The embedded user-data is the role's cloud-config, exactly.
    assert.equal(ai['user-data'], parseYaml(r.roleConfig));
  }
});

test('the schema catches a broken autoinstall (the validator is live)', () => {
  assert.not.ok(validateAutoinstall({ identity: { hostname: 'x' } }));
  assert.not.ok(validateAutoinstall({ version: 2 }));
});

test('role config: phone_home, SSH user with passwordless sudo, per-role essentials', () => {
  for (const r of ALL) {
    const c = parseYaml(r.roleConfig) as Record<string, any>;
    assert.equal(c.phone_home, { url: `${SEED_SETTINGS.baseUrl}/seed/${TOKEN}/phone-home`, post: 'all', tries: 10 });
    const user = (c.users as any[]).find((u) => typeof u === 'object' && u.name === 'racksmith');
    assert.ok(user, 'the SSH user');
    assert.is(user.sudo, 'ALL=(ALL) NOPASSWD:ALL');
    assert.equal(user.ssh_authorized_keys, [SEED_SETTINGS.sshPublicKey]);
    const files = Object.fromEntries((c.write_files as any[]).map((f) => [f.path, String(f.content)]));
    const setup = files['/usr/local/sbin/racksmith-role-setup'] ?? '';
    if (r.role === 'loadbalancer') {
      assert.ok(c.packages.includes('haproxy'));
      assert.match(files['/etc/sysctl.d/90-racksmith-loadbalancer.conf'] ?? '', /net\.ipv4\.ip_nonlocal_bind = 1/);
      assert.match(files['/etc/racksmith/haproxy.cfg'] ?? '', /server cp1 10\.77\.0\.11:6443 check[^\n]*\n\s*server cp2 10\.77\.0\.12:6443 check/);
      assert.match(files['/etc/racksmith/haproxy.cfg'] ?? '', /balance roundrobin/);
      assert.not.match(files['/etc/racksmith/haproxy.cfg'] ?? '', /cp3/, 'a control plane without an address is no backend');
      assert.match(setup, /systemctl enable haproxy/);
      assert.match(setup, /systemctl restart haproxy/);
    } else {
      const cluster = fixtureCluster(r.release);
      assert.match(files['/etc/modules-load.d/racksmith-k8s.conf'] ?? '', /overlay\nbr_netfilter/);
      assert.match(files['/etc/sysctl.d/90-racksmith-k8s.conf'] ?? '', /net\.ipv4\.ip_forward = 1/);
      assert.match(setup, /swapoff -a/);
      assert.match(setup, /swap\[\[:space:\]\].*\/etc\/fstab/);
      assert.match(setup, /apt-mark hold kubelet kubeadm kubectl/);
      assert.ok(setup.includes(`'kubeadm=${cluster.kubernetesVersion}-*'`), 'kubeadm pinned');
      if (cluster.containerRuntime === 'docker') {
        assert.match(files['/etc/docker/daemon.json'] ?? '', /native\.cgroupdriver=systemd/);
        assert.ok(setup.includes("apt-get install -y 'docker-ce=5:19.03.*' 'docker-ce-cli=5:19.03.*' containerd.io"), 'Docker CE pinned to the release validated with 1.18');
        assert.match(setup, /apt-mark hold docker-ce docker-ce-cli/);
        assert.match(setup, /'https:\/\/apt\.kubernetes\.io\/' 'kubernetes-xenial main'/);
      } else {
        assert.match(setup, /SystemdCgroup = true/);
        const minor = cluster.kubernetesVersion.split('.')[1];
        assert.ok(setup.includes(`'https://pkgs.k8s.io/core:/stable:/v1.${minor}/deb/' '/'`), 'pkgs.k8s.io per minor');
        assert.ok(setup.includes(`'https://pkgs.k8s.io/core:/stable:/v1.${minor}/deb/Release.key'`), 'its key');
      }
    }
  }
});

test('cloud-init schema -c accepts every cloud-config: role configs, user-data, vendor-data', async () => {
  if (missing) return skipNote('cloud-init schema', missing);
  const jobs: [string, string][] = [];
  for (const r of ALL) {
    const tag = `${r.release}-${r.role}`;
    jobs.push([`${tag}-user-data`, r.files['user-data'] ?? '']);
    if (r.release !== '18.04') jobs.push([`${tag}-role`, r.roleConfig]);
  }
  jobs.push(['vendor-data', ALL[0]?.files['vendor-data'] ?? '']);
  // Two at a time: two cores.
  for (let i = 0; i < jobs.length; i += 2) await Promise.all(jobs.slice(i, i + 2).map(([n, t]) => cloudInitSchema(n, t)));
  // The tool is live: a wrong type is rejected.
  const bad = join(work, 'bad.yaml');
  writeFileSync(bad, '#cloud-config\nphone_home:\n  url: 5\n  tries: many\n');
  await run('cloud-init', ['schema', '-c', bad]).then(
    () => assert.unreachable('cloud-init accepted a broken config'),
    (err: { stdout?: string; stderr?: string }) => assert.match(`${err.stdout}${err.stderr}`, /tries/),
  );
});

test('debconf-set-selections -c accepts the preseed; every line is a well-formed question', async () => {
  if (missing) return skipNote('debconf-set-selections', missing);
  for (const r of ALL.filter((x) => x.release === '18.04')) {
    const text = r.files['preseed.cfg'] ?? '';
    const file = join(work, `preseed-${r.role}.cfg`);
    writeFileSync(file, text);
    const { stderr } = await run('debconf-set-selections', ['-c', file]);
    assert.is(stderr.trim(), '', stderr);
    // No inline comments (preseed allows comments on their own lines only).
    for (const line of text.split('\n').filter((l) => l && !l.startsWith('#'))) assert.match(line, /^(d-i|cloud-init|tasksel) \S+ (string|select|boolean|multiselect|password|note)( |$)/, line);
    assert.match(text, /^cloud-init cloud-init\/datasources multiselect NoCloud, None$/m);
    assert.match(text, /^d-i preseed\/late_command string .*\/var\/lib\/cloud\/seed\/nocloud\/user-data .*\/seed\/tok3n-[^/]+\/installed'$/m);
  }
  const broken = join(work, 'broken.cfg');
  writeFileSync(broken, 'd-i just-a-question\n');
  const out = await run('debconf-set-selections', ['-c', broken]).then((r) => r.stderr, (e: { stderr?: string }) => e.stderr ?? 'failed');
  assert.match(out, /parse error|failed/i, 'the checker is live');
});

test('sh -n accepts every role setup script', async () => {
  if (missing) return skipNote('sh -n', missing);
  for (const r of ALL) {
    const c = parseYaml(r.roleConfig) as Record<string, any>;
    const setup = (c.write_files as any[]).find((f) => f.path === '/usr/local/sbin/racksmith-role-setup');
    const file = join(work, `setup-${r.release}-${r.role}.sh`);
    writeFileSync(file, String(setup.content));
    await run('sh', ['-n', file]);
  }
});

test('the role setup reports its outcome before the phone-home: the report script compiles and posts status, failing command and log tail', async () => {
  if (missing) return skipNote('role setup report', missing);
  for (const r of ALL) {
    const c = parseYaml(r.roleConfig) as Record<string, any>;
    const files = Object.fromEntries((c.write_files as any[]).map((f) => [f.path, f]));
    const setup = String(files['/usr/local/sbin/racksmith-role-setup']?.content);
    assert.ok(setup.includes(`/usr/local/sbin/racksmith-role-report '${SEED_SETTINGS.baseUrl}/seed/${TOKEN}/role-setup' "$status" "$LOG"`), `${r.release} ${r.role}: the setup reports to its role-setup URL`);
    assert.match(setup, /\nset -eux\n/, 'the steps run traced, stopping at the first failure');
    assert.is(files['/usr/local/sbin/racksmith-role-setup']?.permissions, '0700');
    const report = String(files['/usr/local/sbin/racksmith-role-report']?.content);
    const file = join(work, `report-${r.release}-${r.role}.py`);
    writeFileSync(file, report);
    await run('python3', ['-m', 'py_compile', file]);
    // Ubuntu 18.04's Python is 3.6: the report may use no later syntax.
    await run('python3', ['-c', 'import ast, sys; ast.parse(open(sys.argv[1]).read(), feature_version=(3, 6))', file]);
  }
  // Run for real against a local server: what reaches racksmith is the form parsePhoneHome's sibling parses.
  const script = join(work, 'report.py');
  const first = parseYaml(ALL[0]?.roleConfig ?? '') as Record<string, any>;
  writeFileSync(script, String((first.write_files as any[]).find((f) => f.path === '/usr/local/sbin/racksmith-role-report')?.content));
  const log = join(work, 'setup.log');
  writeFileSync(log, '+ swapoff -a\n+ apt-get install -y kubelet=1.30.7-*\nReading package lists...\nE: Version \'1.30.7-*\' for \'kubelet\' was not found\n');
  const got: string[] = [];
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (d: Buffer) => (body += d.toString()));
    req.on('end', () => {
      got.push(`${req.method} ${req.url} ${req.headers['content-type']}\n${body}`);
      res.end('{}');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  try {
    const port = (server.address() as { port: number }).port;
    await run('python3', [script, `http://127.0.0.1:${port}/seed/${TOKEN}/role-setup`, '100', log], { timeout: 30_000 });
  } finally {
    server.close();
  }
  assert.is(got.length, 1);
  const [head, body] = (got[0] ?? '').split('\n');
  assert.is(head, `POST /seed/${TOKEN}/role-setup application/x-www-form-urlencoded`);
  const form = Object.fromEntries(new URLSearchParams(body ?? ''));
  assert.is(form['status'], '100');
  assert.is(form['command'], 'apt-get install -y kubelet=1.30.7-*');
  assert.match(form['log'] ?? '', /E: Version '1\.30\.7-\*' for 'kubelet' was not found$/);
});

test('haproxy -c accepts the load balancer config, with backends and with none yet', async () => {
  if (missing) return skipNote('haproxy -c', missing);
  const cluster = fixtureCluster('22.04');
  for (const [name, members] of [['three', fixtureMembers(cluster.name)], ['none', []]] as const) {
    const cfg = renderer.render('roles/haproxy.cfg.njk', { ...haproxyContext(cluster, members) });
    matchGolden(`seeds/haproxy-${name}.cfg`, cfg);
    const file = join(work, `haproxy-${name}.cfg`);
    writeFileSync(file, cfg);
    const { stdout, stderr } = await run('haproxy', ['-c', '-f', file]);
    assert.match(stdout + stderr, /Configuration file is valid/);
  }
});

test('a value that would break its YAML or its line is quoted or refused', () => {
  const cluster = fixtureCluster('22.04');
  const members = fixtureMembers(cluster.name);
  const machine = { ...members[1]!, hostname: 'cp1: {evil: true}' };
  const ctx = seedContext({ machine, cluster, members, installer: DEFAULT_INSTALLERS['22.04'], token: TOKEN, instanceId: INSTANCE_ID }, SEED_SETTINGS);
  const doc = parseYaml(renderSeedFile(renderer, 'user-data', 'subiquity', ctx) ?? '') as Record<string, any>;
  assert.is(doc['autoinstall'].identity.hostname, 'cp1: {evil: true}');
  const pre = seedContext({ machine: { ...machine, hostname: 'a\nd-i preseed/late_command string reboot' }, cluster: fixtureCluster('18.04'), members, installer: DEFAULT_INSTALLERS['18.04'], token: TOKEN, instanceId: INSTANCE_ID }, SEED_SETTINGS);
  assert.throws(() => renderSeedFile(renderer, 'preseed.cfg', 'debian-installer', pre), /one line/);
  assert.ok(stringify({}).length > 0);
});

test('phone-home: another instance is told only where racksmith\'s instance id reaches the system (18.04)', () => {
  // debian-installer: the late_command copies racksmith's meta-data into the installed system.
  assert.is(otherInstance('debian-installer', 'iid-a', 'iid-a'), false);
  assert.is(otherInstance('debian-installer', 'iid-old', 'iid-a'), true);
  assert.is(otherInstance('debian-installer', null, 'iid-a'), false);
  // subiquity: the installed system runs with subiquity's own random instance-id, every time.
  assert.is(otherInstance('subiquity', '0b0c5a2e-7c1d-4e4f-9f3a-0f2d6d1f8f7e', 'iid-a'), false);
  assert.is(otherInstance(null, 'iid-old', 'iid-a'), false);
});

test.run();
