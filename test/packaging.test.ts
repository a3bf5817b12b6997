import { execFile } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { suite } from './lib/suite.js';
import * as assert from 'uvu/assert';
import { parse as parseYaml } from 'yaml';
import { loadConfig } from '../server/config/load.js';
import { SETTINGS } from '../server/config/settings.js';
import { PACKAGE_ROOT } from '../server/lib/paths.js';
import { requirements, skipNote } from './lib/tools.js';

const run = promisify(execFile);

/**
 * Packaging without a container engine: Debian's `docker-compose config` parses and resolves the
 * compose file (host network, capabilities, data volume, settings it passes are valid); the
 * Dockerfile's stages are read line by line; the systemd unit passes `systemd-analyze verify`
 * with no warning and its hardening is checked key by key and scored offline.
 */
const test = suite('packaging: Dockerfile, docker-compose.yml, systemd unit');

const DATA = '/var/lib/racksmith';
const ARTIFACTS = '/var/lib/racksmith-artifacts';
const file = (name: string): string => readFileSync(join(PACKAGE_ROOT, name), 'utf8');

test('docker-compose config: host network, the three capabilities, the data volume, valid settings', async () => {
  const missing = requirements(['docker-compose']);
  if (missing) return skipNote('docker-compose config', missing);
  // A clean environment: only what compose needs, so the operator's shell cannot change the result.
  const { stdout } = await run('docker-compose', ['-f', 'docker-compose.yml', 'config'], { cwd: PACKAGE_ROOT, env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin', RACKSMITH_ADVERTISE_ADDRESS: '10.77.0.1' } });
  const doc = parseYaml(stdout) as any;
  const svc = doc.services?.racksmith;
  assert.ok(svc, 'no racksmith service');
  assert.is(svc.network_mode, 'host');
  assert.equal([...svc.cap_add].sort(), ['NET_ADMIN', 'NET_BIND_SERVICE', 'NET_RAW']);
  assert.is(svc.privileged, undefined, 'no privileged mode: the three capabilities are enough');
  const volume = (svc.volumes as (string | { type: string; source: string; target: string })[]).map((v) => (typeof v === 'string' ? v : `${v.source}:${v.target}`));
  assert.ok(volume.some((v) => /^racksmith-data:\/var\/lib\/racksmith(:rw)?$/.test(v)), `volumes: ${volume.join(', ')}`);
  assert.ok('racksmith-data' in doc.volumes);
  assert.ok(svc.build, 'builds from the Dockerfile');
  assert.is(svc.stop_signal, 'SIGTERM');

  const env = svc.environment as Record<string, string>;
  assert.is(env['RACKSMITH_DATA_DIR'], DATA);
  assert.is(env['RACKSMITH_ADVERTISE_ADDRESS'], '10.77.0.1');
  const known = new Set<string>(Object.values(SETTINGS).map((s) => s.env));
  for (const name of Object.keys(env)) assert.ok(known.has(name), `${name} is not a racksmith setting`);
  // What compose hands the process is a valid configuration (empty values mean "default").
  const config = loadConfig({ env, flags: {} });
  assert.is(config.dataDir, DATA);
  assert.is(config.dhcpMode, 'proxy');
  assert.is(config.tftpRoot, '/usr/lib/ipxe');
  assert.is(config.adminToken, undefined);
});

test('docker-compose profile artifacts-nginx: nginx on the host network reads the artifacts volume and fills every variable of the shipped template', async () => {
  const missing = requirements(['docker-compose']);
  if (missing) return skipNote('docker-compose config', missing);
  const env = { PATH: process.env['PATH'] ?? '/usr/bin:/bin', RACKSMITH_ADVERTISE_ADDRESS: '10.77.0.1', RACKSMITH_ARTIFACTS_URL: 'http://10.77.0.1:8081' };
  const { stdout } = await run('docker-compose', ['-f', 'docker-compose.yml', '--profile', 'artifacts-nginx', 'config'], { cwd: PACKAGE_ROOT, env });
  const doc = parseYaml(stdout) as any;
  const front = doc.services?.['artifacts-nginx'];
  const rs = doc.services?.racksmith;
  assert.ok(front && rs);
  assert.equal(front.profiles, ['artifacts-nginx']);
  assert.is(front.network_mode, 'host');
  assert.match(front.image, /^nginx:/);
  const volumes = (front.volumes as string[]).map(String);
  assert.ok(volumes.includes(`racksmith-artifacts:${ARTIFACTS}:ro`), volumes.join(', '));
  const template = volumes.find((v) => v.endsWith(':/etc/nginx/templates/default.conf.template:ro'));
  assert.ok(template?.startsWith(join(PACKAGE_ROOT, 'packaging', 'nginx', 'racksmith-artifacts.conf.template')), 'the shipped template, in place of the default server');
  assert.ok((rs.volumes as string[]).map(String).includes(`racksmith-artifacts:${ARTIFACTS}:rw`));
  const needed = new Set([...file('packaging/nginx/racksmith-artifacts.conf.template').matchAll(/\$\{([A-Z_]+)\}/g)].map((m) => m[1]));
  assert.equal([...needed].sort(), Object.keys(front.environment).sort(), 'every template variable, nothing else');
  // The front and racksmith agree: the same directories, racksmith's port, the front trusted, its URL in the scripts.
  const config = loadConfig({ env: rs.environment, flags: {} });
  assert.equal([front.environment.ARTIFACTS_DIR, front.environment.ARTIFACTS_CACHE_DIR], [config.artifactsDir, config.artifactsCacheDir]);
  assert.is(front.environment.RACKSMITH_UPSTREAM, `127.0.0.1:${config.httpPort}`);
  assert.equal(config.artifactsFronts, ['127.0.0.1']);
  assert.is(config.artifactsUrl, 'http://10.77.0.1:8081');
});

test('docker-compose profile ha: PostgreSQL on loopback and a second instance, both on one database and one secret key, apart in everything else', async () => {
  const missing = requirements(['docker-compose']);
  if (missing) return skipNote('docker-compose config', missing);
  const key = 'ab'.repeat(32);
  const url = 'postgres://racksmith:pw@127.0.0.1:5432/racksmith';
  const env = {
    PATH: process.env['PATH'] ?? '/usr/bin:/bin',
    RACKSMITH_SECRET_KEY: key,
    RACKSMITH_DB_PASSWORD: 'pw',
    RACKSMITH_DATABASE_URL: url,
    RACKSMITH_ADVERTISE_ADDRESS: '10.77.0.1',
    RACKSMITH_DHCP_INTERFACE: 'eth1',
    RACKSMITH_B_ADVERTISE_ADDRESS: '10.78.0.1',
    RACKSMITH_B_DHCP_INTERFACE: 'eth2',
  };
  const { stdout } = await run('docker-compose', ['-f', 'docker-compose.yml', '--profile', 'ha', 'config'], { cwd: PACKAGE_ROOT, env });
  const doc = parseYaml(stdout) as any;
  const [a, b, db] = [doc.services?.racksmith, doc.services?.['racksmith-b'], doc.services?.postgres];
  assert.ok(a && b && db);
  assert.equal([b.profiles, db.profiles], [['ha'], ['ha']]);
  assert.match(db.image, /^postgres:15/);
  assert.ok((db.command as string[]).includes('listen_addresses=127.0.0.1'), 'the database listens on loopback only');
  assert.is(db.environment.POSTGRES_PASSWORD, 'pw');
  const [ca, cb] = [loadConfig({ env: a.environment, flags: {} }), loadConfig({ env: b.environment, flags: {} })];
  assert.equal([ca.databaseUrl, cb.databaseUrl], [url, url]);
  assert.equal([ca.secretKey, cb.secretKey], [key, key]);
  assert.not.equal(ca.instanceName, cb.instanceName);
  assert.not.equal(ca.httpPort, cb.httpPort, 'both on the host network: two HTTP ports');
  assert.equal([ca.dhcpInterface, cb.dhcpInterface], ['eth1', 'eth2']);
  assert.equal([ca.advertiseAddress, cb.advertiseAddress], ['10.77.0.1', '10.78.0.1']);
  const dataVolume = (svc: any): string | undefined => (svc.volumes as string[]).map(String).find((v) => v.endsWith(':/var/lib/racksmith:rw'));
  assert.not.equal(dataVolume(a), dataVolume(b), 'each instance its own data directory');
  assert.equal(b.depends_on, { postgres: { condition: 'service_healthy' } });
  const known = new Set<string>(Object.values(SETTINGS).map((x) => x.env));
  for (const name of Object.keys(b.environment)) assert.ok(known.has(name), `${name} is not a racksmith setting`);
});

test('Dockerfile: node:20-bookworm-slim stages, npm ci + build, Debian ipxe/ipmitool/openssh-client, the data volume', () => {
  const lines = file('Dockerfile')
    .replace(/\\\n/g, ' ')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l && !l.startsWith('#'));
  const from = lines.filter((l) => l.startsWith('FROM '));
  assert.equal(from, ['FROM node:20-bookworm-slim AS build', 'FROM node:20-bookworm-slim']);
  const runtime = lines.slice(lines.indexOf('FROM node:20-bookworm-slim'));
  const build = lines.slice(0, lines.indexOf('FROM node:20-bookworm-slim'));
  assert.ok(build.some((l) => /^RUN npm ci\b/.test(l)));
  assert.ok(build.some((l) => /npm run build/.test(l)));
  const install = runtime.find((l) => /apt-get install/.test(l)) ?? '';
  for (const pkg of ['ipxe', 'ipmitool', 'openssh-client']) assert.match(install, new RegExp(`\\b${pkg}\\b`));
  assert.ok(runtime.some((l) => l.includes(`RACKSMITH_DATA_DIR=${DATA}`)));
  assert.ok(runtime.some((l) => l.includes('RACKSMITH_TFTP_ROOT=/usr/lib/ipxe')));
  assert.ok(runtime.includes(`VOLUME ["${DATA}", "${ARTIFACTS}"]`));
  assert.ok(runtime.includes('ENTRYPOINT ["racksmith"]'));
  assert.ok(runtime.includes('CMD ["serve"]'));
  // What the runtime stage copies from the build stage is what a build here produces.
  for (const l of runtime.filter((x) => x.startsWith('COPY --from=build'))) {
    for (const src of l.split(/\s+/).slice(2, -1)) {
      const rel = src.replace(/^\/src\/?/, '');
      if (['boot-templates', 'autoinstall', 'node_modules'].includes(rel)) continue; // made or installed in the build stage
      assert.ok(existsSync(join(PACKAGE_ROOT, rel)), `the runtime stage copies ${rel}, which a build does not make`);
    }
  }
  assert.match(file('server/cli.ts'), /^#!\/usr\/bin\/env node\n/, 'the bin needs its shebang to run as `racksmith`');
  const ignored = file('.dockerignore').split('\n').map((l) => l.trim());
  for (const x of ['node_modules', 'dist', 'data', '.git']) assert.ok(ignored.includes(x), `.dockerignore lacks ${x}`);
  for (const x of ['package.json', 'package-lock.json', 'tsconfig.json', 'server']) assert.not.ok(ignored.includes(x), `.dockerignore drops ${x}, which the build needs`);
});

function unitKeys(): Map<string, string[]> {
  const keys = new Map<string, string[]>();
  let section = '';
  for (const raw of file('packaging/racksmith.service').split('\n')) {
    const line = raw.trim();
    if (!line || line.startsWith('#')) continue;
    const s = /^\[(\w+)\]$/.exec(line);
    if (s) {
      section = s[1] as string;
      continue;
    }
    const eq = line.indexOf('=');
    const key = `${section}.${line.slice(0, eq)}`;
    keys.set(key, [...(keys.get(key) ?? []), line.slice(eq + 1)]);
  }
  return keys;
}

test('systemd unit: capabilities for ports 67/69 without root, hardening, the data directory writable', () => {
  const k = unitKeys();
  const one = (key: string): string => {
    const v = k.get(key);
    assert.ok(v && v.length === 1, `${key}: ${JSON.stringify(v)}`);
    return (v as string[])[0] as string;
  };
  assert.match(one('Service.ExecStart'), /\/dist\/server\/cli\.js serve$/);
  assert.is.not(one('Service.User'), 'root');
  const caps = ['CAP_NET_ADMIN', 'CAP_NET_BIND_SERVICE', 'CAP_NET_RAW'];
  assert.equal(one('Service.AmbientCapabilities').split(/\s+/).sort(), caps);
  assert.equal(one('Service.CapabilityBoundingSet').split(/\s+/).sort(), caps);
  assert.is(one('Service.NoNewPrivileges'), 'yes');
  assert.is(one('Service.ProtectSystem'), 'strict');
  assert.ok(one('Service.ReadWritePaths').split(/\s+/).includes(DATA));
  assert.ok((k.get('Service.Environment') ?? []).includes(`RACKSMITH_DATA_DIR=${DATA}`));
  assert.is(one('Service.StateDirectory'), 'racksmith');
  assert.is(one('Service.KillSignal'), 'SIGTERM');
  for (const key of ['ProtectHome', 'PrivateTmp', 'PrivateDevices', 'ProtectKernelTunables', 'ProtectKernelModules', 'ProtectControlGroups', 'RestrictSUIDSGID', 'LockPersonality']) {
    assert.is(one(`Service.${key}`), 'yes', key);
  }
  // DHCP may need raw packet sockets; os.networkInterfaces() needs netlink.
  for (const family of ['AF_INET', 'AF_PACKET', 'AF_NETLINK']) assert.ok(one('Service.RestrictAddressFamilies').includes(family));
  // V8's JIT writes then executes code pages: this would kill node at start.
  assert.not.ok(k.has('Service.MemoryDenyWriteExecute'));
  assert.is(one('Install.WantedBy'), 'multi-user.target');
});

test('systemd-analyze verify passes with no warning; the offline security score is low', async () => {
  const missing = requirements(['systemd-analyze']);
  if (missing) return skipNote('systemd-analyze', missing);
  const unit = join(PACKAGE_ROOT, 'packaging', 'racksmith.service');
  const verify = await run('systemd-analyze', ['verify', unit]).then(
    (r) => ({ code: 0, stderr: r.stderr }),
    (err: { code: number; stderr: string }) => ({ code: err.code, stderr: err.stderr }),
  );
  assert.is(verify.code, 0, verify.stderr);
  // Unknown keys are only warnings (exit 0): any line here is a mistake in the unit.
  assert.is(verify.stderr.trim(), '');
  const security = await run('systemd-analyze', ['security', '--offline=yes', unit]).then(
    (r) => r.stdout,
    (err: { stdout: string }) => err.stdout,
  );
  const score = Number(/Overall exposure level for racksmith\.service: ([\d.]+)/.exec(security)?.[1]);
  assert.ok(score < 3, `exposure ${score}: ${security.slice(-500)}`);
});

test('the artifacts-nginx drop-in: verified with the unit, its cache directory readable by nginx, exposure unchanged', async () => {
  const missing = requirements(['systemd-analyze']);
  if (missing) return skipNote('systemd-analyze', missing);
  const dir = mkdtempSync(join(tmpdir(), 'racksmith-unit-'));
  try {
    copyFileSync(join(PACKAGE_ROOT, 'packaging', 'racksmith.service'), join(dir, 'racksmith.service'));
    mkdirSync(join(dir, 'racksmith.service.d'));
    copyFileSync(join(PACKAGE_ROOT, 'packaging', 'racksmith-artifacts-nginx.conf'), join(dir, 'racksmith.service.d', 'artifacts-nginx.conf'));
    // The unit's own directory first in the search path, so that its drop-in directory is read.
    const env = { ...process.env, SYSTEMD_UNIT_PATH: `${dir}:` };
    const verify = await run('systemd-analyze', ['verify', join(dir, 'racksmith.service')], { env }).then(
      (r) => ({ code: 0, stderr: r.stderr }),
      (err: { code: number; stderr: string }) => ({ code: err.code, stderr: err.stderr }),
    );
    assert.is(verify.code, 0, verify.stderr);
    assert.is(verify.stderr.trim(), '');
    const security = await run('systemd-analyze', ['security', '--offline=yes', join(dir, 'racksmith.service')], { env }).then(
      (r) => r.stdout,
      (err: { stdout: string }) => err.stdout,
    );
    assert.ok(Number(/Overall exposure level for racksmith\.service: ([\d.]+)/.exec(security)?.[1]) < 3);
    const keys = file('packaging/racksmith-artifacts-nginx.conf');
    assert.match(keys, /^CacheDirectoryMode=0755$/m);
    const env2: Record<string, string> = Object.fromEntries([...keys.matchAll(/^Environment=(\w+)=(.*)$/gm)].map((m) => [m[1] as string, m[2] as string]));
    const config = loadConfig({ env: { ...env2, RACKSMITH_DATA_DIR: DATA }, flags: {} });
    assert.ok(config.artifactsDir?.startsWith('/var/cache/racksmith/') && config.artifactsCacheDir === config.artifactsDir, 'outside the private data directory');
    assert.equal(config.artifactsFronts, ['127.0.0.1']);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
