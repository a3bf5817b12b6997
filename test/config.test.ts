import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { suite } from './lib/suite.js';
import * as assert from 'uvu/assert';
import { ConfigError, loadConfig } from '../server/config/load.js';
import { SETTINGS, kebab, type SettingName } from '../server/config/settings.js';
import { CLI_PATH, PACKAGE_ROOT } from '../server/lib/paths.js';
import { freePort, runCli, startRacksmith, type CliRun } from './lib/racksmith.js';

/**
 * Configuration: YAML file < RACKSMITH_* environment < flags; every bad value stops startup with
 * one line naming the setting, the value and what is allowed; secrets never echoed. In-process
 * for the matrix, and through the real `racksmith serve` for what an operator sees.
 */
const test = suite('config: precedence, validation, one-line errors, hidden secrets');

const dir = mkdtempSync(join(tmpdir(), 'racksmith-config-'));
let n = 0;
function yamlFile(text: string): string {
  const f = join(dir, `c${++n}.yaml`);
  writeFileSync(f, text);
  return f;
}

function load(opts: { yaml?: string; env?: Record<string, string>; flags?: Partial<Record<SettingName, string>> }) {
  return loadConfig({ file: opts.yaml === undefined ? undefined : yamlFile(opts.yaml), env: opts.env ?? {}, flags: opts.flags ?? {} });
}

function configError(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    assert.instance(err, ConfigError);
    return (err as Error).message;
  }
  assert.unreachable('expected a ConfigError');
  return '';
}

type Run = CliRun;

/** The real CLI with a throwaway data directory and DHCP/TFTP off, plus the given variables. */
function cli(args: readonly string[], env: Record<string, string> = {}): Promise<Run> {
  return runCli(args, { RACKSMITH_DATA_DIR: join(dir, 'data'), RACKSMITH_DHCP_MODE: 'off', RACKSMITH_TFTP_PORT: '0', ...env });
}

/** SIGTERM, then SIGKILL if it has not exited within 10 s; the exit code. */
async function stopChild(child: ChildProcess, exited: Promise<number | null>): Promise<number | null> {
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
  const code = await exited;
  clearTimeout(timer);
  return code;
}

test.after(() => {
  rmSync(dir, { recursive: true, force: true });
});

test('defaults are the ones INTERFACE.md lists', () => {
  const c = load({});
  assert.is(c.dataDir, './data');
  assert.is(c.httpAddress, '0.0.0.0');
  assert.is(c.httpPort, 8080);
  assert.is(c.dhcpMode, 'proxy');
  assert.is(c.dhcpPort, 67);
  assert.is(c.tftpPort, 69);
  assert.is(c.tftpRoot, '/usr/lib/ipxe');
  assert.is(c.sshUser, 'racksmith');
  assert.is(c.dhcpInterface, undefined);
  assert.is(c.dhcpRange, undefined);
  assert.is(c.adminToken, undefined);
  assert.is(c.artifactsDir, undefined);
});

test('every setting has a RACKSMITH_ environment name and a kebab-case flag', () => {
  for (const [name, spec] of Object.entries(SETTINGS)) {
    assert.match(spec.env, /^RACKSMITH_[A-Z0-9_]+$/);
    assert.is(spec.env, 'RACKSMITH_' + kebab(name).replace(/-/g, '_').toUpperCase(), `${name}: env name and flag name disagree`);
  }
});

test('precedence: YAML < environment < flags, for every source combination', () => {
  const yaml = 'http-port: 1001\nlog-level: warn\n';
  const env = { RACKSMITH_HTTP_PORT: '1002', RACKSMITH_LOG_LEVEL: 'error' };
  const flags = { httpPort: '1003', logLevel: 'debug' } as const;
  assert.is(load({ yaml }).httpPort, 1001);
  assert.is(load({ yaml }).logLevel, 'warn');
  assert.is(load({ yaml, env }).httpPort, 1002);
  assert.is(load({ yaml, env }).logLevel, 'error');
  assert.is(load({ yaml, env, flags }).httpPort, 1003);
  assert.is(load({ yaml, env, flags }).logLevel, 'debug');
  assert.is(load({ yaml, flags }).httpPort, 1003);
  assert.is(load({ env, flags }).httpPort, 1003);
  assert.is(load({ env }).httpPort, 1002);
  // An empty variable is "not set", as in a compose file's `RACKSMITH_HTTP_PORT=`.
  assert.is(load({ yaml, env: { RACKSMITH_HTTP_PORT: '' } }).httpPort, 1001);
});

test('YAML: kebab or camel keys, native types, RACKSMITH_CONFIG names the file', () => {
  const c = load({ yaml: 'httpPort: 1234\ndhcp-dns: [10.0.0.53, 10.0.0.54]\ndhcp-ignore-unknown: true\n' });
  assert.is(c.httpPort, 1234);
  assert.equal(c.dhcpDns, ['10.0.0.53', '10.0.0.54']);
  assert.is(c.dhcpIgnoreUnknown, true);
  assert.equal(load({ env: { RACKSMITH_DHCP_DNS: '10.0.0.53, 10.0.0.54' } }).dhcpDns, ['10.0.0.53', '10.0.0.54']);
  const viaEnv = loadConfig({ env: { RACKSMITH_CONFIG: yamlFile('tftp-port: 0\n') }, flags: {} });
  assert.is(viaEnv.tftpPort, 0);
  assert.is(load({ yaml: '' }).httpPort, 8080);
  assert.is(load({ yaml: '# only a comment\n' }).httpPort, 8080);
});

const BAD: readonly { flags?: Partial<Record<SettingName, string>>; env?: Record<string, string>; yaml?: string; setting: string; value: string; allowed: RegExp }[] = [
  { flags: { httpPort: '99999' }, setting: 'http-port', value: '"99999"', allowed: /integer from 0 to 65535/ },
  { flags: { httpPort: 'eighty' }, setting: 'http-port', value: '"eighty"', allowed: /integer from 0 to 65535/ },
  { env: { RACKSMITH_HTTP_PORT: '-1' }, setting: 'http-port', value: '"-1"', allowed: /integer from 0 to 65535/ },
  { yaml: 'http-port: 8080.5\n', setting: 'http-port', value: '8080.5', allowed: /integer from 0 to 65535/ },
  { env: { RACKSMITH_DHCP_MODE: 'bogus' }, setting: 'dhcp-mode', value: '"bogus"', allowed: /"off"\|"proxy"\|"authoritative"/ },
  { flags: { httpAddress: '300.1.1.1' }, setting: 'http-address', value: '"300.1.1.1"', allowed: /IPv4 address/ },
  { flags: { dhcpRange: '10.0.0.9-10.0.0.1' }, setting: 'dhcp-range', value: '"10.0.0.9-10.0.0.1"', allowed: /range such as/ },
  { yaml: 'log-level: loud\n', setting: 'log-level', value: '"loud"', allowed: /"fatal"\|"error"/ },
  { flags: { sshUser: 'Root!' }, setting: 'ssh-user', value: '"Root!"', allowed: /Unix user name/ },
  { flags: { tftpMaxBlksize: '100' }, setting: 'tftp-max-blksize', value: '"100"', allowed: /integer from 512 to 65464/ },
  { env: { RACKSMITH_DHCP_IGNORE_UNKNOWN: 'maybe' }, setting: 'dhcp-ignore-unknown', value: '"maybe"', allowed: /boolean/ },
  { yaml: 'efi-bootfile: grub.efi\n', setting: 'efi-bootfile', value: '"grub.efi"', allowed: /"ipxe.efi"\|"snponly.efi"/ },
  { yaml: 'http-port: [1, 2]\n', setting: 'http-port', value: '[1,2]', allowed: /integer/ },
];

test('a bad value names the setting, where it came from, the value and what is allowed', () => {
  for (const c of BAD) {
    const msg = configError(() => load(c));
    assert.ok(msg.startsWith(`invalid setting ${c.setting} (`), msg);
    assert.ok(msg.includes(c.value), `${msg} does not show ${c.value}`);
    assert.match(msg, c.allowed);
    assert.not.match(msg, /\n/);
    const from = c.flags ? `--${c.setting}` : c.env ? Object.keys(c.env)[0] : `${c.setting} in `;
    assert.ok(msg.includes(from as string), `${msg} does not say it came from ${from}`);
  }
  assert.match(configError(() => load({ flags: { dhcpMode: 'authoritative' } })), /^invalid setting dhcp-range .*needs a pool/);
});

test('an unknown YAML key is refused, naming it and the allowed keys', () => {
  const msg = configError(() => load({ yaml: 'http-port: 8080\ncolour: red\n' }));
  assert.match(msg, /unknown setting "colour"/);
  assert.match(msg, /allowed: data-dir, .*http-port/);
  assert.match(configError(() => load({ yaml: '- a\n- b\n' })), /expected a mapping/);
  assert.match(configError(() => load({ yaml: 'a: [\n' })), /not valid YAML/);
  assert.match(configError(() => loadConfig({ file: join(dir, 'missing.yaml'), env: {}, flags: {} })), /cannot read it \(ENOENT\)/);
});

test('the DHCP cache threshold is a fraction from 0 to below 1, from any source', () => {
  assert.is(load({}).dhcpCacheThreshold, 0.25);
  assert.is(load({ env: { RACKSMITH_DHCP_CACHE_THRESHOLD: '0' } }).dhcpCacheThreshold, 0);
  assert.is(load({ env: { RACKSMITH_DHCP_CACHE_THRESHOLD: '.5' } }).dhcpCacheThreshold, 0.5);
  assert.is(load({ yaml: 'dhcp-cache-threshold: 0.1\n' }).dhcpCacheThreshold, 0.1);
  for (const bad of ['1', '1.5', '-0.1', 'a quarter', '0.2.5']) {
    assert.match(configError(() => load({ env: { RACKSMITH_DHCP_CACHE_THRESHOLD: bad } })), /dhcp-cache-threshold .*expected a fraction from 0 to below 1/, bad);
  }
});

test('secret settings are shown as (hidden), never echoed', () => {
  const token = 'short-secret';
  for (const m of [
    configError(() => load({ env: { RACKSMITH_ADMIN_TOKEN: token } })),
    configError(() => load({ yaml: `admin-token: ${token}\n` })),
    configError(() => load({ flags: { secretKey: token } })),
    configError(() => load({ env: { RACKSMITH_SECRET_KEY: 'ab'.repeat(31) } })),
  ]) {
    assert.match(m, /\(hidden\)/);
    assert.not.ok(m.includes(token) || m.includes('ab'.repeat(31)), m);
  }
  // The admins' SSH keys file names public keys: nothing in it is secret.
  const PUBLIC = new Set(['adminSshKeysFile']);
  for (const [name, spec] of Object.entries(SETTINGS)) {
    if (/token|key|password|secret/i.test(name) && !PUBLIC.has(name)) assert.ok((spec as { secret?: boolean }).secret, `${name} looks secret but is not marked so`);
  }
});

test('racksmith serve with a bad value: exit 1 and exactly one line, naming setting, value and what is allowed', async () => {
  const runs: [Run, RegExp][] = [
    [await cli(['serve', '--http-port', '99999']), /^racksmith: invalid setting http-port \(--http-port\): "99999" — expected an integer from 0 to 65535\n$/],
    [await cli(['serve'], { RACKSMITH_DHCP_MODE: 'sometimes' }), /^racksmith: invalid setting dhcp-mode \(RACKSMITH_DHCP_MODE\): "sometimes" — .*"off"\|"proxy"\|"authoritative"\n$/],
    [await cli(['serve', '--config', yamlFile('http-address: 10.0.0.256\n')]), /^racksmith: invalid setting http-address \(http-address in .*\): "10\.0\.0\.256" — expected an IPv4 address.*\n$/],
    [await cli(['serve', '--config', yamlFile('http-port: 8080\nhttp_port: 8081\n')]), /^racksmith: config file .*: unknown setting "http_port" \(allowed: .*\)\n$/],
    [await cli(['serve'], { RACKSMITH_ADMIN_TOKEN: 'tiny' }), /^racksmith: invalid setting admin-token \(RACKSMITH_ADMIN_TOKEN\): \(hidden\) — expected at least 16 characters\n$/],
    [await cli(['serve'], { RACKSMITH_SECRET_KEY: 'not-a-key' }), /^racksmith: invalid setting secret-key \(RACKSMITH_SECRET_KEY\): \(hidden\) — expected 64 hex characters or 32 bytes in base64\n$/],
  ];
  for (const [r, expected] of runs) {
    assert.is(r.code, 1, r.stderr);
    assert.match(r.stderr, expected);
    assert.is(r.stderr.split('\n').filter(Boolean).length, 1);
    assert.is(r.stdout, '', 'nothing on stdout');
  }
  assert.not.ok(runs.some(([r]) => r.stderr.includes('tiny') || r.stderr.includes('not-a-key')));
});

test('racksmith serve: a flag beats the environment, which beats the YAML file (the port it listens on)', async () => {
  const [p1, p2, p3] = [await freePort(), await freePort(), await freePort()];
  const yaml = yamlFile(`http-port: ${p1}\nhttp-address: 127.0.0.1\nlog-level: warn\n`);
  // YAML and environment: the harness waits for health on the environment's port.
  const rs = await startRacksmith({ httpPort: p2, env: { RACKSMITH_CONFIG: yaml } });
  try {
    const onYamlPort = await fetch(`http://127.0.0.1:${p1}/healthz`, { signal: AbortSignal.timeout(1000) }).then(
      () => true,
      () => false,
    );
    assert.not.ok(onYamlPort, 'listening on the YAML port although the environment set another');
  } finally {
    assert.is(await rs.stop(), 0);
    rs.cleanup();
  }
  // YAML, environment and a flag: the flag's port.
  const data = mkdtempSync(join(tmpdir(), 'racksmith-config-data-'));
  const child = spawn(process.execPath, [CLI_PATH, 'serve', '--http-port', String(p3)], {
    env: { PATH: process.env['PATH'] ?? '', RACKSMITH_CONFIG: yaml, RACKSMITH_HTTP_PORT: String(p2), RACKSMITH_DATA_DIR: data, RACKSMITH_DHCP_MODE: 'off', RACKSMITH_TFTP_PORT: '0' },
    stdio: 'ignore',
  });
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  try {
    let up = false;
    for (let i = 0; i < 100 && !up && child.exitCode === null; i++) {
      up = await fetch(`http://127.0.0.1:${p3}/healthz`, { signal: AbortSignal.timeout(500) }).then(
        (r) => r.ok,
        () => false,
      );
      if (!up) await new Promise((r) => setTimeout(r, 100));
    }
    assert.ok(up, 'not listening on the flag port');
    const onEnvPort = await fetch(`http://127.0.0.1:${p2}/healthz`, { signal: AbortSignal.timeout(1000) }).then(
      () => true,
      () => false,
    );
    assert.not.ok(onEnvPort);
  } finally {
    assert.is(await stopChild(child, exited), 0);
    rmSync(data, { recursive: true, force: true });
  }
});

test('npm start\'s serve (DHCP and TFTP off) needs no interface or address named', async () => {
  const pkg = JSON.parse(readFileSync(join(PACKAGE_ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string> };
  const args = (pkg.scripts['start'] ?? '').split('cli.js ')[1]?.split(/\s+/) ?? [];
  assert.equal(args.slice(0, 1), ['serve']);
  const port = await freePort();
  const data = mkdtempSync(join(tmpdir(), 'racksmith-npm-start-'));
  // Only what npm start gives it: its flags, and no DHCP, TFTP or interface settings at all.
  const child = spawn(process.execPath, [CLI_PATH, ...args], { env: { PATH: process.env['PATH'] ?? '', RACKSMITH_DATA_DIR: data, RACKSMITH_HTTP_PORT: String(port), RACKSMITH_HTTP_ADDRESS: '127.0.0.1' }, stdio: 'ignore' });
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  try {
    let health: { services: Record<string, { state: string }> } | null = null;
    for (let i = 0; i < 150 && !health && child.exitCode === null; i++) {
      health = await fetch(`http://127.0.0.1:${port}/healthz`, { signal: AbortSignal.timeout(500) }).then(
        async (r) => (r.ok ? ((await r.json()) as { services: Record<string, { state: string }> }) : null),
        () => null,
      );
      if (!health) await new Promise((r) => setTimeout(r, 100));
    }
    assert.ok(health, `npm start's serve did not come up (exit ${child.exitCode})`);
    assert.is(health?.services['dhcp']?.state, 'off');
    assert.is(health?.services['tftp']?.state, 'off');
  } finally {
    assert.is(await stopChild(child, exited), 0);
    rmSync(data, { recursive: true, force: true });
  }
});

test('secrets are not in the server output after a normal start', async () => {
  const adminToken = 'bootstrap-token-' + 'q'.repeat(24);
  const secretKey = 'c0ffee'.repeat(10) + 'beef';
  const rs = await startRacksmith({ env: { RACKSMITH_ADMIN_TOKEN: adminToken, RACKSMITH_SECRET_KEY: secretKey, RACKSMITH_LOG_LEVEL: 'trace' } });
  try {
    const r = await fetch(`${rs.url}/api/v1/clusters`, { headers: { authorization: `Bearer ${adminToken}` } });
    assert.is(r.status, 200);
  } finally {
    await rs.stop();
    rs.cleanup();
  }
  assert.ok(rs.output().length > 100);
  assert.not.ok(rs.output().includes(adminToken), 'the admin token is in the output');
  assert.not.ok(rs.output().includes(secretKey), 'the secrets key is in the output');
});

test.run();
