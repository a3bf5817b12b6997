import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { suite } from './lib/suite.js';
import * as assert from 'uvu/assert';
import { SETTINGS, kebab } from '../server/config/settings.js';
import { PACKAGE_ROOT } from '../server/lib/paths.js';
import { freePort, runCli, startRacksmith, type CliRun, type RacksmithProcess } from './lib/racksmith.js';
import { requirements, skipNote } from './lib/tools.js';

/**
 * The `racksmith` command as an admin uses it, against a real running server: help, tokens for
 * each role, clusters and machines through the API, table output for people and --json for
 * scripts, and the exit codes (0 done, 1 failed, 2 usage).
 */
const test = suite('cli: help, tokens, clusters and machines against a real server, exit codes');

let rs: RacksmithProcess;
const tokens: Record<string, string> = {};
const work = mkdtempSync(join(tmpdir(), 'racksmith-cli-'));

/** The CLI as the given role, talking to the test server. */
function as(role: 'admin' | 'operator' | 'viewer', args: readonly string[]): Promise<CliRun> {
  return runCli(args, { RACKSMITH_URL: rs.url, RACKSMITH_TOKEN: tokens[role] ?? '' });
}

function ok(r: CliRun): string {
  assert.is(r.code, 0, `exit ${r.code}: ${r.stderr}`);
  return r.stdout;
}

/** Rows of a table: the columns are where the header words start. */
function parseTable(text: string): Record<string, string>[] {
  const [header, ...lines] = text.trimEnd().split('\n');
  assert.ok(header, 'no header line');
  const starts = [...header.matchAll(/\S+/g)].map((m) => ({ name: m[0].toLowerCase(), at: m.index ?? 0 }));
  return lines.map((line) =>
    Object.fromEntries(
      starts.map((s, i) => {
        const end = starts[i + 1]?.at ?? line.length;
        // A cell ends where the next column starts: anything crossing it means misaligned columns.
        if (end < line.length) assert.is(line[end - 1], ' ', `column ${starts[i + 1]?.name} is misaligned in: ${line}`);
        return [s.name, line.slice(s.at, end).trim()];
      }),
    ),
  );
}

test.before(async () => {
  rs = await startRacksmith({ env: { RACKSMITH_LOG_LEVEL: 'warn' } });
});

test.after(async () => {
  await rs?.stop();
  rs?.cleanup();
  rmSync(work, { recursive: true, force: true });
});

test('racksmith --help lists every command; no command is a usage error', async () => {
  const help = ok(await runCli(['--help']));
  for (const c of ['serve', 'token create', 'machines list|add|set|rm|import', 'clusters list|create|show', 'version']) assert.ok(help.includes(c), `--help lacks ${c}`);
  const none = await runCli([]);
  assert.is(none.code, 2);
  assert.ok(none.stdout.includes('Usage: racksmith'));
  const version = JSON.parse(readFileSync(join(PACKAGE_ROOT, 'package.json'), 'utf8')).version as string;
  assert.is(ok(await runCli(['version'])).trim(), version);
  assert.is(ok(await runCli(['--version'])).trim(), version);
});

test('racksmith serve --help lists every setting with its flag and environment name', async () => {
  const help = ok(await runCli(['serve', '--help']));
  assert.ok(help.includes('--config'));
  for (const [name, spec] of Object.entries(SETTINGS)) {
    const line = help.split('\n').find((l) => l.trimStart().startsWith(`--${kebab(name)} `));
    assert.ok(line, `serve --help lacks --${kebab(name)}`);
    assert.ok(line.includes(spec.env), `--${kebab(name)}'s line lacks ${spec.env}`);
  }
  for (const sub of [['machines', '--help'], ['clusters', '--help'], ['token', '--help'], ['token', 'create', '--help'], ['machines', 'add', '--help']]) {
    assert.match(ok(await runCli(sub)), /^Usage:/);
  }
});

test('token create for each role: printed once, accepted with that role', async () => {
  for (const role of ['admin', 'operator', 'viewer'] as const) {
    const r = await runCli(['token', 'create', '--role', role, '--name', `${role} from the cli test`], rs.storeEnv);
    tokens[role] = ok(r).trim();
    assert.match(tokens[role] as string, /^rs_[A-Za-z0-9_-]{43}$/);
  }
  assert.is(new Set(Object.values(tokens)).size, 3);
  for (const role of ['admin', 'operator', 'viewer'] as const) assert.is((await as(role, ['clusters', 'list'])).code, 0);
  // Writes need admin: the others get the server's 403 as one line and exit 1.
  for (const role of ['operator', 'viewer'] as const) {
    const r = await as(role, ['clusters', 'create', '--name', 'nope', '--ubuntu-release', '22.04', '--kubernetes-version', '1.28.4', '--container-runtime', 'containerd', '--cni', 'flannel']);
    assert.is(r.code, 1);
    assert.match(r.stderr, new RegExp(`^racksmith: 403 ERR_FORBIDDEN: this needs an admin token; yours is ${role}\\n$`));
  }
  const bad = await runCli(['token', 'create', '--role', 'root'], rs.storeEnv);
  assert.is(bad.code, 2);
  assert.match(bad.stderr, /--role must be one of viewer, operator, admin/);
});

test('clusters create | list | show: table for people, --json for scripts', async () => {
  const created = ok(await as('admin', ['clusters', 'create', '--name', 'rack1', '--ubuntu-release', '18.04', '--kubernetes-version', '1.18.6', '--container-runtime', 'docker', '--cni', 'weave']));
  const [row] = parseTable(created);
  assert.equal(row, { name: 'rack1', os: 'ubuntu-18.04', install: 'preseed', kubernetes: '1.18.6', runtime: 'docker', cni: 'weave', endpoint: '-', machines: '0', state: 'pending' });
  ok(await as('admin', ['clusters', 'create', '--name', 'rack2', '--ubuntu-release', '24.04', '--kubernetes-version', 'v1.30.2', '--container-runtime', 'containerd', '--cni', 'calico', '--pod-subnet', '10.50.0.0/16']));
  const list = parseTable(ok(await as('viewer', ['clusters', 'list'])));
  assert.equal(list.map((c) => c['name']), ['rack1', 'rack2']);
  const json = JSON.parse(ok(await as('viewer', ['clusters', 'list', '--json'])));
  assert.is(json[1].kubernetesVersion, '1.30.2');
  assert.is(json[1].podSubnet, '10.50.0.0/16');
  const shown = JSON.parse(ok(await as('viewer', ['clusters', 'show', 'rack1', '--json'])));
  assert.is(shown.name, 'rack1');
  assert.equal(shown.machines, []);
});

test('machines add (every MAC form) | list | set | rm, table and --json', async () => {
  const forms = ['52:54:00:C1:00:01', '52-54-00-c1-00-02', '5254.00c1.0003', '525400c10004'];
  for (const [i, mac] of forms.entries()) {
    const args = ['machines', 'add', '--mac', mac, '--hostname', `n${i + 1}`, '--role', i === 0 ? 'loadbalancer' : 'worker', '--cluster', 'rack1', '--ip', `10.8.0.${i + 1}`, '--rack', 'r1'];
    if (i === 0) args.push('--bmc-address', '10.8.1.1', '--bmc-username', 'admin', '--bmc-password', 'cli-bmc-secret');
    const [row] = parseTable(ok(await as('admin', args)));
    assert.is(row?.['mac'], `52:54:00:c1:00:0${i + 1}`);
    assert.is(row?.['state'], 'assigned');
  }
  const table = parseTable(ok(await as('viewer', ['machines', 'list', '--cluster', 'rack1'])));
  assert.equal(table.map((m) => m['hostname']), ['n1', 'n2', 'n3', 'n4']);
  assert.equal(table[0], { mac: '52:54:00:c1:00:01', hostname: 'n1', role: 'loadbalancer', cluster: 'rack1', ip: '10.8.0.1', rack: 'r1', state: 'assigned', step: '-', disk: '-' });
  const workers = JSON.parse(ok(await as('viewer', ['machines', 'list', '--role', 'worker', '--json'])));
  assert.is(workers.length, 3);
  const lb = JSON.parse(ok(await as('viewer', ['machines', 'list', '--role', 'loadbalancer', '--json'])))[0];
  assert.is(lb.bmc.passwordSet, true);
  assert.not.ok(JSON.stringify(lb).includes('cli-bmc-secret'));
  // The load balancer's address becomes the cluster's endpoint.
  const show = ok(await as('viewer', ['clusters', 'show', 'rack1'])).split('\n\n');
  assert.is(parseTable(show[0] ?? '')[0]?.['endpoint'], '10.8.0.1:6443');
  assert.equal(parseTable(show[1] ?? '').map((m) => m['mac']), ['52:54:00:c1:00:01', '52:54:00:c1:00:02', '52:54:00:c1:00:03', '52:54:00:c1:00:04']);

  const set = JSON.parse(ok(await as('admin', ['machines', 'set', '5254.00c1.0002', '--hostname', 'n2b', '--rack', 'none', '--json'])));
  assert.is(set.hostname, 'n2b');
  assert.is(set.rack, null);
  const removed = await as('admin', ['machines', 'rm', '52-54-00-C1-00-04']);
  assert.is(ok(removed).trim(), 'deleted 52-54-00-C1-00-04');
  assert.is(JSON.parse(ok(await as('viewer', ['machines', 'list', '--json']))).length, 3);
});

test('machines import FILE.csv: all rows, or an error naming row and column and nothing stored', async () => {
  const good = join(work, 'rack.csv');
  writeFileSync(
    good,
    ['mac,hostname,role,cluster,ip,rack,bmc_address,bmc_username,bmc_password', '52:54:00:c2:00:01,m1,control-plane,rack2,10.9.0.1,r2,,,', '52:54:00:c2:00:02,m2,worker,rack2,10.9.0.2,r2,10.9.1.2,admin,pw2', '52:54:00:c2:00:03,m3,worker,rack2,,r2,,,'].join('\n') + '\n',
  );
  const out = ok(await as('admin', ['machines', 'import', good]));
  assert.ok(out.startsWith('imported 3 machine(s)\n'), out);
  assert.equal(parseTable(out.split('\n').slice(1).join('\n')).map((m) => m['hostname']), ['m1', 'm2', 'm3']);

  const bad = join(work, 'bad.csv');
  writeFileSync(bad, 'mac,hostname,role,cluster\n52:54:00:c3:00:01,b1,worker,rack2\n52:54:00:c3:00:02,b2,chef,rack2\n');
  const r = await as('admin', ['machines', 'import', bad]);
  assert.is(r.code, 1);
  assert.match(r.stderr, /^racksmith: 400 ERR_CSV: row 2, column role: /);
  assert.is(JSON.parse(ok(await as('viewer', ['machines', 'list', '--cluster', 'rack2', '--json']))).length, 3);
  writeFileSync(bad, 'mac,hostname,role,cluster\n52:54:00:c3:00:01,b1,worker,rack2\n');
  const json = JSON.parse(ok(await as('admin', ['machines', 'import', bad, '--json'])));
  assert.is(json.imported, 1);
  assert.is(json.machines[0].mac, '52:54:00:c3:00:01');
});

/** The CLI on a real terminal (util-linux `script` gives it a pty); `typed` is what the user types. */
function onTerminal(args: readonly string[], typed: string, env: Record<string, string> = {}): Promise<{ code: number | null; output: string }> {
  const command = [process.execPath, join(PACKAGE_ROOT, 'dist', 'server', 'cli.js'), ...args].map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(' ');
  return new Promise((resolve) => {
    const child = spawn('script', ['-qec', command, '/dev/null'], { env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin', TERM: 'dumb', ...env }, stdio: ['pipe', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    // Typed once the prompt is up, as a person would.
    const typeWhenAsked = setInterval(() => {
      if (/(token|password)[^\n]*: $/i.test(output)) {
        clearInterval(typeWhenAsked);
        child.stdin.write(typed);
      }
    }, 50);
    child.on('close', (code) => {
      clearTimeout(timer);
      clearInterval(typeWhenAsked);
      resolve({ code, output });
    });
  });
}

test('secrets not on the command line: the token from --token-file or a terminal prompt (echo off); the BMC password from the environment, a file or a prompt', async () => {
  const tokenFile = join(work, 'token');
  writeFileSync(tokenFile, `${tokens['admin']}\n`, { mode: 0o600 });
  const viaFile = await runCli(['clusters', 'list', '--json', '--token-file', tokenFile], { RACKSMITH_URL: rs.url });
  assert.is(viaFile.code, 0, viaFile.stderr);
  assert.ok(Array.isArray(JSON.parse(viaFile.stdout)));
  const empty = join(work, 'empty');
  writeFileSync(empty, '\n');
  for (const [args, why] of [
    [['--token-file', empty], /--token-file .*: the first line is empty/],
    [['--token-file', join(work, 'missing')], /--token-file .*: cannot read it \(ENOENT\)/],
    [['--token-file', tokenFile, '--token', 'x'], /give --token or --token-file, not both/],
  ] as const) {
    const r = await runCli(['clusters', 'list', ...args], { RACKSMITH_URL: rs.url });
    assert.is(r.code, 2, r.stderr);
    assert.match(r.stderr, why);
  }
  // Without a terminal and without a token: a clear error, never a hang.
  const none = await runCli(['clusters', 'list'], { RACKSMITH_URL: rs.url });
  assert.is(none.code, 2);
  assert.match(none.stderr, /an API token is needed: --token-file FILE or RACKSMITH_TOKEN/);

  // BMC passwords: environment, file, prompt; never needed on the command line.
  const add = (mac: string, extra: readonly string[]): readonly string[] => ['machines', 'add', '--mac', mac, '--hostname', `s${mac.slice(-1)}`, '--role', 'worker', '--cluster', 'rack1', '--bmc-address', `10.8.2.${mac.slice(-1)}`, '--bmc-username', 'admin', '--json', ...extra];
  const env = await runCli(add('52:54:00:c5:00:01', []), { RACKSMITH_URL: rs.url, RACKSMITH_TOKEN: tokens['admin'] ?? '', RACKSMITH_BMC_PASSWORD: 'from-the-env' });
  assert.is(env.code, 0, env.stderr);
  assert.is(JSON.parse(env.stdout).bmc.passwordSet, true);
  const pwFile = join(work, 'bmc');
  writeFileSync(pwFile, 'from-a-file\n', { mode: 0o600 });
  const file = await runCli(add('52:54:00:c5:00:02', ['--bmc-password-file', pwFile]), { RACKSMITH_URL: rs.url, RACKSMITH_TOKEN: tokens['admin'] ?? '' });
  assert.is(file.code, 0, file.stderr);
  // Without any of them and no terminal, the server names the missing field.
  const missingPw = await runCli(add('52:54:00:c5:00:04', []), { RACKSMITH_URL: rs.url, RACKSMITH_TOKEN: tokens['admin'] ?? '' });
  assert.is(missingPw.code, 1);
  assert.match(missingPw.stderr, /bmc\.password/);
  // set changes only the BMC fields given; the stored password stays.
  const moved = await runCli(['machines', 'set', '52:54:00:c5:00:02', '--bmc-port', '1623', '--json'], { RACKSMITH_URL: rs.url, RACKSMITH_TOKEN: tokens['admin'] ?? '' });
  assert.is(moved.code, 0, moved.stderr);
  assert.equal(JSON.parse(moved.stdout).bmc, { driver: 'ipmi', address: '10.8.2.2', port: 1623, username: 'admin', cipherSuite: null, passwordSet: true, solCapture: null });
  // The serial console capture: on, off, or back to the rack's setting.
  const asAdmin = { RACKSMITH_URL: rs.url, RACKSMITH_TOKEN: tokens['admin'] ?? '' };
  for (const [word, want] of [['on', true], ['off', false], ['default', null]] as const) {
    const sol = await runCli(['machines', 'set', '52:54:00:c5:00:02', '--sol-capture', word, '--json'], asAdmin);
    assert.is(sol.code, 0, sol.stderr);
    assert.is(JSON.parse(sol.stdout).bmc.solCapture, want, `--sol-capture ${word}`);
    assert.is(JSON.parse(sol.stdout).bmc.port, 1623, 'the other BMC fields stay');
  }
  const badSol = await runCli(['machines', 'set', '52:54:00:c5:00:02', '--sol-capture', 'maybe'], asAdmin);
  assert.is(badSol.code, 2, badSol.stderr);
  assert.match(badSol.stderr, /--sol-capture: on, off or default/);
  // A Redfish setting on an IPMI BMC is refused by the server, naming the field.
  const wrongDriver = await runCli(['machines', 'set', '52:54:00:c5:00:02', '--bmc-system-id', 'System.Embedded.1'], asAdmin);
  assert.is(wrongDriver.code, 1, wrongDriver.stderr);
  assert.match(wrongDriver.stderr, /systemId/);
  for (const mac of ['52:54:00:c5:00:01', '52:54:00:c5:00:02']) ok(await as('admin', ['machines', 'rm', mac]));

  // On a terminal: asked for, with echo off.
  const noPty = requirements(['script']);
  if (noPty) return skipNote('secrets asked for on a terminal', noPty);
  const asked = await onTerminal(['clusters', 'list', '--url', rs.url], `${tokens['admin']}\r`);
  assert.is(asked.code, 0, asked.output);
  assert.match(asked.output, new RegExp(`API token for ${rs.url.replace(/\./g, '\\.')}: `));
  assert.match(asked.output, /rack1/);
  assert.not.ok(asked.output.includes(tokens['admin'] as string), 'the typed token was echoed');

  const prompted = await onTerminal(add('52:54:00:c5:00:03', []), 'typed-bmc-pw\r', { RACKSMITH_URL: rs.url, RACKSMITH_TOKEN: tokens['admin'] ?? '' });
  assert.is(prompted.code, 0, prompted.output);
  assert.match(prompted.output, /BMC password for 10\.8\.2\.3: /);
  assert.not.ok(prompted.output.includes('typed-bmc-pw'));
  ok(await as('admin', ['machines', 'rm', '52:54:00:c5:00:03']));
});

test('exit codes: 2 for usage mistakes, 1 for failures', async () => {
  const usage: (readonly string[])[] = [
    ['frobnicate'],
    ['machines'],
    ['machines', 'frob'],
    ['machines', 'list', '--bogus'],
    ['machines', 'set'],
    ['machines', 'set', '52:54:00:c1:00:01'],
    ['machines', 'rm'],
    ['machines', 'rm', 'a', 'b'],
    ['machines', 'import'],
    ['clusters'],
    ['clusters', 'show'],
    ['token'],
    ['token', 'revoke'],
    ['serve', '--no-such-flag'],
  ];
  const usageRuns = await Promise.all(usage.map((args) => as('admin', args)));
  for (const [i, args] of usage.entries()) {
    const r = usageRuns[i] as CliRun;
    assert.is(r.code, 2, `racksmith ${args.join(' ')} → ${r.code}: ${r.stderr}`);
    // Either one line saying what is wrong, or the command's usage.
    assert.ok(/^racksmith: .+\n/.test(r.stderr) || /^Usage: /.test(r.stdout), `racksmith ${args.join(' ')}: ${r.stderr}${r.stdout}`);
  }
  const noToken = await runCli(['machines', 'list'], { RACKSMITH_URL: rs.url });
  assert.is(noToken.code, 2);
  assert.match(noToken.stderr, /an API token is needed/);

  const closedPort = await freePort();
  const failures: [readonly string[], RegExp][] = [
    [['clusters', 'show', 'nope'], /^racksmith: 404 ERR_UNKNOWN_CLUSTER: no cluster named "nope"\n$/],
    [['machines', 'rm', '52:54:00:00:00:99'], /^racksmith: 404 ERR_UNKNOWN_MACHINE: /],
    [['machines', 'add', '--mac', '52:54:00:c1:00:01', '--hostname', 'dup', '--role', 'worker', '--cluster', 'rack1'], /^racksmith: 409 ERR_DUPLICATE: /],
    [['machines', 'add', '--mac', 'not-a-mac', '--hostname', 'x', '--role', 'worker', '--cluster', 'rack1'], /^racksmith: 400 ERR_VALIDATION: mac: /],
    [['machines', 'import', join(work, 'missing.csv')], /^racksmith: cannot read .*missing\.csv: ENOENT\n$/],
    [['clusters', 'list', '--url', `http://127.0.0.1:${closedPort}`], new RegExp(`^racksmith: cannot reach racksmith at http://127\\.0\\.0\\.1:${closedPort} \\(ECONNREFUSED\\)`)],
  ];
  const failureRuns = await Promise.all(failures.map(([args]) => as('admin', args)));
  for (const [i, [args, expected]] of failures.entries()) {
    const r = failureRuns[i] as CliRun;
    assert.is(r.code, 1, `racksmith ${args.join(' ')} → ${r.code}: ${r.stderr}`);
    assert.match(r.stderr, expected);
  }
  const badToken = await runCli(['clusters', 'list'], { RACKSMITH_URL: rs.url, RACKSMITH_TOKEN: 'rs_wrong' });
  assert.is(badToken.code, 1);
  assert.match(badToken.stderr, /401 ERR_UNAUTHORIZED/);
  // --token and --url flags work as well as the environment.
  assert.is((await runCli(['clusters', 'list', '--url', rs.url, '--token', tokens['viewer'] ?? ''])).code, 0);
});

/** The CLI in the background (watch), its output collected; stop() ends it with SIGINT. */
function background(args: readonly string[], env: Record<string, string>): { output(): string; waitFor(re: RegExp, ms?: number): Promise<string>; stop(): Promise<number | null> } {
  const child = spawn(process.execPath, [join(PACKAGE_ROOT, 'dist', 'server', 'cli.js'), ...args], { env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((r) => child.on('close', (code) => r(code)));
  return {
    output: () => out,
    async waitFor(re, ms = 10_000) {
      const deadline = Date.now() + ms;
      while (!re.test(out)) {
        if (Date.now() > deadline || child.exitCode !== null) throw new Error(`waited for ${re} in:\n${out}`);
        await new Promise((r) => setTimeout(r, 50));
      }
      return out;
    },
    async stop() {
      child.kill('SIGINT');
      const t = setTimeout(() => child.kill('SIGKILL'), 5000);
      const code = await exited;
      clearTimeout(t);
      return code;
    },
  };
}

test('token list | revoke: the store\'s tokens, one revoked by name is refused at once', async () => {
  const env = rs.storeEnv;
  const doomed = ok(await runCli(['token', 'create', '--role', 'viewer', '--name', 'doomed'], env)).trim();
  assert.is((await runCli(['clusters', 'list'], { RACKSMITH_URL: rs.url, RACKSMITH_TOKEN: doomed })).code, 0);
  const listed = parseTable(ok(await runCli(['token', 'list'], env)));
  const row = listed.find((t) => t['name'] === 'doomed');
  assert.ok(row, 'the new token is listed');
  assert.is(row['role'], 'viewer');
  assert.match(row['id'] ?? '', /^[0-9a-f-]{36}$/);
  const json = JSON.parse(ok(await runCli(['token', 'list', '--json'], env))) as { id: string; name: string }[];
  assert.ok(json.some((t) => t.name === 'doomed'));
  assert.not.ok(JSON.stringify(json).includes(doomed), 'token list shows the token itself');
  assert.match(ok(await runCli(['token', 'revoke', 'doomed'], env)), /^revoked doomed \(viewer, [0-9a-f-]{36}\)/);
  const refused = await runCli(['clusters', 'list'], { RACKSMITH_URL: rs.url, RACKSMITH_TOKEN: doomed });
  assert.is(refused.code, 1);
  assert.match(refused.stderr, /401 ERR_UNAUTHORIZED/);
  assert.not.ok(parseTable(ok(await runCli(['token', 'list'], env))).some((t) => t['name'] === 'doomed'));
  const again = await runCli(['token', 'revoke', 'doomed', '--json'], env);
  assert.is(again.code, 1);
  assert.is(JSON.parse(again.stderr).error.code, 'ERR_UNKNOWN_TOKEN');
});

test('errors under --json are JSON on stderr with the same exit codes', async () => {
  const missing = await as('admin', ['machines', 'rm', '52:54:00:00:00:99', '--json']);
  assert.is(missing.code, 1);
  assert.is(missing.stdout, '');
  assert.equal(JSON.parse(missing.stderr), { error: { code: 'ERR_UNKNOWN_MACHINE', message: 'no machine with MAC 52:54:00:00:00:99', status: 404 } });
  const usage = await as('admin', ['machines', 'rm', '--json']);
  assert.is(usage.code, 2);
  assert.is(JSON.parse(usage.stderr).error.code, 'ERR_USAGE');
  const bad = join(work, 'bad-json.csv');
  writeFileSync(bad, 'mac,hostname,role,cluster\n52:54:00:c6:00:01,j1,master,rack1\n');
  const csv = await as('admin', ['machines', 'import', bad, '--json']);
  assert.is(csv.code, 1);
  const detail = JSON.parse(csv.stderr).error.details[0];
  assert.equal({ row: detail.row, field: detail.field, value: detail.value, hint: detail.hint }, { row: 1, field: 'role', value: 'master', hint: 'did you mean control-plane?' });
});

test('a mistyped rack or cluster is an error naming the ones that exist, not an empty list', async () => {
  const rack = await as('viewer', ['machines', 'list', '--rack', 'r11']);
  assert.is(rack.code, 1);
  assert.match(rack.stderr, /^racksmith: 404 ERR_UNKNOWN_RACK: no rack named "r11" \(did you mean r1\?\); racks: .*r1/);
  const cluster = await as('viewer', ['machines', 'list', '--cluster', 'rack9']);
  assert.is(cluster.code, 1);
  assert.match(cluster.stderr, /ERR_UNKNOWN_CLUSTER: no cluster named "rack9"/);
  const watch = await as('viewer', ['watch', '--rack', 'nope']);
  assert.is(watch.code, 1);
  assert.match(watch.stderr, /no rack named "nope"/);
  // A real rack with nothing matching the other filters is still an empty table.
  assert.equal(parseTable(ok(await as('viewer', ['machines', 'list', '--rack', 'r1', '--state', 'joined']))), []);
});

test('machines events MAC: the history as a table, filtered by type, --json', async () => {
  const mac = '52:54:00:c1:00:03';
  ok(await as('admin', ['machines', 'set', mac, '--rack', 'r3', '--unit', '7']));
  const rows = parseTable(ok(await as('viewer', ['machines', 'events', '5254.00c1.0003'])));
  assert.ok(rows.some((r) => r['type'] === 'state' && /assigned as worker of cluster rack1/.test(r['message'] ?? '')), JSON.stringify(rows));
  assert.ok(rows.some((r) => r['type'] === 'machine.updated' && /rack, unit/.test(r['message'] ?? '')));
  const states = parseTable(ok(await as('viewer', ['machines', 'events', mac, '--type', 'state'])));
  assert.ok(states.length >= 1 && states.every((r) => r['type'] === 'state'));
  const json = JSON.parse(ok(await as('viewer', ['machines', 'events', mac, '--json', '--limit', '1'])));
  assert.is(json.length, 1);
  assert.is(json[0].type, 'machine.updated');
  assert.is((await as('viewer', ['machines', 'events', '52:54:00:00:00:99'])).code, 1);
});

test('machines import --update: known MACs are updated from the sheet, new ones created', async () => {
  const sheet = join(work, 'update.csv');
  writeFileSync(sheet, ['mac;hostname;role;cluster;rack;unit', '52:54:00:c2:00:01;m1;control-plane;rack2;r2;30', '52:54:00:c2:00:02;m2;worker;rack2;r2;', '52:54:00:c7:00:01;m7;worker;rack2;r2;1'].join('\n') + '\n');
  const plain = await as('admin', ['machines', 'import', sheet]);
  assert.is(plain.code, 1);
  assert.match(plain.stderr, /409 ERR_DUPLICATE: row 1, column mac/);
  const out = ok(await as('admin', ['machines', 'import', sheet, '--update']));
  assert.ok(out.startsWith('imported 2 machine(s) (1 new, 1 updated, 1 unchanged)\n'), out);
  const m1 = JSON.parse(ok(await as('viewer', ['machines', 'list', '--rack', 'r2', '--json']))).find((m: { hostname: string }) => m.hostname === 'm1');
  assert.is(m1.unit, 30);
  assert.is(m1.ip, '10.9.0.1', 'an empty cell keeps the stored value');
});

test('clusters delete | show: deleted when empty (409 while it has machines); show says what the bootstrap waits for', async () => {
  ok(await as('admin', ['clusters', 'create', '--name', 'scratch', '--ubuntu-release', '22.04', '--kubernetes-version', '1.30.2', '--container-runtime', 'containerd', '--cni', 'flannel']));
  assert.is(ok(await as('admin', ['clusters', 'delete', 'scratch'])), 'deleted cluster scratch\n');
  assert.is((await as('viewer', ['clusters', 'show', 'scratch'])).code, 1);
  const busy = await as('admin', ['clusters', 'delete', 'rack1']);
  assert.is(busy.code, 1);
  assert.match(busy.stderr, /409 ERR_CLUSTER_NOT_EMPTY/);
  const shown = ok(await as('viewer', ['clusters', 'show', 'rack1']));
  const waiting = shown.slice(shown.indexOf('\nwaiting:\n'));
  assert.match(waiting, /\n {2}- .*(is assigned|waiting for a control-plane node)/, shown);
});

test('watch --json: one JSON object per line; a renamed machine shows its new name (also in text lines)', async () => {
  const env = { RACKSMITH_URL: rs.url, RACKSMITH_TOKEN: tokens['viewer'] ?? '' };
  const json = background(['watch', '--rack', 'r1', '--json'], env);
  const text = background(['watch', '--rack', 'r1'], env);
  try {
    await json.waitFor(/"type":"machine"/);
    await text.waitFor(/52:54:00:c1:00:01/);
    ok(await as('admin', ['machines', 'set', '52:54:00:c1:00:01', '--hostname', 'n1renamed']));
    await json.waitFor(/"type":"event".*"machine\.updated"/);
    const line = json.output().split('\n').find((l) => l.includes('"machine.updated"')) ?? '';
    const parsed = JSON.parse(line);
    assert.is(parsed.machine.hostname, 'n1renamed');
    for (const l of json.output().trim().split('\n')) assert.not.throws(() => JSON.parse(l), l);
    await text.waitFor(/ n1renamed {2}52:54:00:c1:00:01 .*machine\.updated/);
  } finally {
    await json.stop();
    await text.stop();
  }
  ok(await as('admin', ['machines', 'set', '52:54:00:c1:00:01', '--hostname', 'n1']));
});

test('completion bash|zsh: commands, subcommands, flags and values complete; every flag is one its command takes', async () => {
  const script = ok(await runCli(['completion', 'bash']));
  const file = join(work, 'racksmith.bash');
  writeFileSync(file, script);
  const complete = async (line: string): Promise<string> => {
    const words = line.split(' ');
    const cmd = `source ${file}; COMP_WORDS=(${words.map((w) => `'${w}'`).join(' ')}); COMP_CWORD=${words.length - 1}; _racksmith; echo "\${COMPREPLY[*]}"`;
    return (await runBash(cmd)).trim();
  };
  assert.is(await complete('racksmith mach'), 'machines');
  assert.is(await complete('racksmith machines ev'), 'events');
  assert.is(await complete('racksmith clusters de'), 'delete');
  assert.is(await complete('racksmith token re'), 'revoke');
  assert.is(await complete('racksmith machines list --sta'), '--state');
  assert.is(await complete('racksmith machines list --state fa'), 'failed');
  assert.is(await complete('racksmith token create --role op'), 'operator');
  assert.is(await complete('racksmith machines add --role work'), 'worker');
  assert.is(await complete('racksmith rack power r1 --action cy'), 'cycle');
  assert.is(await complete('racksmith machines iden'), 'identify');
  assert.is(await complete('racksmith clusters pre'), 'preflight');
  assert.is(await complete('racksmith machines set --boot-loader shim'), 'shim-grub');
  assert.is(await complete('racksmith machines set 52:54:00:c1:00:01 --sol-capture d'), 'default', 'set takes a value after --sol-capture');
  assert.is(await complete('racksmith machines add --sol-capture --bmc-usern'), '--bmc-username', 'add takes none');
  assert.is(await complete('racksmith machines set 52:54:00:c1:00:01 --bmc-verify-tls o'), 'on off');
  // Each flag the completion offers is one the command's --help names (so the table stays true).
  const { COMMAND_TREE } = await import('../server/cli/completion.js');
  for (const [cmd, v] of Object.entries(COMMAND_TREE)) {
    const subs = Array.isArray(v) ? [[null, v]] : Object.entries(v as Record<string, readonly string[]>);
    for (const [sub, flags] of subs as [string | null, readonly string[]][]) {
      if (['completion', 'settings', 'version', 'help'].includes(cmd)) continue;
      const help = ok(await runCli(sub ? [cmd, sub, '--help'] : [cmd, '--help'])) + (cmd === 'serve' ? '' : ok(await runCli(['--help'])));
      for (const f of flags) if (!['--help', '--token', '--token-file', '--url', '--json', '--secret-key', '--data-dir', '--config'].includes(f)) assert.ok(help.includes(f), `${cmd} ${sub ?? ''}: ${f} is not in its --help`);
    }
  }
  const zsh = ok(await runCli(['completion', 'zsh']));
  assert.match(zsh, /^#compdef racksmith\n/);
  const noZsh = requirements(['zsh']);
  if (noZsh) return skipNote('zsh completion', noZsh);
  const zfile = join(work, '_racksmith');
  writeFileSync(zfile, zsh);
  const r = await new Promise<{ code: number | null; out: string }>((resolve) => {
    const c = spawn('zsh', ['-fc', `source ${zfile} && whence -w _racksmith`], { env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin', HOME: work } });
    let out = '';
    c.stdout.on('data', (d: Buffer) => (out += d.toString()));
    c.stderr.on('data', (d: Buffer) => (out += d.toString()));
    c.on('close', (code) => resolve({ code, out }));
  });
  assert.is(r.code, 0, r.out);
  assert.match(r.out, /_racksmith: function/);
  assert.is((await runCli(['completion', 'fish'])).code, 2);
});

function runBash(command: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const c = spawn('bash', ['--norc', '-c', command], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    c.stdout.on('data', (d: Buffer) => (out += d.toString()));
    c.stderr.on('data', (d: Buffer) => (err += d.toString()));
    c.on('close', (code) => (code === 0 ? resolve(out) : reject(new Error(`bash: ${code} ${err}`))));
  });
}

test('racksmith on PATH after npm install -g of the checkout (the package\'s bin)', async () => {
  const prefix = join(work, 'global');
  const npm = await new Promise<{ code: number | null; out: string }>((resolve) => {
    const c = spawn('npm', ['install', '-g', '--prefix', prefix, '--no-audit', '--no-fund', '--offline', PACKAGE_ROOT], { env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin', HOME: work, npm_config_cache: join(work, 'npm-cache') } });
    let out = '';
    c.stdout.on('data', (d: Buffer) => (out += d.toString()));
    c.stderr.on('data', (d: Buffer) => (out += d.toString()));
    c.on('close', (code) => resolve({ code, out }));
  });
  assert.is(npm.code, 0, npm.out);
  const version = JSON.parse(readFileSync(join(PACKAGE_ROOT, 'package.json'), 'utf8')).version as string;
  const r = await new Promise<string>((resolve) => {
    const c = spawn('racksmith', ['--version'], { env: { PATH: `${join(prefix, 'bin')}:${process.env['PATH'] ?? '/usr/bin:/bin'}` } });
    let out = '';
    c.stdout.on('data', (d: Buffer) => (out += d.toString()));
    c.on('close', () => resolve(out));
  });
  assert.is(r.trim(), version);
});

test.run();
