/**
 * `npm run bench:boot`: seconds from QEMU start to phone-home, for a BIOS machine (iPXE ROM,
 * debian-installer path) and a UEFI machine (OVMF firmware PXE → TFTP → iPXE, subiquity path),
 * with racksmith serving DHCP, TFTP and HTTP alone, against dnsmasq (DHCP, TFTP) + nginx (HTTP) serving the
 * same rendered scripts, seeds and artifacts — in the same run, rounds alternating, one VM at a
 * time, under the machine-wide heavy lock (`npm run bench:boot` takes it with flock). Prints
 * each figure, the medians and the ratio.
 *
 * Environment: BENCH_ROUNDS (default 3).
 */
import { chmodSync, copyFileSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { DEFAULT_INSTALLERS } from '../server/boot/releases.js';
import { decideBootScript, type BootSettings } from '../server/boot/script.js';
import type { Machine, Role, UbuntuRelease } from '../server/inventory/model.js';
import { AUTOINSTALL_DIR, BOOT_TEMPLATES_DIR } from '../server/lib/paths.js';
import { macHexHyphen, type Mac } from '../server/lib/mac.js';
import { createRenderer } from '../server/render/templates.js';
import { seedContext } from '../server/seeds/context.js';
import { renderSeedFile, SEED_FILES } from '../server/seeds/render.js';
import { buildGuest } from '../test/lib/guest/build.js';
import { PxeBed, SERVER_IP, type VmFirmware } from '../test/lib/pxe.js';
import { startRacksmith } from '../test/lib/racksmith.js';
import { fixtureCluster, fixtureMachine, SEED_SETTINGS } from '../test/lib/seed-fixtures.js';

const ROUNDS = Math.max(1, Number(process.env['BENCH_ROUNDS'] ?? 3));
const PORT = 8080;
const BASE = `http://${SERVER_IP}:${PORT}`;

interface Subject {
  readonly firmware: Extract<VmFirmware, 'bios' | 'efi'>;
  readonly mac: string;
  readonly ip: string;
  readonly hostname: string;
  readonly release: UbuntuRelease;
  readonly role: Role;
}
const SUBJECTS: readonly Subject[] = [
  { firmware: 'bios', mac: '52:54:00:77:00:31', ip: '10.77.0.31', hostname: 'bench-bios', release: '18.04', role: 'control-plane' },
  { firmware: 'efi', mac: '52:54:00:77:00:32', ip: '10.77.0.32', hostname: 'bench-efi', release: '22.04', role: 'worker' },
];

function median(xs: readonly number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
}

const work = mkdtempSync(join(tmpdir(), 'racksmith-bench-boot-'));
// nginx's workers run unprivileged: they must be able to read the document root.
chmodSync(work, 0o755);
const bed = await new PxeBed('bb').setup();
const children: ChildProcess[] = [];
try {
  const guest = await buildGuest();
  const artifacts = join(work, 'artifacts');
  for (const s of SUBJECTS) {
    const inst = DEFAULT_INSTALLERS[s.release];
    mkdirSync(join(artifacts, s.release), { recursive: true });
    // Copies, not links: racksmith refuses a link that leads out of its artifacts directory.
    copyFileSync(guest.kernel, join(artifacts, s.release, inst.kernel));
    copyFileSync(guest.initrd, join(artifacts, s.release, inst.initrd));
  }

  // The peer's document root: the same templates rendered for the same machines, the same files.
  const www = join(work, 'www');
  mkdirSync(join(www, 'boot'), { recursive: true });
  symlinkSync(artifacts, join(www, 'artifacts'));
  const bootR = createRenderer(BOOT_TEMPLATES_DIR);
  const seedR = createRenderer(AUTOINSTALL_DIR);
  const settings: BootSettings = { baseUrl: BASE, waitSeconds: 30, waitAttempts: 20, chainTries: 5, retrySeconds: 5, kernelArgs: ['console=ttyS0,115200', 'panic=-1'] };
  const chain = decideBootScript({ query: { mac: null, arch: null, platform: null, uuid: null, attempt: 1 }, machine: null, cluster: null, installer: null, seedToken: null }, settings);
  writeFileSync(join(www, 'chain.ipxe'), bootR.render(chain.template, chain.context));
  for (const s of SUBJECTS) {
    const cluster = fixtureCluster(s.release);
    const machine: Machine = { ...fixtureMachine(cluster.name, s.mac, s.hostname, s.role, s.ip, 'assigned'), firmware: s.firmware };
    const token = `bench-${s.firmware}-token-0123456789`;
    const installer = DEFAULT_INSTALLERS[s.release];
    const d = decideBootScript({ query: { mac: s.mac as Mac, arch: 'x86_64', platform: s.firmware === 'efi' ? 'efi' : 'pcbios', uuid: null, attempt: 1 }, machine, cluster, installer, seedToken: token }, settings);
    writeFileSync(join(www, 'boot', `${macHexHyphen(s.mac as Mac)}.ipxe`), bootR.render(d.template, d.context));
    const ctx = seedContext({ machine, cluster, members: [machine], installer, token, instanceId: `iid-bench-${s.firmware}` }, { ...SEED_SETTINGS, baseUrl: BASE });
    mkdirSync(join(www, 'seed', token), { recursive: true });
    for (const f of SEED_FILES) {
      const body = renderSeedFile(seedR, f, installer.kind, ctx);
      if (body !== null) writeFileSync(join(www, 'seed', token, f), body);
    }
  }
  const nginxConf = join(work, 'nginx.conf');
  const temp = join(work, 'nginx-tmp');
  mkdirSync(temp);
  writeFileSync(
    nginxConf,
    `daemon off;
worker_processes 1;
pid ${join(work, 'nginx.pid')};
error_log stderr warn;
events { worker_connections 256; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  default_type application/octet-stream;
  client_body_temp_path ${temp}/body; proxy_temp_path ${temp}/proxy; fastcgi_temp_path ${temp}/fcgi;
  uwsgi_temp_path ${temp}/uwsgi; scgi_temp_path ${temp}/scgi;
  server {
    listen ${SERVER_IP}:${PORT};
    root ${www};
    location = /boot.ipxe {
      default_type text/plain;
      if ($arg_mac = "") { rewrite ^ /chain.ipxe last; }
      try_files /boot/$arg_mac.ipxe =404;
    }
    location ~ ^/seed/[^/]+/installed$ { default_type application/json; return 200 '{"state":"installed"}'; }
    location ~ ^/seed/[^/]+/phone-home$ { default_type application/json; return 200 '{"state":"ready"}'; }
    location ~ ^/seed/[^/]+/events$ { default_type application/json; return 200 '{}'; }
  }
}
`,
  );

  const results: Record<'racksmith' | 'peer', Record<Extract<VmFirmware, 'bios' | 'efi'>, number[]>> = { racksmith: { bios: [], efi: [] }, peer: { bios: [], efi: [] } };
  const reservations = SUBJECTS.map((s) => [s.mac, s.ip] as [string, string]);

  async function boot(side: 'racksmith' | 'peer', s: Subject, round: number): Promise<void> {
    const vm = await bed.vm({ name: `${side}-${s.firmware}-${round}`, mac: s.mac, firmware: s.firmware, serialLog: join(work, `${side}-${s.firmware}-${round}.log`) });
    try {
      const t = await vm.waitFor(/RACKSMITH-GUEST PHONED-HOME .*"state":"ready"/, Number(process.env['BENCH_VM_TIMEOUT_MS'] ?? 240_000));
      results[side][s.firmware].push(t);
      process.stdout.write(`  round ${round} ${side.padEnd(9)} ${s.firmware.padEnd(4)} ${t.toFixed(1)} s\n`);
    } finally {
      await vm.stop();
    }
  }

  // SIGTERM first: nginx's master then ends its workers (a SIGKILLed master leaves them holding
  // the port); SIGKILL only if it does not go within 5 s.
  const stop = async (c: ChildProcess): Promise<void> => {
    if (c.exitCode !== null || c.signalCode !== null) return;
    const gone = new Promise((r) => c.once('exit', r));
    c.kill('SIGTERM');
    const timer = setTimeout(() => c.kill('SIGKILL'), 5000);
    await gone;
    clearTimeout(timer);
  };

  for (let round = 1; round <= ROUNDS; round++) {
    // racksmith alone (plus an RA sender), fresh data directory each round.
    const rs = await startRacksmith({
      netns: bed.srv,
      host: SERVER_IP,
      httpPort: PORT,
      env: {
        RACKSMITH_ARTIFACTS_DIR: artifacts,
        RACKSMITH_INSTALLER_KERNEL_ARGS: 'console=ttyS0,115200 panic=-1',
        RACKSMITH_LOG_LEVEL: 'warn',
        RACKSMITH_DHCP_MODE: 'authoritative',
        RACKSMITH_DHCP_INTERFACE: bed.serverIf,
        RACKSMITH_DHCP_RANGE: '10.77.0.100-10.77.0.199',
        RACKSMITH_DHCP_NETMASK: '255.255.255.0',
        RACKSMITH_TFTP_PORT: '69',
      },
      timeoutMs: 30_000,
    });
    // Router adverts only (the peer's dnsmasq sends them too): iPXE's RA wait is not what is measured.
    const side: ChildProcess[] = [bed.raSender()];
    try {
      const admin = (await rs.cli(['token', 'create', '--role', 'admin'])).trim();
      for (const s of SUBJECTS) {
        const cluster = fixtureCluster(s.release);
        await bed.api(BASE, admin, 'POST', '/api/v1/clusters', { name: cluster.name, ubuntuRelease: s.release, kubernetesVersion: cluster.kubernetesVersion, containerRuntime: cluster.containerRuntime, cni: cluster.cni });
        const r = await bed.api(BASE, admin, 'POST', '/api/v1/machines', { mac: s.mac, hostname: s.hostname, role: s.role, cluster: cluster.name, ip: s.ip });
        if (r.status !== 201) throw new Error(`cannot create ${s.hostname}: ${JSON.stringify(r.body)}`);
      }
      for (const s of SUBJECTS) await boot('racksmith', s, round);
    } finally {
      for (const c of side) await stop(c);
      await rs.stop();
      rs.cleanup();
    }

    // The peer: dnsmasq (DHCP, TFTP, RAs) + nginx.
    const peer = [bed.dnsmasqPxe(`${BASE}/boot.ipxe`, reservations), bed.tb.spawn(bed.srv, 'nginx', ['-c', nginxConf])];
    children.push(...peer);
    let peerLog = '';
    for (const c of peer) c.stderr?.on('data', (d: Buffer) => (peerLog += d.toString()));
    try {
      await new Promise((r) => setTimeout(r, 500));
      for (const s of SUBJECTS) await boot('peer', s, round);
    } catch (err) {
      process.stdout.write(`peer log (without router adverts):\n${peerLog.split('\n').filter((l) => !l.includes('RTR-')).slice(-40).join('\n')}\n`);
      throw err;
    } finally {
      for (const c of peer) await stop(c);
    }
  }

  const line = (label: string, a: number[], b: number[]): string =>
    `| ${label} | ${median(a).toFixed(1)} | ${median(b).toFixed(1)} | ${(median(a) / median(b)).toFixed(2)} | ${a.map((x) => x.toFixed(1)).join(', ')} | ${b.map((x) => x.toFixed(1)).join(', ')} |`;
  process.stdout.write(
    [
      '',
      `Boot to phone-home, seconds from QEMU start (TCG, 256 MiB, one VM at a time), median of ${ROUNDS}.`,
      'racksmith served DHCP, TFTP and HTTP itself; the peer is dnsmasq (DHCP, TFTP) + nginx (HTTP) serving the same files.',
      '',
      '| path | racksmith | dnsmasq + nginx | ratio (racksmith / peer) | racksmith runs | peer runs |',
      '|---|---|---|---|---|---|',
      line('BIOS (iPXE ROM → d-i)', results.racksmith.bios, results.peer.bios),
      line('UEFI (OVMF PXE → TFTP → iPXE → casper)', results.racksmith.efi, results.peer.efi),
      '',
    ].join('\n'),
  );
} finally {
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
  await bed.destroy();
  rmSync(work, { recursive: true, force: true });
}
