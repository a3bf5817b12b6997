import { execFile } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { suite } from './lib/suite.js';
import * as assert from 'uvu/assert';
import { PROBE_BUSY, initScript, probeScript } from '../server/orchestrator/commands.js';
import { requirements, skipNote } from './lib/tools.js';

/**
 * The node-side guard of a takeover: racksmith's real init script and probe, run by `sh` with
 * util-linux's flock, in a private mount namespace whose /run and /etc/kubernetes are empty
 * tmpfs (the host's are never touched), against a stand-in kubeadm that takes its time. A
 * racksmith that took the cluster over while the dead one's `kubeadm init` still runs on the
 * node must wait for it and then see it done — never start a second init.
 */
const test = suite('orchestrator: one kubeadm at a time on a node (takeover guard)');
const run = promisify(execFile);
const missing = requirements(['unshare', 'flock', 'sh'], { root: true });

/** Runs `body` (sh) in a private mount namespace with fresh /run and /etc/kubernetes; returns its stdout. */
async function inNamespace(dir: string, body: string): Promise<string> {
  const file = join(dir, 'case.sh');
  writeFileSync(file, `set -u\nmount -t tmpfs none /run\nmkdir -p /etc/kubernetes && mount -t tmpfs none /etc/kubernetes\nexport PATH=${dir}/bin:$PATH\n${body}\n`);
  const { stdout } = await run('unshare', ['-m', '--propagation', 'private', 'sh', file], { timeout: 60_000 });
  return stdout;
}

test('a probe waits for the init still running and then reports it done; a second init never starts', async () => {
  if (missing) return skipNote('kubeadm lock', missing);
  const dir = mkdtempSync(join(tmpdir(), 'racksmith-kubeadm-lock-'));
  try {
    // The stand-in kubeadm: an init that takes 3 s, counts its runs, and writes admin.conf last.
    writeFileSync(join(dir, 'kubeadm'), `#!/bin/sh\necho run >> ${dir}/inits\nsleep 3\necho 'kind: Config' > /etc/kubernetes/admin.conf\n`);
    chmodSync(join(dir, 'kubeadm'), 0o755);
    await run('mkdir', ['-p', join(dir, 'bin')]);
    await run('mv', [join(dir, 'kubeadm'), join(dir, 'bin', 'kubeadm')]);
    writeFileSync(join(dir, 'init.sh'), initScript());
    writeFileSync(join(dir, 'probe.sh'), probeScript('init'));
    writeFileSync(join(dir, 'short-probe.sh'), probeScript('init', 1));
    const out = await inNamespace(
      dir,
      [
        // The dead instance's init, still running on the node: once its kubeadm has counted its
        // run, it holds the lock (a fixed sleep here lost the race on a loaded machine).
        `sh ${dir}/init.sh > /dev/null 2>&1 &`,
        `for i in $(seq 1 200); do [ -s ${dir}/inits ] && break; sleep 0.05; done`,
        // A probe that cannot wait long enough is told the node is busy, not "not done".
        `sh ${dir}/short-probe.sh; echo "short $?"`,
        // The new holder's probe: waits for the lock, then finds admin.conf.
        `sh ${dir}/probe.sh; echo "probe $?"`,
        'wait',
        `echo "inits $(wc -l < ${dir}/inits)"`,
      ].join('\n'),
    );
    assert.match(out, new RegExp(`^short ${PROBE_BUSY}$`, 'm'), out);
    assert.match(out, /^probe 0$/m, out);
    assert.match(out, /^inits 1$/m, out);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('with no kubeadm running, the probe answers at once: not done, then done', async () => {
  if (missing) return skipNote('kubeadm lock', missing);
  const dir = mkdtempSync(join(tmpdir(), 'racksmith-kubeadm-lock-'));
  try {
    writeFileSync(join(dir, 'probe.sh'), probeScript('init'));
    const out = await inNamespace(dir, [`sh ${dir}/probe.sh; echo "before $?"`, `touch /etc/kubernetes/admin.conf`, `sh ${dir}/probe.sh; echo "after $?"`].join('\n'));
    assert.match(out, /^before 1$/m, out);
    assert.match(out, /^after 0$/m, out);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
