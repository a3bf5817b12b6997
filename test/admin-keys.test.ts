import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { suite } from './lib/suite.js';
import * as assert from 'uvu/assert';
import { parse as parseYaml } from 'yaml';
import { DEFAULT_INSTALLERS } from '../server/boot/releases.js';
import { AUTOINSTALL_DIR } from '../server/lib/paths.js';
import { createRenderer } from '../server/render/templates.js';
import { AdminKeyError, parseAdminKey, parseAdminKeys, readAdminKeys } from '../server/seeds/admin-keys.js';
import { seedContext } from '../server/seeds/context.js';
import { renderRoleConfig, renderSeedFile } from '../server/seeds/render.js';
import { NASTY_STRINGS, Rng, seedFromEnv } from './lib/fuzz.js';
import { INSTANCE_ID, ROLE_HOST, SEED_SETTINGS, TOKEN, fixtureCluster, fixtureMembers } from './lib/seed-fixtures.js';
import { api, startRacksmith } from './lib/racksmith.js';

/** The site admins' own SSH keys on every node: the file's checks, the seeds that carry them, serve's refusal. */
const test = suite('admin SSH keys: checked at start, on every node beside racksmith\'s');

// Made with ssh-keygen (ed25519 and RSA 2048).
const ED25519 = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBDQ0fFVSF0BhkVqmQ5jDELMGV3cIvc0ePC78cuFaXp7 admin@site';
const RSA = 'ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQCdPYIEtiOre2giBOpk0MSuLiBAawPgYsYMYvT/SExGd+KPAitzpls2yXKji1L6Wmtf3PToBM+5jYbCUAIH9LCzxPLgt7/fjWGo6viL8ppCSXv157Lu4ApucQo++iJl8yBZncjBi0SLhN6rMnOPslaniyIAFNVYLIaw9pJMBXl9hkXZStbD7HKC/f+dK9PxI7U6DxsxYdkNyKE7nkyH2F2rud17xh0KU1CiAZ9Dx8x7GU8JkJhI8KcyG5yjVj/02Cn37EmzArEayxfKnpYrb27INx+UWBBYogP43qLFSfSRBGBQfzmFg1hmfqppXBb6fTrLvhYSYISyl5RS4dcWNT3h ops@site';

test('plain keys pass with their comments; blanks and comments are skipped', () => {
  assert.equal(parseAdminKeys(`# the site's admins\n\n${ED25519}\n  ${RSA}  \n`, 'keys'), [ED25519, RSA]);
  assert.is(parseAdminKey('# nothing'), null);
});

test('what is refused names the line and why', () => {
  const cases: Array<[string, RegExp]> = [
    [`from="10.0.0.1" ${ED25519}`, /key options .* are not supported/],
    ['ssh-dss AAAAB3NzaC1kc3MAAACBAP', /not an SSH public key type/],
    ['ssh-ed25519 not*base64', /not base64/],
    [`ssh-rsa ${ED25519.split(' ')[1]}`, /does not name ssh-rsa/],
    [`ssh-ed25519 ${ED25519.split(' ')[1]?.slice(0, 8)}`, /does not name ssh-ed25519|truncated/],
    ['-----BEGIN OPENSSH PRIVATE KEY-----', /not an SSH public key type/],
  ];
  for (const [line, why] of cases) {
    try {
      parseAdminKeys(`${ED25519}\n${line}\n`, 'admins.pub');
      assert.unreachable(line);
    } catch (err) {
      assert.instance(err, AdminKeyError, line);
      assert.match((err as Error).message, /^admins\.pub, line 2: /);
      assert.match((err as Error).message, why, line);
    }
  }
  assert.throws(() => readAdminKeys('/nonexistent/admins.pub'), /cannot read the admin SSH keys file \/nonexistent\/admins\.pub: ENOENT/);
});

test('fuzz: any text is a list of keys or an AdminKeyError, nothing else', () => {
  const rng = new Rng(seedFromEnv(0x5eed));
  const parts = [ED25519, RSA, ...NASTY_STRINGS, '#', '\n', ' ', 'ssh-ed25519', 'AAAA'];
  for (let i = 0; i < 3000; i++) {
    let text = Array.from({ length: rng.range(1, 6) }, () => parts[rng.int(parts.length)] ?? '').join(rng.int(2) ? '\n' : ' ');
    if (rng.int(2)) text = text.slice(0, rng.int(text.length + 1));
    try {
      const keys = parseAdminKeys(text, 'f');
      for (const k of keys) assert.ok(k === ED25519 || k === RSA || /^ssh-(ed25519|rsa) /.test(k), k);
    } catch (err) {
      if (!(err instanceof AdminKeyError)) throw err;
    }
  }
});

test('the installer and the role config carry the admins\' keys after racksmith\'s', () => {
  const renderer = createRenderer(AUTOINSTALL_DIR);
  const cluster = fixtureCluster('22.04');
  const members = fixtureMembers(cluster.name);
  const machine = members.find((m) => m.hostname === ROLE_HOST['worker']);
  if (!machine) throw new Error('fixture machine missing');
  const installer = DEFAULT_INSTALLERS['22.04'];
  const ctx = seedContext({ machine, cluster, members, installer, token: TOKEN, instanceId: INSTANCE_ID }, { ...SEED_SETTINGS, adminSshKeys: [ED25519, RSA] });
  const role = parseYaml(renderRoleConfig(renderer, ctx)) as { users: Array<Record<string, unknown> | string> };
  const user = role.users.find((u) => typeof u === 'object' && u['name'] === 'racksmith') as Record<string, unknown>;
  assert.equal(user['ssh_authorized_keys'], [SEED_SETTINGS.sshPublicKey, ED25519, RSA]);
  const ai = parseYaml(renderSeedFile(renderer, 'user-data', installer.kind, ctx) ?? '') as { autoinstall: { ssh: Record<string, unknown> } };
  assert.equal(ai.autoinstall.ssh['authorized-keys'], [SEED_SETTINGS.sshPublicKey, ED25519, RSA]);
});

test('serve refuses to start on a bad keys file, naming the line; starts with a good one', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'racksmith-admin-keys-'));
  try {
    const bad = join(dir, 'bad.pub');
    writeFileSync(bad, `${ED25519}\nssh-ed25519 broken\n`);
    const refused = await startRacksmith({ env: { RACKSMITH_ADMIN_SSH_KEYS_FILE: bad } }).then(
      async (rs) => {
        await rs.stop();
        return '';
      },
      (err: Error) => err.message,
    );
    assert.match(refused, /bad\.pub, line 2: the ssh-ed25519 key/);
    const good = join(dir, 'good.pub');
    writeFileSync(good, `${ED25519}\n`);
    const rs = await startRacksmith({ env: { RACKSMITH_ADMIN_SSH_KEYS_FILE: good } });
    try {
      assert.is((await api(rs.url, '', 'GET', '/healthz')).status, 200);
    } finally {
      await rs.stop();
      rs.cleanup();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
