import ssh2 from 'ssh2';
import { newSshKeyPair } from '../server/lib/ssh-identity.js';
import { suite } from './lib/suite.js';
import * as assert from 'uvu/assert';
import { shellCommand } from '../server/orchestrator/commands.js';
import { createSshShell, SshError, type SshTarget } from '../server/orchestrator/ssh.js';
import { KubeBed, SSH_USER } from './lib/kube-bed.js';
import { requirements, skipNote } from './lib/tools.js';

/**
 * racksmith's ssh2 shell against real OpenSSH servers in network namespaces: host keys pinned
 * from the phone-home (a different key is refused before login, so nothing runs), commands
 * through `sudo -n` for the SSH user, exit codes, streamed output, timeouts, refused ports.
 */
const test = suite('orchestrator ssh (real sshd)');
const missing = requirements(['sshd', 'ssh-keygen', 'sudo', 'unshare'], { netns: true });

let bed: KubeBed;
const pair = newSshKeyPair('racksmith-test');
const shell = createSshShell();
const target = (name: string, over: Partial<SshTarget> = {}): SshTarget => {
  const n = bed.node(name);
  return { host: n.ip, port: 22, username: SSH_USER, privateKey: pair.privateKey, hostKeys: [n.hostKey], connectTimeoutMs: 5000, ...over };
};

test.before(async () => {
  if (missing) return;
  bed = await KubeBed.create('o', [
    { name: 'n1', role: 'worker' },
    { name: 'n2', role: 'worker' },
  ], { version: '1.28.4' });
  bed.authorize(pair.publicKey);
});
test.after(async () => {
  await bed?.destroy();
});

test('a host key that differs from the phoned-home one is refused before login; nothing runs', async () => {
  if (missing) return skipNote('ssh', missing);
  try {
    await shell.connect(target('n1', { hostKeys: [bed.node('n2').hostKey] }));
    assert.unreachable('connected with the wrong key');
  } catch (err) {
    assert.instance(err, SshError);
    assert.is((err as SshError).kind, 'host-key');
    assert.is((err as SshError).transient, false);
  }
  await new Promise((r) => setTimeout(r, 200));
  assert.not.match(bed.sshdLog('n1'), /Accepted publickey/, 'authentication never happened');
  assert.equal(bed.calls(), []);
});

test('no phoned-home key: refused without connecting', async () => {
  if (missing) return skipNote('ssh', missing);
  try {
    await shell.connect(target('n1', { hostKeys: [] }));
    assert.unreachable();
  } catch (err) {
    assert.is((err as SshError).code, 'ERR_SSH_NO_HOST_KEY');
  }
});

test('a pinned key of a type the server does not have is refused too', async () => {
  if (missing) return skipNote('ssh', missing);
  const rsa = ssh2.utils.generateKeyPairSync('rsa', { bits: 2048 });
  try {
    await shell.connect(target('n1', { hostKeys: [{ type: 'ssh-rsa', key: rsa.public }] }));
    assert.unreachable();
  } catch (err) {
    assert.is((err as SshError).kind, 'host-key');
  }
});

test('the right key: commands run through sudo -n as root, output streams, exit codes come back', async () => {
  if (missing) return skipNote('ssh', missing);
  const s = await shell.connect(target('n1'));
  try {
    const chunks: string[] = [];
    const r = await s.exec('sudo -n sh -s', { stdin: '{\nexec </dev/null\nid -u\necho to-stderr >&2\nexit 3\n}\n', timeoutMs: 10_000, onData: (t) => chunks.push(t) });
    assert.is(r.code, 3);
    assert.is(r.stdout.trim(), '0');
    assert.is(r.stderr.trim(), 'to-stderr');
    assert.ok(chunks.join('').includes('0'));
    const who = await s.exec('id -un', { timeoutMs: 10_000 });
    assert.is(who.stdout.trim(), SSH_USER);
  } finally {
    s.close();
  }
  assert.match(bed.sshdLog('n1'), /Accepted publickey for racksmith/);
});

test('root logs in directly (commands without sudo)', async () => {
  if (missing) return skipNote('ssh', missing);
  const s = await shell.connect(target('n2', { username: 'root' }));
  try {
    const r = await s.exec('sh -s', { stdin: 'id -u\n', timeoutMs: 10_000 });
    assert.is(r.stdout.trim(), '0');
  } finally {
    s.close();
  }
});

test('a command that outlives its timeout is reported at once, and the node kills it (coreutils timeout)', async () => {
  if (missing) return skipNote('ssh', missing);
  const s = await shell.connect(target('n1'));
  try {
    const t0 = Date.now();
    const r = await s.exec(shellCommand(SSH_USER, 400), { stdin: 'sleep 30\n', timeoutMs: 400 });
    assert.ok(r.timedOut);
    // Well before the 30 s the command would take: the limit ended it, not the command.
    assert.ok(Date.now() - t0 < 15_000, `took ${Date.now() - t0} ms`);
  } finally {
    s.close();
  }
  const sleeping = async (): Promise<boolean> => {
    const { stdout } = await bed.tb.exec(bed.node('n1').ns, 'ps', ['-eo', 'args']);
    return stdout.split('\n').some((l) => l.trim() === 'sleep 30');
  };
  const deadline = Date.now() + 15_000;
  while ((await sleeping()) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 250));
  assert.not.ok(await sleeping(), 'the remote command outlived its limit');
});

test('a refused port is a transient fault', async () => {
  if (missing) return skipNote('ssh', missing);
  try {
    await shell.connect(target('n1', { port: 2222 }));
    assert.unreachable();
  } catch (err) {
    assert.is((err as SshError).kind, 'transport');
    assert.ok((err as SshError).transient);
    assert.match((err as Error).message, /ECONNREFUSED/);
  }
});

test('a wrong user key is an authentication failure, not retried', async () => {
  if (missing) return skipNote('ssh', missing);
  const other = newSshKeyPair('another');
  try {
    await shell.connect(target('n1', { privateKey: other.privateKey }));
    assert.unreachable();
  } catch (err) {
    assert.is((err as SshError).kind, 'auth');
    assert.not.ok((err as SshError).transient);
  }
});

test.run();
