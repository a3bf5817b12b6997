import { copyFileSync, linkSync, mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { suite } from './lib/suite.js';
import * as assert from 'uvu/assert';
import { ensureAgent } from '../server/agent/build.js';
import { startAptCache, type AptCache } from './lib/apt-cache.js';
import { ensureDebianImage, type DebianImage } from './lib/debian-image/index.js';
import { GUEST_CACHE } from './lib/guest/build.js';
import { endBootProof, PxeBed, SERVER_IP, type Vm } from './lib/pxe.js';
import { consoleExcerpt, machineApi } from './lib/qemu-run.js';
import type { RacksmithProcess } from './lib/racksmith.js';
import { requirements, skipNote } from './lib/tools.js';

// racksmith-test: both engines — the deploy agent's reports, the image fetches and the phone-home go through the store.
// racksmith-test: minutes 6 — the longest VM suite starts first (test/lib/schedule.ts).

/**
 * Image deployment end to end in QEMU (TCG), once with BIOS and once with UEFI firmware, both
 * machines at once. Each has a 6 GB NVMe disk and a 12 GB virtio disk and PXE-boots through
 * racksmith's DHCP, TFTP and iPXE into racksmith's deploy agent, which reports the machine's
 * disks, picks the NVMe (the smallest), streams the Debian 12 image onto it with its SHA-256
 * checked, grows the root partition, writes the NoCloud seed pointer and reboots. The machine
 * then boots Debian from its disk through the disk's own GRUB (racksmith's iPXE says "local
 * disk"); real systemd starts real cloud-init, which fetches the load balancer's role config from
 * racksmith, installs HAProxy through the test bed's apt-cacher-ng (racksmith's --apt-proxy), has
 * systemd start it on :6443, and phones home: the machine is `ready`.
 */
const test = suite('qemu: image deployment by the deploy agent, BIOS and UEFI, to a real Debian with HAProxy');

const HTTP_PORT = 8080;
const BASE = `http://${SERVER_IP}:${HTTP_PORT}`;
const IMAGE_FILE = 'debian-12-racksmith.img.zst';
const MACHINES = [
  { name: 'bios', firmware: 'bios', mac: '52:54:00:77:00:21', ip: '10.77.0.21', hostname: 'lb-bios', cluster: 'img-bios' },
  { name: 'uefi', firmware: 'efi', mac: '52:54:00:77:00:22', ip: '10.77.0.22', hostname: 'lb-uefi', cluster: 'img-uefi' },
] as const;
// PXE, the agent, a write, a reboot, systemd, cloud-init and one package under TCG, two at once.
const READY_TIMEOUT_MS = 25 * 60_000;
const AGENT_STEPS = ['deploy', 'inventory', 'disk', 'image', 'grow', 'seed'];

const missing = requirements(
  ['qemu-system-x86_64', 'dnsmasq', 'apt-cacher-ng', 'debootstrap', 'zstd', 'mkfs.fat', 'mcopy', 'sgdisk', 'grub-mkimage', 'depmod', 'cpio', 'curl', '/usr/share/ovmf/OVMF.fd', '/usr/lib/ipxe/ipxe.efi', '/usr/lib/ipxe/undionly.kpxe'],
  { netns: true },
);

let bed: PxeBed | null = null;
let rs: RacksmithProcess | null = null;
let cache: AptCache | null = null;
let work = '';
let admin = '';
let image: DebianImage;
const vms: Vm[] = [];
let failed = true;

const { call: api, events } = machineApi(() => bed!, BASE, () => admin);

/** Links (or copies) a cached file into the artifacts directory, which serves files as they are. */
function stage(from: string, to: string): void {
  mkdirSync(join(to, '..'), { recursive: true });
  try {
    linkSync(from, to);
  } catch {
    copyFileSync(from, to);
  }
}

test.before(async () => {
  if (missing) return;
  const t0 = Date.now();
  image = await ensureDebianImage({ log: (l) => process.stdout.write(`  ${l}\n`) });
  const agent = await ensureAgent({ dir: join(GUEST_CACHE, 'agent'), kernelPackage: 'linux-image-amd64', log: (l) => process.stdout.write(`  ${l}\n`) });
  process.stdout.write(`\n  image ${image.key} ${image.built ? `built in ${image.seconds.toFixed(0)} s` : 'cached'}, agent ${agent.key} ${agent.built ? `built in ${agent.seconds.toFixed(0)} s` : 'cached'} (${((Date.now() - t0) / 1000).toFixed(0)} s)\n`);
  work = mkdtempSync(join(tmpdir(), 'racksmith-image-'));
  const artifacts = join(work, 'artifacts');
  stage(agent.kernel, join(artifacts, 'agent', 'vmlinuz'));
  stage(agent.initrd, join(artifacts, 'agent', 'initrd.img'));
  stage(image.path, join(artifacts, 'images', IMAGE_FILE));
  bed = await new PxeBed('img').setup();
  bed.raSender();
  cache = await startAptCache(bed.tb, bed.srv, SERVER_IP);
  rs = await bed.racksmith(work, artifacts, HTTP_PORT, {
    RACKSMITH_APT_PROXY: cache.url,
    // The proof's NVMe is 6 GB, below the default 8 GB floor of the rule.
    RACKSMITH_INSTALL_DISK_MIN_GB: '4',
    RACKSMITH_LOG_LEVEL: 'info',
  });
  admin = (await rs.cli(['token', 'create', '--role', 'admin'])).trim();
});

test.after(async () => {
  await endBootProof({ vms, failed, work, rs, bed, evidence: 'image-deploy', evidenceFiles: (): Record<string, string> => (cache ? { 'apt-cache.txt': cache.served().join('\n') + '\n' } : {}), services: [cache] });
});

test('BIOS and UEFI machines: deploy agent → image on the NVMe → Debian from its disk → cloud-init → HAProxy → ready', async (ctx) => {
  if (missing) return skipNote(ctx.__test__, missing);
  for (const m of MACHINES) {
    const c = await api('POST', '/clusters', { name: m.cluster, os: 'debian-12', installMethod: 'image', imageUrl: IMAGE_FILE, imageSha256: image.sha256, kubernetesVersion: '1.28.4', containerRuntime: 'containerd', cni: 'flannel' });
    assert.is(c.status, 201, JSON.stringify(c.body));
    assert.equal([c.body.os, c.body.ubuntuRelease, c.body.installMethod, c.body.installDiskRule], ['debian-12', null, 'image', 'smallest']);
    const r = await api('POST', '/machines', { mac: m.mac, hostname: m.hostname, role: 'loadbalancer', cluster: m.cluster, ip: m.ip });
    assert.is(r.status, 201, JSON.stringify(r.body));
  }

  const started = Date.now();
  for (const m of MACHINES) {
    const nvme = join(work, `${m.name}-nvme.img`);
    const data = join(work, `${m.name}-data.img`);
    writeFileSync(nvme, '');
    writeFileSync(data, '');
    await import('node:fs/promises').then((fs) => Promise.all([fs.truncate(nvme, 6 * 1024 ** 3), fs.truncate(data, 12 * 1024 ** 3)]));
    // A UEFI machine keeps its boot entries in NVRAM, where the agent puts the installed system's.
    const nvram = join(work, `${m.name}-vars.fd`);
    if (m.firmware === 'efi') copyFileSync('/usr/share/OVMF/OVMF_VARS_4M.fd', nvram);
    vms.push(
      await bed!.vm({
        name: m.name,
        mac: m.mac,
        firmware: m.firmware,
        serialLog: join(work, `${m.name}.log`),
        memoryMiB: 1024,
        allowReboot: true,
        ...(m.firmware === 'efi' ? { nvram } : {}),
        // The virtio disk first on the bus, so "the first disk" is not the answer by accident.
        disks: [
          { file: data, bus: 'virtio', serial: 'DATA0001' },
          { file: nvme, bus: 'nvme', serial: 'NVME0001', bootindex: 2 },
        ],
      }),
    );
  }

  // Both to ready, or the first failure with its reason.
  const readyAt = new Map<string, number>();
  while (readyAt.size < MACHINES.length && Date.now() - started < READY_TIMEOUT_MS) {
    for (const m of MACHINES) {
      if (readyAt.has(m.mac)) continue;
      const r = await api('GET', `/machines/${m.mac}`);
      if (r.body?.state === 'failed') assert.unreachable(`${m.hostname} failed: ${JSON.stringify(r.body.failure)}\n${vms.find((v) => v.opts.name === m.name)?.serial().slice(-3000)}`);
      if (r.body?.state === 'ready') {
        readyAt.set(m.mac, (Date.now() - started) / 1000);
        process.stdout.write(`  ${m.hostname} (${m.firmware}) ready after ${readyAt.get(m.mac)?.toFixed(0)} s\n`);
      }
    }
    await new Promise((r) => setTimeout(r, 3000));
  }
  assert.is(readyAt.size, MACHINES.length, `not ready within ${READY_TIMEOUT_MS / 60_000} min: ${JSON.stringify(await Promise.all(MACHINES.map(async (m) => (await api('GET', `/machines/${m.mac}`)).body?.lastStep)))}`);

  for (const m of MACHINES) {
    const vm = vms.find((v) => v.opts.name === m.name)!;
    const log = vm.serial();
    const machine = (await api('GET', `/machines/${m.mac}`)).body;
    // The disk: the NVMe, the smallest of the two, as the agent reported and racksmith shows.
    assert.equal(
      { name: machine.installedDisk?.name, kind: machine.installedDisk?.kind, sizeBytes: machine.installedDisk?.sizeBytes, serial: machine.installedDisk?.serial, chosenBy: machine.installedDisk?.chosenBy },
      { name: 'nvme0n1', kind: 'nvme', sizeBytes: 6 * 1024 ** 3, serial: 'NVME0001', chosenBy: 'rule smallest' },
      `${m.hostname}: ${JSON.stringify(machine.installedDisk)}`,
    );
    assert.is(machine.lastStep, 'ready');
    // Debian's sshd host keys (cloud-init 22.4 reports the DSA one too), pinned from the phone-home.
    for (const type of ['ssh-ed25519', 'ssh-rsa', 'ecdsa-sha2-nistp256']) assert.ok(machine.hostKeys.includes(type), `${type} in ${machine.hostKeys.join(', ')}`);

    // Every deploy step, reported by the agent, in order, then installed and the phone-home.
    const ev = await events(m.mac);
    const steps = ev.filter((e) => e.type === 'installer.event' && e.data?.eventType === 'finish').map((e) => `${String(e.data.name).replace('racksmith-agent/', '')} ${e.data.result}`);
    // UEFI machines also get a boot entry for the installed system, after the network.
    const expected = [...AGENT_STEPS.slice(1), ...(m.firmware === 'efi' ? ['boot-entry'] : []), 'deploy'];
    assert.equal(steps, expected.map((s) => `${s} SUCCESS`), `${m.hostname}: ${steps.join(', ')}`);
    if (m.firmware === 'efi') assert.match(ev.find((e) => e.data?.name === 'racksmith-agent/boot-entry')?.message ?? '', /UEFI Boot[0-9A-F]{4}: EFI\/BOOT\/BOOTX64\.EFI on \/dev\/nvme0n1p15, after the network \(Boot[0-9A-F]{4}\)/);
    const inventory = ev.find((e) => e.data?.name === 'racksmith-agent/inventory')?.data?.inventory;
    assert.equal(inventory.disks.map((d: any) => [d.name, d.kind, d.sizeBytes]).sort(), [['nvme0n1', 'nvme', 6 * 1024 ** 3], ['vda', 'virtio', 12 * 1024 ** 3]]);
    assert.equal(inventory.nics.map((n: any) => [n.mac, n.driver]), [[m.mac, 'virtio_net']]);
    assert.match(ev.find((e) => e.data?.name === 'racksmith-agent/image' && e.data?.eventType === 'finish')?.message ?? '', new RegExp(`SHA-256 ${image.sha256} verified`));
    assert.match(ev.find((e) => e.data?.name === 'racksmith-agent/grow')?.message ?? '', /root partition \/dev\/nvme0n1p1 grown from 1\.2 GB to 6\.3 GB/);
    const states = ev.filter((e) => e.type === 'state').map((e) => e.data?.to);
    assert.equal(states.slice(-3), ['provisioning', 'installed', 'ready']);
    const phone = ev.find((e) => e.type === 'phone-home');
    assert.is(phone?.data?.instanceId, machine.instanceId ?? phone?.data?.instanceId, 'the installed system runs racksmith\'s instance');
    assert.ok(ev.some((e) => e.type === 'http.artifact' && e.data?.release === 'agent' && e.data?.file === 'initrd.img'), 'the agent came from racksmith');
    assert.ok(ev.some((e) => e.type === 'http.artifact' && e.data?.release === 'images' && e.data?.file === IMAGE_FILE), 'and the image');
    // BIOS reboots through the network: iPXE is told to boot the local disk. UEFI goes straight to
    // the agent's entry (BootNext).
    if (m.firmware === 'bios') assert.ok(ev.some((e) => e.type === 'http.ipxe' && e.data?.script === 'local'), 'after the install, iPXE was told to boot the local disk');
    if (m.firmware === 'efi') assert.ok(ev.some((e) => e.type === 'tftp.transfer'), 'UEFI firmware PXE fetched iPXE over TFTP');

    // The serial console: the agent, then the disk's own GRUB, Debian's systemd and cloud-init.
    const agentDone = log.indexOf('racksmith-agent: installed on /dev/nvme0n1; rebooting');
    assert.ok(agentDone > 0, `${m.hostname}: the agent's last line\n${log.slice(-2000)}`);
    const after = log.slice(agentDone);
    // What the console said, for a failure: its lines that name what the assertions look for, and its end.
    const seen = (): string => consoleExcerpt(after, /loading the kernel|BdsDxe: starting|Welcome to|Cloud-init v\.|haproxy\.service -/);
    assert.match(after, /Debian GNU\/Linux 12: loading the kernel from the disk/, `${m.hostname}: GRUB from the NVMe\n${seen()}`);
    if (m.firmware === 'efi') {
      // The firmware starts the entry the agent added for the installed system (BootNext), not the network.
      const entry = new RegExp(`BdsDxe: starting Boot[0-9A-F]{4} "racksmith: ${m.hostname}"`).exec(after);
      assert.ok(entry, `${m.hostname}: the agent's boot entry started\n${seen()}`);
      assert.not.match(after.slice(0, entry.index), /PXEv4/, 'no network boot before it');
      assert.match(ev.find((e) => e.data?.name === 'racksmith-agent/boot-entry')?.message ?? '', /; next boot Boot[0-9A-F]{4}$/);
    }
    assert.match(after, /Welcome to .*Debian GNU\/Linux 12 \(bookworm\)/, `${m.hostname}: systemd's welcome\n${seen()}`);
    assert.match(after, /cloud-init\[\d+\]: Cloud-init v\. 22\.4/, `${m.hostname}: cloud-init's banner\n${seen()}`);
    assert.match(after, /Started .*haproxy\.service/, `${m.hostname}: systemd started HAProxy\n${seen()}`);

    // HAProxy listens on :6443 of the installed system.
    await bed!.tb.exec(bed!.srv, 'bash', ['-c', `exec 3<>/dev/tcp/${m.ip}/6443`], { timeoutMs: 10_000 }).catch((err: unknown) => {
      throw new Error(`${m.hostname}: nothing listens on ${m.ip}:6443 (${String(err).slice(0, 300)})\n${seen()}`);
    });
  }
  // HAProxy itself came through the site's package cache (racksmith's --apt-proxy).
  assert.ok(cache!.served().some((p) => /\/haproxy_2\.6[^/]*_amd64\.deb$/.test(p)), `apt-cacher-ng served haproxy: ${cache!.served().slice(-20).join(' ')}`);
  process.stdout.write(`  both ready in ${((Date.now() - started) / 1000).toFixed(0)} s from power-on\n`);
  failed = false;
});

test.run();
