import { execFile } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { closeSync, copyFileSync, mkdirSync, mkdtempSync, openSync, readFileSync, readSync, rmSync, writeFileSync } from 'node:fs';
import { truncate } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { suite } from './lib/suite.js';
import * as assert from 'uvu/assert';
import { ensureAgent } from '../server/agent/build.js';
import { GUEST_CACHE } from './lib/guest/build.js';
import { PxeBed, SERVER_IP, type Vm } from './lib/pxe.js';
import { keepEvidence, machineApi } from './lib/qemu-run.js';
import type { RacksmithProcess } from './lib/racksmith.js';
import { requirements, skipNote } from './lib/tools.js';

// racksmith-test: both engines — every failure is a store transition with its event (on PostgreSQL fanned out through the database).
// racksmith-test: minutes 4

/**
 * Image deployment when it cannot succeed, in QEMU (TCG), three machines at once, each ending
 * `failed` with a reason a tech can act on and none rebooting into a disk:
 *
 * - its only disk is 2 GB: the agent fails at once, "no disk matched the rule";
 * - the image's SHA-256 is not the pinned one: the agent writes it, finds the mismatch, wipes the
 *   disk's partition tables and fails without rebooting;
 * - it boots the agent and then hangs (here: the VM is stopped after the agent's first report):
 *   the install deadline fails it with its last boot step and the agent's last event.
 */
const test = suite('qemu: image deployment failures — no disk, a checksum mismatch, the install deadline');
const run = promisify(execFile);

const HTTP_PORT = 8080;
const BASE = `http://${SERVER_IP}:${HTTP_PORT}`;
const DEADLINE_MINUTES = 2;
const TINY = { mac: '52:54:00:77:00:31', ip: '10.77.0.31', hostname: 'tiny', cluster: 'img-good' };
const CORRUPT = { mac: '52:54:00:77:00:32', ip: '10.77.0.32', hostname: 'corrupt', cluster: 'img-pinned' };
const HUNG = { mac: '52:54:00:77:00:33', ip: '10.77.0.33', hostname: 'hung', cluster: 'img-good' };
const TIMEOUT_MS = (DEADLINE_MINUTES + 4) * 60_000;

const missing = requirements(['qemu-system-x86_64', 'dnsmasq', 'zstd', 'depmod', 'cpio', 'curl', '/usr/lib/ipxe/undionly.kpxe'], { netns: true });

let bed: PxeBed | null = null;
let rs: RacksmithProcess | null = null;
let work = '';
let admin = '';
const vms: Vm[] = [];
let failed = true;

const { call: api, events } = machineApi(() => bed!, BASE, () => admin);

test.before(async () => {
  if (missing) return;
  const agent = await ensureAgent({ dir: join(GUEST_CACHE, 'agent'), kernelPackage: 'linux-image-amd64', log: (l) => process.stdout.write(`  ${l}\n`) });
  work = mkdtempSync(join(tmpdir(), 'racksmith-imgfail-'));
  const artifacts = join(work, 'artifacts');
  mkdirSync(join(artifacts, 'agent'), { recursive: true });
  mkdirSync(join(artifacts, 'images'), { recursive: true });
  copyFileSync(agent.kernel, join(artifacts, 'agent', 'vmlinuz'));
  copyFileSync(agent.initrd, join(artifacts, 'agent', 'initrd.img'));
  // A small image: what it holds does not matter, only that its bytes are not the pinned ones.
  writeFileSync(join(work, 'small.raw'), randomBytes(8 * 1024 * 1024));
  await run('zstd', ['-q', join(work, 'small.raw'), '-o', join(artifacts, 'images', 'small.img.zst')]);
  bed = await new PxeBed('imf').setup();
  bed.raSender();
  rs = await bed.racksmith(work, artifacts, HTTP_PORT, { RACKSMITH_INSTALL_DISK_MIN_GB: '4', RACKSMITH_INSTALL_TIMEOUT_MINUTES: String(DEADLINE_MINUTES), RACKSMITH_LOG_LEVEL: 'info' });
  admin = (await rs.cli(['token', 'create', '--role', 'admin'])).trim();
});

test.after(async () => {
  // The test bed goes whatever fails before it: no namespace, bridge or tap outlives the suite.
  try {
    for (const vm of vms) await vm.stop();
    if (failed && work) keepEvidence('image-deploy-failures', vms, rs);
    await rs?.stop();
    rs?.cleanup();
  } finally {
    await bed?.destroy();
    if (work) rmSync(work, { recursive: true, force: true });
  }
});

test('no disk, a wrong checksum, a machine gone silent: each failed, with its reason, none rebooted', async (ctx) => {
  if (missing) return skipNote(ctx.__test__, missing);
  const sha = createHash('sha256').update(readFileSync(join(work, 'artifacts', 'images', 'small.img.zst'))).digest('hex');
  const common = { os: 'debian-12', installMethod: 'image', imageUrl: 'small.img.zst', kubernetesVersion: '1.28.4', containerRuntime: 'containerd', cni: 'flannel' };
  assert.is((await api('POST', '/clusters', { ...common, name: 'img-good', imageSha256: sha })).status, 201);
  assert.is((await api('POST', '/clusters', { ...common, name: 'img-pinned', imageSha256: 'e'.repeat(64) })).status, 201);
  for (const m of [TINY, CORRUPT, HUNG]) {
    const r = await api('POST', '/machines', { mac: m.mac, hostname: m.hostname, role: 'worker', cluster: m.cluster, ip: m.ip });
    assert.is(r.status, 201, JSON.stringify(r.body));
  }
  const disk = async (name: string, gib: number): Promise<string> => {
    const f = join(work, `${name}.img`);
    writeFileSync(f, '');
    await truncate(f, gib * 1024 ** 3);
    return f;
  };
  const started = Date.now();
  const vm = async (m: typeof TINY, disks: Parameters<PxeBed['vm']>[0]['disks']): Promise<Vm> => {
    const v = await bed!.vm({ name: m.hostname, mac: m.mac, firmware: 'bios', serialLog: join(work, `${m.hostname}.log`), memoryMiB: 512, allowReboot: true, disks });
    vms.push(v);
    return v;
  };
  const tiny = await vm(TINY, [{ file: await disk('tiny', 2), bus: 'virtio', serial: 'TINY0001', bootindex: 2 }]);
  const corrupt = await vm(CORRUPT, [{ file: await disk('corrupt', 6), bus: 'nvme', serial: 'NVME0002', bootindex: 2 }]);
  const hung = await vm(HUNG, [{ file: await disk('hung', 6), bus: 'nvme', serial: 'NVME0003', bootindex: 2 }]);

  // The hung machine: once its agent has reported in, it stops (a hang, a power loss).
  for (;;) {
    if ((await events(HUNG.mac)).some((e) => e.type === 'installer.event' && e.data?.name === 'racksmith-agent/deploy')) break;
    assert.ok(Date.now() - started < TIMEOUT_MS, 'the hung machine never reached its agent');
    await new Promise((r) => setTimeout(r, 200));
  }
  await hung.stop();
  process.stdout.write(`\n  hung: stopped after its agent's first report, ${((Date.now() - started) / 1000).toFixed(0)} s in\n`);

  const failedAt = new Map<string, number>();
  while (failedAt.size < 3 && Date.now() - started < TIMEOUT_MS) {
    for (const m of [TINY, CORRUPT, HUNG]) {
      if (failedAt.has(m.mac)) continue;
      const state = (await api('GET', `/machines/${m.mac}`)).body?.state;
      assert.ok(state !== 'installed' && state !== 'ready', `${m.hostname} must not install: ${state}`);
      if (state === 'failed') {
        failedAt.set(m.mac, (Date.now() - started) / 1000);
        process.stdout.write(`  ${m.hostname}: failed after ${failedAt.get(m.mac)?.toFixed(0)} s\n`);
      }
    }
    await new Promise((r) => setTimeout(r, 2000));
  }
  assert.is(failedAt.size, 3, 'all three failed');

  // 2 GB only: at once, by the rule, naming the disk and why.
  const t = (await api('GET', `/machines/${TINY.mac}`)).body;
  assert.is(t.failure.step, 'installer');
  assert.match(t.failure.reason, /^racksmith-agent\/disk: no disk matched the rule smallest \(at least 4\.0 GB, not removable, not USB\): vda 2\.1 GB, smaller than 4\.0 GB$/);
  assert.ok((failedAt.get(TINY.mac) ?? 1e9) < DEADLINE_MINUTES * 60, 'at once, not at the deadline');
  assert.is(t.installedDisk, null);
  assert.match(tiny.serial(), /racksmith-agent: disk failed: no disk matched the rule/);

  // A wrong checksum: written, refused, wiped, no reboot.
  const c = (await api('GET', `/machines/${CORRUPT.mac}`)).body;
  assert.match(c.failure.reason, new RegExp(`^racksmith-agent/image: checksum mismatch: the image's SHA-256 is ${sha}, racksmith expects e{64}; /dev/nvme0n1 was wiped$`));
  assert.ok((failedAt.get(CORRUPT.mac) ?? 1e9) < DEADLINE_MINUTES * 60, 'at once, not at the deadline');
  const cEvents = await events(CORRUPT.mac);
  assert.ok(cEvents.some((e) => e.data?.name === 'racksmith-agent/image' && e.data?.eventType === 'start'), 'it did write');
  assert.not.ok(cEvents.some((e) => e.type === 'state' && e.data?.to === 'installed'), 'never installed');
  assert.not.ok(cEvents.some((e) => e.data?.name === 'racksmith-agent/grow'), 'nothing after the image');
  assert.not.match(corrupt.serial(), /rebooting/);
  assert.ok(corrupt.running, 'it stays up, holding its console, until someone power-cycles it');
  const wiped = Buffer.alloc(1024 * 1024);
  const fd = openSync(join(work, 'corrupt.img'), 'r');
  readSync(fd, wiped, 0, wiped.length, 0);
  closeSync(fd);
  assert.ok(wiped.every((b) => b === 0), 'no partition table left to boot from');

  // Silent: failed by the install deadline, with its last boot step and the agent's last word.
  const h = (await api('GET', `/machines/${HUNG.mac}`)).body;
  assert.is(h.failure.from, 'provisioning');
  assert.is(h.failure.step, 'installer');
  // The agent's last word before the machine went silent: its start, the inventory it posts just
  // after, or — on a loaded host the stop lands a moment later — the start of the image's write.
  const lastWord = (await events(HUNG.mac)).filter((e) => e.type === 'installer.event').at(-1);
  assert.match(lastWord?.data?.name ?? '', /^racksmith-agent\/(deploy|inventory|image)$/, JSON.stringify(lastWord?.data));
  assert.match(h.failure.reason, new RegExp(`^install deadline of ${DEADLINE_MINUTES} min passed: still provisioning after \\d+ min; last boot step installer; last installer event at ${lastWord.at}: `), h.failure.reason);
  assert.ok(h.failure.reason.includes(`: ${String(lastWord.message).slice(0, 60)}`), h.failure.reason);
  assert.ok((failedAt.get(HUNG.mac) ?? 0) >= DEADLINE_MINUTES * 60 - 60, 'not before its deadline');
  const last = (await events(HUNG.mac)).filter((e) => e.type === 'state').at(-1);
  assert.is(last?.source, 'install-deadline');
  failed = false;
});

test.run();
