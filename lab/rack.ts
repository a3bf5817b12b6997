import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { execFile } from 'node:child_process';
import { connect } from 'node:net';
import { promisify } from 'node:util';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Role } from '../server/inventory/model.js';
import { startBmcSim, type BmcSim } from '../test/lib/bmc-sim.js';
import { PxeBed, SERVER_IP } from '../test/lib/pxe.js';
import { startRacksmith, type RacksmithProcess } from '../test/lib/racksmith.js';
import type { ImageDeployment, LabImages } from './images.js';
import { startAptCache, type AptCache } from '../test/lib/apt-cache.js';
import { buildStandinRepo } from './k8s-repo.js';
import { PACKAGE_ROOT } from '../server/lib/paths.js';

/**
 * The virtual rack: racksmith in a server namespace on a bridge (authoritative DHCP, TFTP, HTTP on
 * its own veth), and per machine a tap on the bridge, a small data disk, and an ipmi_sim BMC on
 * its own address of the bridge whose chassis control starts and stops the machine's QEMU. Every
 * name starts with `rs<tag><hex>`; `destroy()` ends every process and removes every file.
 *
 * The machines' QEMU starts paused; a boot gate lets at most `maxBooting` of them run their boot
 * (PXE, installer, reboot, installed system up) at once — TCG on two cores cannot boot more at a
 * useful speed. A machine waiting at the gate is, to racksmith, a machine slow to come out of POST.
 */
/**
 * `secureboot`: q35 + SMM, OVMF's Secure Boot build with the Microsoft keys (enforced): the
 * rack's machines take the signed shim → GRUB chain from racksmith, and boot their installed
 * system through shim and Debian's signed GRUB on a small ESP disk. `http`: OVMF with its PXE
 * entries off, so it boots over UEFI HTTP Boot, with racksmith's TFTP off.
 */
export type Firmware = 'bios' | 'uefi' | 'secureboot' | 'http';
export type FirmwareChoice = Firmware | 'mixed';
export const FIRMWARE_CHOICES: readonly FirmwareChoice[] = ['bios', 'uefi', 'mixed', 'secureboot', 'http'];

export function isEfi(f: Firmware): boolean {
  return f !== 'bios';
}

export interface LabMachine {
  readonly name: string;
  readonly role: Role;
  readonly mac: string;
  readonly ip: string;
  readonly firmware: Firmware;
  readonly bmcAddress: string;
  readonly dir: string;
  bmc: BmcSim | null;
}

export interface RackOptions {
  /** Testbed tag: 1–3 lower-case letters. */
  readonly tag: string;
  readonly machines: number;
  readonly firmware: FirmwareChoice;
  readonly images: LabImages;
  /**
   * Real Debian machines deployed by image (racksmith's deploy agent) instead of the test guest:
   * the agent and the Debian image, HAProxy and containerd through apt-cacher-ng on the bridge,
   * the Kubernetes packages from a stand-in repository.
   */
  readonly imageDeployment?: ImageDeployment | undefined;
  readonly maxBooting?: number;
  readonly memoryMiB?: number;
  readonly log?: (line: string) => void;
  /** One provisioning network of several (`npm run lab -- --instances N`, lab/site.ts). */
  readonly network?: RackNetwork | undefined;
}

/**
 * A rack on one of a site's provisioning networks: its own segment (10.<77+index>.0.0/24), its
 * own racksmith instance on the shared database, its own machines and BMCs, and a router on the
 * segment (its address `.254`) to the other networks and the database.
 */
export interface RackNetwork {
  readonly index: number;
  /** These machines, not `planMachines`' (names unique across the site). */
  readonly plan: readonly { name: string; role: Role; firmware: Firmware }[];
  /** racksmith's environment on this network: the database, the shared secret key, the instance name. */
  readonly env: Readonly<Record<string, string>>;
  /** Joins the rack's segment to the site (its router) once the segment exists, before racksmith starts. */
  readonly attach: (rack: Rack) => Promise<void>;
  /** Machines booting on the site's other networks (one boot gate for the whole host). */
  readonly bootingElsewhere: () => number;
}

/** The first three octets of network `index`'s segment: 10.77.0, 10.78.0, … */
export function segment(index: number): string {
  return `10.${77 + index}.0`;
}

export const CLUSTER = 'lab';
export const RACK = 'lab-r1';
export const HTTP_PORT = 8080;
export const BASE = `http://${SERVER_IP}:${HTTP_PORT}`;
export const BMC_USER = 'admin';
export const KUBERNETES_VERSION = '1.28.4';
/** The next minor the lab's upgrade goes to. */
export const UPGRADE_VERSION = '1.29.10';
/** The API's virtual IP of a load-balancer pair: in the provisioning network, outside the DHCP pool and every machine's address. */
export const VIP = '10.77.0.90';
const BOOTED = /RACKSMITH-SYSTEM (UP|FAIL)/;
/** A real Debian machine is up once cloud-init's last stage ran, or its agent stopped on a failure. */
const BOOTED_DEBIAN = /Cloud-init v\. \S+ finished at|racksmith-agent: stopped;/;
export const CSV_HEADER = 'mac,hostname,role,cluster,ip,rack,bmc_address,bmc_username,bmc_password';
export const IMAGE_FILE = 'debian-12-racksmith.img.zst';
const REPO_PORT = 8081;
const OVMF_SECBOOT_CODE = '/usr/share/OVMF/OVMF_CODE_4M.secboot.fd';
const OVMF_MS_VARS = '/usr/share/OVMF/OVMF_VARS_4M.ms.fd';
const run = promisify(execFile);

/**
 * 1 load balancer (2 sharing the VIP from 7 machines on), 2 control-plane nodes (3 from 6
 * machines on: an etcd that survives a loss), the rest workers.
 */
export function planMachines(n: number, firmware: FirmwareChoice): { name: string; role: Role; firmware: Firmware }[] {
  if (!Number.isInteger(n) || n < 4) throw new Error('--machines: at least 4 (1 load balancer, 2 control-plane nodes, 1 worker)');
  if (n > 40) throw new Error('--machines: at most 40');
  const controls = n >= 6 ? 3 : 2;
  const lbs = n >= 7 ? 2 : 1;
  const out: { name: string; role: Role; firmware: Firmware }[] = [];
  for (let i = 0; i < n; i++) {
    const role: Role = i < lbs ? 'loadbalancer' : i < lbs + controls ? 'control-plane' : 'worker';
    const name = role === 'loadbalancer' ? `lb${i + 1}` : role === 'control-plane' ? `cp${i - lbs + 1}` : `w${i - lbs - controls + 1}`;
    // mixed: every other machine UEFI, starting with the first control node; the last worker is UEFI too.
    const fw: Firmware = firmware === 'mixed' ? (i % 2 === 1 || i === n - 1 ? 'uefi' : 'bios') : firmware;
    out.push({ name, role, firmware: fw });
  }
  return out;
}

interface GateEntry {
  pid: number;
  state: 'held' | 'booting' | 'up';
  since: number;
  consoleAt: number;
}

export class Rack {
  readonly bed: PxeBed;
  readonly work: string;
  readonly machines: LabMachine[] = [];
  rs: RacksmithProcess | null = null;
  private earlierOutput = '';
  aptCache: AptCache | null = null;
  private readonly gate = new Map<string, GateEntry>();
  private gateTimer: NodeJS.Timeout | null = null;
  /** Most machines seen booting at once. */
  maxBootingSeen = 0;
  /**
   * No machine starts its boot while set: a machine powered on meanwhile stays in POST, as one
   * does while its network's provisioning server is down (its DHCP would go unanswered).
   */
  holdBoots = false;
  private readonly log: (line: string) => void;

  constructor(private readonly opts: RackOptions) {
    this.bed = new PxeBed(opts.tag);
    this.work = mkdtempSync(join(tmpdir(), `racksmith-lab-${this.bed.tb.prefix}-`));
    this.log = opts.log ?? (() => undefined);
  }

  get net(): number {
    return this.opts.network?.index ?? 0;
  }

  /** racksmith's address on this rack's segment. */
  get serverIp(): string {
    return this.opts.network ? `${segment(this.net)}.1` : SERVER_IP;
  }

  get base(): string {
    return `http://${this.serverIp}:${HTTP_PORT}`;
  }

  /** The rack's name in racksmith (lab-r1, lab-r2, …). */
  get rackName(): string {
    return this.opts.network ? `lab-r${this.net + 1}` : RACK;
  }

  /** The site's router on this segment (none on a lone rack). */
  get router(): string | null {
    return this.opts.network ? `${segment(this.net)}.254` : null;
  }

  get maxBooting(): number {
    return this.opts.maxBooting ?? 3;
  }

  get imageMode(): boolean {
    return this.opts.imageDeployment !== undefined;
  }

  async start(): Promise<void> {
    if (this.opts.network) {
      await this.bed.setup(`${this.serverIp}/24`, `fd${77 + this.net}::1`);
      await this.opts.network.attach(this);
    } else await this.bed.setup();
    this.bed.raSender();
    if (this.imageMode) {
      this.aptCache = await startAptCache(this.bed.tb, this.bed.srv, SERVER_IP);
      const repo = await buildStandinRepo(join(this.work, 'k8s-repo'), KUBERNETES_VERSION, SERVER_IP);
      this.bed.tb.spawn(this.bed.srv, process.execPath, [join(PACKAGE_ROOT, 'dist/test/lib/cloudinit/static-server.js'), repo.www, SERVER_IP, String(REPO_PORT)]);
      this.log(`apt-cacher-ng at ${this.aptCache.url}; the stand-in Kubernetes repository at http://${SERVER_IP}:${REPO_PORT}/`);
    }
    const plan = this.opts.network?.plan ?? planMachines(this.opts.machines, this.opts.firmware);
    const net = segment(this.net);
    plan.forEach((p, i) => {
      const octet = (i + 1).toString(16).padStart(2, '0');
      const dir = join(this.work, p.name);
      mkdirSync(dir, { recursive: true });
      this.machines.push({ ...p, mac: `52:54:00:77:${(this.net + 1).toString(16).padStart(2, '0')}:${octet}`, ip: `${net}.${11 + i}`, bmcAddress: `${net}.${201 + i}`, dir, bmc: null });
    });
    await this.startRacksmith();
    this.log(`racksmith is serving ${this.base} in namespace ${this.bed.srv} (DHCP, TFTP, HTTP on ${this.bed.serverIf})`);
    for (const m of this.machines) await this.startMachine(m);
    this.log(`${this.machines.length} machines with simulated BMCs on bridge ${this.bed.bridge} (namespace ${this.bed.sw})`);
    this.gateTimer = setInterval(() => void this.tickGate(), 500);
  }

  private async startRacksmith(): Promise<void> {
    const artifacts = join(this.work, 'artifacts', '22.04');
    mkdirSync(artifacts, { recursive: true });
    writeFileSync(join(artifacts, 'vmlinuz'), readFileSync(this.opts.images.installer.kernel));
    writeFileSync(join(artifacts, 'initrd'), readFileSync(this.opts.images.installer.initrd));
    const deploy = this.opts.imageDeployment;
    const imageEnv: Record<string, string> = {};
    if (deploy) {
      const a = join(this.work, 'artifacts');
      mkdirSync(join(a, 'agent'), { recursive: true });
      mkdirSync(join(a, 'images'), { recursive: true });
      copyFileSync(deploy.agent.kernel, join(a, 'agent', 'vmlinuz'));
      copyFileSync(deploy.agent.initrd, join(a, 'agent', 'initrd.img'));
      copyFileSync(deploy.image.path, join(a, 'images', IMAGE_FILE));
      Object.assign(imageEnv, {
        RACKSMITH_APT_PROXY: this.aptCache?.url ?? '',
        RACKSMITH_KUBERNETES_REPO: `http://${SERVER_IP}:${REPO_PORT}/pkgs.k8s.io/core:/stable:`,
        // Each machine has one 8 GB NVMe disk.
        RACKSMITH_INSTALL_DISK_MIN_GB: '4',
        // Debian has sudo: the seeds' own SSH user.
        RACKSMITH_SSH_USER: 'racksmith',
      });
    }
    const network = this.opts.network;
    this.rs = await startRacksmith({
      netns: this.bed.srv,
      host: this.serverIp,
      httpPort: HTTP_PORT,
      dataDir: join(this.work, 'racksmith-data'),
      timeoutMs: 60_000,
      env: {
        RACKSMITH_LOG_LEVEL: 'info',
        RACKSMITH_ARTIFACTS_DIR: join(this.work, 'artifacts'),
        RACKSMITH_INSTALLER_KERNEL_ARGS: 'console=ttyS0,115200 panic=-1',
        RACKSMITH_BOOT_WAIT_SECONDS: '5',
        RACKSMITH_DHCP_MODE: 'authoritative',
        RACKSMITH_DHCP_INTERFACE: this.bed.serverIf,
        RACKSMITH_DHCP_RANGE: `${segment(this.net)}.100-${segment(this.net)}.199`,
        RACKSMITH_DHCP_NETMASK: '255.255.255.0',
        // HTTP Boot needs no TFTP at all; Secure Boot machines take the signed chain.
        RACKSMITH_TFTP_PORT: this.opts.firmware === 'http' ? '0' : '69',
        ...(this.opts.firmware === 'secureboot' ? { RACKSMITH_BOOT_LOADER: 'shim-grub' } : {}),
        // The installed system has no sudo: racksmith logs in as root (the seeds authorise its key for root).
        RACKSMITH_SSH_USER: 'root',
        RACKSMITH_ORCHESTRATOR_POLL_SECONDS: '3',
        RACKSMITH_ORCHESTRATOR_RETRY_DELAY_MS: '3000',
        RACKSMITH_ORCHESTRATOR_DRAIN_TIMEOUT_SECONDS: '120',
        RACKSMITH_POWER_TIMEOUT_SECONDS: '30',
        // Nothing leaves the rack: the stand-in records the manifest URL, never fetches it.
        RACKSMITH_CNI_MANIFEST_FLANNEL: `${this.base}/cni/kube-flannel.yml`,
        ...imageEnv,
        // The site's router: the way to the other networks (their machines, the API endpoint behind the load balancer).
        ...(network ? { RACKSMITH_DHCP_ROUTER: `${segment(this.net)}.254`, ...network.env } : {}),
      },
    });
  }

  /** A real Debian machine: its NIC first, then an empty NVMe disk the deploy agent installs on. */
  private imageVmCommand(m: LabMachine): string {
    const tap = this.bed.tb.name(`t${this.machines.indexOf(m) + 1}`);
    const efi = m.firmware === 'uefi';
    const d = m.dir;
    return [
      `[ -f ${d}/console.log ] && cat ${d}/console.log >> ${d}/console-earlier.log;`,
      `qemu-system-x86_64 -machine pc -accel tcg -m ${this.opts.memoryMiB ?? 1536} -smp 1 -display none -monitor none -name rs-lab-${m.name}`,
      `-netdev tap,id=n0,ifname=${tap},script=no,downscript=no -device virtio-net-pci,netdev=n0,mac=${m.mac},bootindex=1${efi ? ',romfile=' : ''}`,
      `-drive file=${d}/nvme.img,format=raw,if=none,id=disk,cache=unsafe -device nvme,drive=disk,serial=NVME${m.mac.replace(/:/g, '').slice(-6).toUpperCase()},bootindex=2`,
      `-serial file:${d}/console.log`,
      efi ? '-bios /usr/share/ovmf/OVMF.fd' : '',
      `-S -qmp unix:${d}/qmp.sock,server=on,wait=off -pidfile $D/qemu.pid -daemonize </dev/null >/dev/null 2>>${d}/qemu.err`,
    ].join(' ');
  }

  private vmCommand(m: LabMachine): string {
    if (this.imageMode) return this.imageVmCommand(m);
    const tap = this.bed.tb.name(`t${this.machines.indexOf(m) + 1}`);
    const efi = isEfi(m.firmware);
    const sb = m.firmware === 'secureboot';
    // UEFI machines boot the way real UEFI hardware does: the firmware's own PXE (the NIC's iPXE
    // ROM off), TFTP from racksmith, then iPXE. Network first, then the system disk.
    //
    // BIOS machines boot the network first, then the system disk (racksmith's iPXE script says
    // which). OVMF drops a disk from its boot order when QEMU's bootindex names the network
    // first, so for UEFI machines the chassis does what "network, then disk" amounts to: a disk
    // with an installed system boots from the disk; a blank one, or a BMC's one-time "next boot
    // PXE", boots from the network for that one boot (QEMU ends at the installer's reboot, and
    // the machine comes back up from its disk).
    const d = m.dir;
    const nic = `virtio-net-pci,netdev=n0,mac=${m.mac}${efi ? ',romfile=' : ''}`;
    const installed = `debugfs -R 'stat /installed' ${d}/data.img 2>/dev/null | grep -q Inode`;
    // Under Secure Boot the firmware boots the ESP disk (shim → Debian's signed GRUB), which
    // finds the system disk's kernel; the system disk's own GRUB is not signed. The system disk
    // and the data disk still need a boot index: OVMF connects only the devices QEMU's boot order
    // names, and GRUB would not see an unconnected disk.
    const diskBoot = sb
      ? `-device virtio-blk-pci,drive=esp,bootindex=1 -device virtio-blk-pci,drive=sys,serial=racksmith-system,bootindex=3`
      : `-device virtio-blk-pci,drive=sys,serial=racksmith-system,bootindex=1`;
    const diskPlain = `${sb ? '-device virtio-blk-pci,drive=esp ' : ''}-device virtio-blk-pci,drive=sys,serial=racksmith-system`;
    const devices = efi
      ? `$(if [ "$order" != n ] && ${installed}; then echo "-device ${nic},bootindex=2 ${diskBoot}"; else echo default > $D/boot; echo "-device ${nic},bootindex=1 ${diskPlain} -no-reboot"; fi)`
      : `-device ${nic},bootindex=1 -device virtio-blk-pci,drive=sys,serial=racksmith-system,bootindex=2`;
    const firmware =
      m.firmware === 'secureboot'
        ? `-global driver=cfi.pflash01,property=secure,value=on -drive if=pflash,format=raw,unit=0,readonly=on,file=${OVMF_SECBOOT_CODE} -drive if=pflash,format=raw,unit=1,file=${d}/vars.fd -drive file=${this.opts.images.secureBootEsp ?? ''},format=raw,if=none,id=esp,readonly=on`
        : m.firmware === 'http'
          ? '-bios /usr/share/ovmf/OVMF.fd -fw_cfg name=opt/org.tianocore/IPv4PXESupport,string=n -fw_cfg name=opt/org.tianocore/IPv6PXESupport,string=n'
          : efi
            ? '-bios /usr/share/ovmf/OVMF.fd'
            : '';
    return [
      `[ -f ${d}/console.log ] && cat ${d}/console.log >> ${d}/console-earlier.log;`,
      `qemu-system-x86_64 -machine ${sb ? 'q35,smm=on' : 'pc'} -accel tcg -m ${this.opts.memoryMiB ?? 512} -smp 1 -display none -monitor none -name rs-lab-${m.name}`,
      `-netdev tap,id=n0,ifname=${tap},script=no,downscript=no -drive file=${this.opts.images.systemDisk},format=raw,if=none,id=sys,readonly=on ${devices}`,
      `-drive file=${d}/data.img,format=raw,if=none,id=data -device virtio-blk-pci,drive=data,serial=racksmith-data${sb ? ',bootindex=4' : ''}`,
      `-serial file:${d}/console.log -serial file:${d}/syslog-$(date +%s%N).log`,
      firmware,
      `-S -qmp unix:${d}/qmp.sock,server=on,wait=off -pidfile $D/qemu.pid -daemonize </dev/null >/dev/null 2>>${d}/qemu.err`,
    ].join(' ');
  }

  private async startMachine(m: LabMachine): Promise<void> {
    const i = this.machines.indexOf(m) + 1;
    const tap = this.bed.tb.name(`t${i}`);
    await this.bed.tb.ip(this.bed.sw, ['tuntap', 'add', 'dev', tap, 'mode', 'tap']);
    await this.bed.tb.ip(this.bed.sw, ['link', 'set', tap, 'master', this.bed.bridge]);
    await this.bed.tb.ip(this.bed.sw, ['link', 'set', tap, 'up']);
    await this.bed.tb.ip(this.bed.sw, ['addr', 'add', `${m.bmcAddress}/24`, 'dev', this.bed.bridge]);
    if (this.imageMode) {
      // An empty disk, as a new server has: the deploy agent writes Debian onto it.
      writeFileSync(join(m.dir, 'nvme.img'), Buffer.alloc(0));
      await run('truncate', ['-s', '8G', join(m.dir, 'nvme.img')]);
    } else {
      // A blank disk: what the installer writes, what the installed system keeps.
      writeFileSync(join(m.dir, 'data.img'), Buffer.alloc(0));
      await run('truncate', ['-s', '16M', join(m.dir, 'data.img')]);
      await run('mkfs.ext4', ['-q', '-F', '-L', 'rsdata', join(m.dir, 'data.img')]);
    }
    // The machine's own UEFI variable store (boot entries, Secure Boot keys), kept across power cycles.
    if (m.firmware === 'secureboot') copyFileSync(OVMF_MS_VARS, join(m.dir, 'vars.fd'));
    m.bmc = await startBmcSim({ name: `${this.bed.tb.prefix}-${m.name}`, password: this.bmcPassword(m), vm: true, netns: this.bed.sw, address: m.bmcAddress, vmCommand: this.vmCommand(m) });
  }

  bmcPassword(m: LabMachine): string {
    return `lab-${m.name}-${this.bed.tb.prefix}`;
  }

  /** The rack's CSV, as an admin would import it. */
  csv(): string {
    return [CSV_HEADER, ...this.csvRows()].join('\n') + '\n';
  }

  csvRows(): string[] {
    return this.machines.map((m) => [m.mac, m.name, m.role, CLUSTER, m.ip, this.rackName, m.bmcAddress, BMC_USER, this.bmcPassword(m)].join(','));
  }

  /** `kill -9` of this rack's racksmith (a host lost); its log is kept for `output()`. */
  async killRacksmith(): Promise<void> {
    await this.rs?.kill9();
  }

  /** racksmith started again on the same data directory and database, as systemd's `Restart=` would. */
  async restartRacksmith(): Promise<void> {
    if (this.rs) this.earlierOutput += this.rs.output() + '\n── racksmith restarted ──\n';
    await this.startRacksmith();
  }

  /** racksmith's log, every run of it on this rack. */
  racksmithLog(): string {
    return this.earlierOutput + (this.rs?.output() ?? '');
  }

  console(m: LabMachine): string {
    const read = (f: string): string => (existsSync(join(m.dir, f)) ? readFileSync(join(m.dir, f), 'latin1') : '');
    return read('console-earlier.log') + read('console.log');
  }

  /** What a failed run shows: each machine's place in the boot gate and its console's tail, then racksmith's log's. */
  evidence(consoleChars = 1500, logChars = 3000): string {
    const esc = new RegExp(`${String.fromCharCode(27)}\\[[0-9;=?]*[a-zA-Z]`, 'g');
    const machines = this.machines.map((m) => `── ${m.name} (${this.bootState(m)}) console (tail):\n${this.console(m).replace(esc, '').slice(-consoleChars)}`);
    return `${machines.join('\n')}\n── racksmith (tail):\n${this.rs?.output().slice(-logChars) ?? ''}`;
  }

  /** The machine's system log (its second serial port), every boot's. */
  syslog(m: LabMachine): string {
    return readdirSync(m.dir)
      .filter((f) => /^syslog-\d+\.log$/.test(f))
      .sort()
      .map((f) => readFileSync(join(m.dir, f), 'latin1'))
      .join('');
  }

  /** Where the machine is in the boot gate: off (no QEMU), held (powered, in POST), booting, or up. */
  bootState(m: LabMachine): 'off' | GateEntry['state'] {
    return this.gate.get(m.name)?.state ?? 'off';
  }

  /** Machines whose boot is running now. */
  booting(): number {
    return [...this.gate.values()].filter((g) => g.state === 'booting').length;
  }

  private async tickGate(): Promise<void> {
    for (const m of this.machines) {
      const pid = m.bmc?.vmPid() ?? null;
      const g = this.gate.get(m.name);
      if (pid === null) {
        if (g && isEfi(m.firmware) && [...readConsole(m).matchAll(/RACKSMITH-GUEST (\S+)/g)].at(-1)?.[1] === 'REBOOT') {
          // The one-time PXE boot ended with the installer's reboot: the machine comes back up
          // with its usual boot order (the BMC's chassis program, as the hardware would).
          this.log(`${m.name}: installer rebooted; starting again from its disk`);
          await run('ip', ['netns', 'exec', this.bed.sw, 'sh', join(m.bmc!.dir, 'chassis.sh'), 'set', 'power', '1']).catch((e: unknown) => this.log(`${m.name}: restart failed: ${String(e)}`));
        }
        this.gate.delete(m.name);
        continue;
      }
      if (!g || g.pid !== pid) {
        this.gate.set(m.name, { pid, state: 'held', since: Date.now(), consoleAt: 0 });
        continue;
      }
      if (g.state === 'booting') {
        const text = readConsole(m);
        // Up (or stopped for good): the installed system printed its last marker; a boot that hangs frees its slot after 6 min.
        if ((this.imageMode ? BOOTED_DEBIAN : BOOTED).test(text.slice(g.consoleAt)) || Date.now() - g.since > (this.imageMode ? 1_500_000 : 360_000)) {
          g.state = 'up';
          this.log(`${m.name}: booted in ${((Date.now() - g.since) / 1000).toFixed(0)} s`);
        }
      }
    }
    for (const m of this.machines) {
      const g = this.gate.get(m.name);
      if (!g || g.state !== 'held' || this.holdBoots || this.booting() + (this.opts.network?.bootingElsewhere() ?? 0) >= this.maxBooting) continue;
      // Counted as booting before the command goes out: the site's other racks look at this count meanwhile.
      g.state = 'booting';
      g.since = Date.now();
      g.consoleAt = readConsole(m).length;
      try {
        await qmp(join(m.dir, 'qmp.sock'), 'cont');
        // On a site, the host's count: this rack's and the other networks'.
        this.maxBootingSeen = Math.max(this.maxBootingSeen, this.booting() + (this.opts.network?.bootingElsewhere() ?? 0));
      } catch {
        /* QEMU not listening yet: next tick */
        g.state = 'held';
      }
    }
  }

  async destroy(): Promise<void> {
    if (this.gateTimer) clearInterval(this.gateTimer);
    this.gateTimer = null;
    try {
      await this.rs?.stop();
    } catch {
      /* already gone */
    }
    for (const m of this.machines) await m.bmc?.stop().catch(() => undefined);
    await this.aptCache?.stop().catch(() => undefined);
    await this.bed.destroy();
    rmSync(this.work, { recursive: true, force: true });
  }
}

function readConsole(m: LabMachine): string {
  const f = join(m.dir, 'console.log');
  return existsSync(f) ? readFileSync(f, 'latin1') : '';
}

/** One QMP command (QEMU's machine protocol on a unix socket): capabilities, then the command. */
export function qmp(socket: string, command: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const s = connect(socket);
    let buf = '';
    let sent = 0;
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error(`QMP ${command}: no answer`));
    }, 5000);
    s.on('data', (d: Buffer) => {
      buf += d.toString();
      const lines = buf.split('\n');
      buf = lines.pop() ?? '';
      for (const line of lines) {
        if (line.includes('"QMP"') && sent === 0) {
          s.write('{"execute":"qmp_capabilities"}\n');
          sent = 1;
        } else if (line.includes('"return"') && sent === 1) {
          s.write(`{"execute":"${command}"}\n`);
          sent = 2;
        } else if (line.includes('"return"') && sent === 2) {
          clearTimeout(timer);
          s.end();
          resolve();
        } else if (line.includes('"error"')) {
          clearTimeout(timer);
          s.destroy();
          reject(new Error(`QMP ${command}: ${line}`));
        }
      }
    });
    s.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
  });
}
