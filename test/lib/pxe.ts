import type { ChildProcess } from 'node:child_process';
import { copyFileSync, existsSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { Testbed } from './netns.js';
import { keepEvidence } from './qemu-run.js';
import { startRacksmith, type RacksmithProcess } from './racksmith.js';

/**
 * The PXE test bed of the testbed recipe: a server namespace (racksmith, or the dnsmasq + nginx
 * peer, at 10.77.0.1) joined by a veth to a switch namespace holding a bridge, one tap per VM,
 * and QEMU. Every address exists only inside these namespaces.
 */
export const SERVER_IP = '10.77.0.1';
export const SERVER_CIDR = `${SERVER_IP}/24`;
export const SERVER_IP6 = 'fd77::1';

/**
 * `secureboot`: q35 with SMM, OVMF's Secure Boot build and a copy of the Microsoft-keys variable
 * store (Secure Boot enforced). `efi-http`: OVMF with its PXE options turned off through fw_cfg,
 * so HTTP boot is the first network option. `arm64`: qemu-system-aarch64 `virt` with AAVMF.
 */
export type VmFirmware = 'bios' | 'efi' | 'secureboot' | 'efi-http' | 'arm64';

const OVMF_SECBOOT_CODE = '/usr/share/OVMF/OVMF_CODE_4M.secboot.fd';
const OVMF_MS_VARS = '/usr/share/OVMF/OVMF_VARS_4M.ms.fd';
const AAVMF_CODE = '/usr/share/AAVMF/AAVMF_CODE.fd';
const AAVMF_VARS = '/usr/share/AAVMF/AAVMF_VARS.fd';
/** What each firmware needs on this machine (for `requirements()`). */
export const FIRMWARE_FILES: Readonly<Record<VmFirmware, readonly string[]>> = {
  bios: ['qemu-system-x86_64'],
  efi: ['qemu-system-x86_64', '/usr/share/ovmf/OVMF.fd'],
  secureboot: ['qemu-system-x86_64', OVMF_SECBOOT_CODE, OVMF_MS_VARS],
  'efi-http': ['qemu-system-x86_64', '/usr/share/ovmf/OVMF.fd'],
  arm64: ['qemu-system-aarch64', AAVMF_CODE, AAVMF_VARS],
};

/** A disk of a VM: a (sparse) image file on an NVMe or virtio controller. */
export interface VmDisk {
  readonly file: string;
  readonly bus: 'nvme' | 'virtio';
  readonly serial: string;
  /**
   * In SeaBIOS's boot order, after the NIC (which is 1). UEFI machines get no boot indexes: OVMF
   * then keeps the boot order in its variables — as real UEFI firmware does, and as the deploy
   * agent sets it (the network first, then the installed system).
   */
  readonly bootindex?: number;
}

export interface VmOptions {
  readonly name: string;
  readonly mac: string;
  readonly firmware: VmFirmware;
  readonly serialLog: string;
  readonly memoryMiB?: number;
  readonly disks?: readonly VmDisk[];
  /** Let the guest reboot (an installer that reboots into the installed system); default: QEMU exits. */
  readonly allowReboot?: boolean;
  /**
   * UEFI only: a copy of OVMF's variable store (OVMF_VARS_4M.fd) to keep boot entries in, as a
   * machine's NVRAM does; OVMF then runs from flash (OVMF_CODE_4M.fd) instead of `-bios`, whose
   * variables do not survive a reboot.
   */
  readonly nvram?: string;
}

export class Vm {
  readonly started = Date.now();
  private exitCode: number | null | undefined = undefined;
  readonly exited: Promise<number | null>;
  constructor(
    readonly opts: VmOptions,
    readonly child: ChildProcess,
  ) {
    let stderr = '';
    child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
    this.exited = new Promise((resolve) =>
      child.on('exit', (code) => {
        this.exitCode = code;
        if (code !== 0 && stderr) process.stdout.write(`qemu ${opts.name} exited ${code}: ${stderr.slice(-500)}\n`);
        resolve(code);
      }),
    );
  }

  serial(): string {
    return existsSync(this.opts.serialLog) ? readFileSync(this.opts.serialLog, 'latin1') : '';
  }

  get running(): boolean {
    return this.exitCode === undefined;
  }

  /** Waits until the serial console shows the pattern; returns the seconds since QEMU started. */
  async waitFor(pattern: RegExp, timeoutMs: number): Promise<number> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      if (pattern.test(this.serial())) return (Date.now() - this.started) / 1000;
      if (!this.running) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    if (pattern.test(this.serial())) return (Date.now() - this.started) / 1000;
    throw new Error(`${this.opts.name}: no ${pattern} on the serial console within ${timeoutMs} ms (running: ${this.running}); last output:\n${this.serial().slice(-1500)}`);
  }

  async stop(): Promise<void> {
    if (!this.running) return;
    this.child.kill('SIGKILL');
    await this.exited;
  }
}

export class PxeBed {
  readonly tb: Testbed;
  srv = '';
  sw = '';
  serverIf = '';
  bridge = '';
  private taps = 0;

  constructor(tag: string) {
    this.tb = new Testbed(tag);
  }

  /** Another segment than the default (a second provisioning network of a lab): the server's addresses on it. */
  async setup(serverCidr = SERVER_CIDR, serverIp6 = SERVER_IP6): Promise<this> {
    this.srv = await this.tb.addNamespace('srv');
    this.sw = await this.tb.addNamespace('sw');
    await this.tb.veth(this.srv, 's0', this.sw, 'w0', serverCidr);
    this.serverIf = this.tb.name('s0');
    await this.tb.ip(this.srv, ['-6', 'addr', 'add', `${serverIp6}/64`, 'dev', this.serverIf, 'nodad']);
    this.bridge = await this.tb.bridge(this.sw, 'br', [this.tb.name('w0')]);
    return this;
  }

  /**
   * IPv6 router advertisements with router lifetime 0 on the segment: iPXE otherwise waits about
   * 13 s for one on every DHCP (testbed gotcha). dnsmasq here does RAs only: no DNS (port 0), no
   * DHCPv4, no TFTP.
   */
  raSender(): ChildProcess {
    return this.tb.spawn(this.srv, 'dnsmasq', [...dnsmasqBase(this.serverIf), '--enable-ra', `--dhcp-range=::,constructor:${this.serverIf},ra-only`, `--ra-param=${this.serverIf},4,0`]);
  }

  /**
   * The peer (and the stand-in while racksmith's own DHCP/TFTP are not there): dnsmasq doing
   * DHCP with reservations, TFTP of Debian's iPXE binaries and RAs, handing iPXE clients `bootUrl`.
   */
  dnsmasqPxe(bootUrl: string, reservations: readonly [string, string][], tftpRoot = '/usr/lib/ipxe'): ChildProcess {
    return this.tb.spawn(this.srv, 'dnsmasq', [
      ...dnsmasqBase(this.serverIf),
      '--dhcp-range=10.77.0.100,10.77.0.199,255.255.255.0,1h',
      ...reservations.map(([mac, ip]) => `--dhcp-host=${mac},${ip}`),
      '--dhcp-authoritative',
      '--enable-tftp',
      `--tftp-root=${tftpRoot}`,
      '--dhcp-match=set:ipxe,175',
      '--dhcp-match=set:efi64,option:client-arch,7',
      '--dhcp-match=set:efi64,option:client-arch,9',
      `--dhcp-boot=tag:ipxe,${bootUrl}`,
      '--dhcp-boot=tag:!ipxe,tag:efi64,ipxe.efi',
      '--dhcp-boot=tag:!ipxe,tag:!efi64,undionly.kpxe',
      // iPXE otherwise waits ~3 s for ProxyDHCP offers (encapsulated option 175.176 no-pxedhcp).
      '--dhcp-option=encap:175,176,1b',
      '--enable-ra',
      `--dhcp-range=::,constructor:${this.serverIf},ra-only`,
      `--ra-param=${this.serverIf},4,0`,
    ]);
  }

  /** A TFTP-only stand-in (no DNS, no DHCP) with router adverts, beside a DHCP server that is racksmith's. */
  dnsmasqTftp(tftpRoot = '/usr/lib/ipxe'): ChildProcess {
    return this.tb.spawn(this.srv, 'dnsmasq', [
      ...dnsmasqBase(this.serverIf),
      '--enable-tftp',
      `--tftp-root=${tftpRoot}`,
      '--enable-ra',
      `--dhcp-range=::,constructor:${this.serverIf},ra-only`,
      `--ra-param=${this.serverIf},4,0`,
    ]);
  }

  /**
   * racksmith alone serving the segment in the server namespace: authoritative DHCP (pool
   * .100–.199, reservations from the machines' ip), TFTP on 69 and HTTP, with the installer
   * artifacts of `artifacts` and the guest's serial console on its kernel command line.
   */
  racksmith(work: string, artifacts: string, httpPort: number, env: Record<string, string> = {}): Promise<RacksmithProcess> {
    return startRacksmith({
      netns: this.srv,
      host: SERVER_IP,
      httpPort,
      dataDir: join(work, 'data'),
      env: {
        RACKSMITH_ARTIFACTS_DIR: artifacts,
        RACKSMITH_INSTALLER_KERNEL_ARGS: 'console=ttyS0,115200 panic=-1',
        RACKSMITH_BOOT_WAIT_SECONDS: '2',
        RACKSMITH_DHCP_MODE: 'authoritative',
        RACKSMITH_DHCP_INTERFACE: this.serverIf,
        RACKSMITH_DHCP_RANGE: '10.77.0.100-10.77.0.199',
        RACKSMITH_DHCP_NETMASK: '255.255.255.0',
        RACKSMITH_TFTP_PORT: '69',
        ...env,
      },
      timeoutMs: 30_000,
    });
  }

  async vm(opts: VmOptions): Promise<Vm> {
    const tap = this.tb.name(`t${++this.taps}`);
    await this.tb.ip(this.sw, ['tuntap', 'add', 'dev', tap, 'mode', 'tap']);
    await this.tb.ip(this.sw, ['link', 'set', tap, 'master', this.bridge]);
    await this.tb.ip(this.sw, ['link', 'set', tap, 'up']);
    const fw = opts.firmware;
    const disks = opts.disks ?? [];
    // With disks, SeaBIOS boots the NIC first, then the disks that name a place after it. OVMF
    // follows its own variables (QEMU's boot indexes would drop the NVMe from its boot order).
    const indexed = disks.length > 0 && fw === 'bios';
    // The NIC's own option ROM (QEMU's iPXE) is off on UEFI: the firmware's PXE/HTTP boot is tested.
    const nic = `virtio-net-pci,netdev=n0,mac=${opts.mac}${fw !== 'bios' ? ',romfile=' : ''}${indexed ? ',bootindex=1' : ''}`;
    const diskArgs = disks.flatMap((d, i) => [
      '-drive', `file=${d.file},format=raw,if=none,id=disk${i},cache=unsafe`,
      '-device', `${d.bus === 'nvme' ? 'nvme' : 'virtio-blk-pci'},drive=disk${i},serial=${d.serial}${indexed && d.bootindex ? `,bootindex=${d.bootindex}` : ''}`,
    ]);
    const common = [
      '-m', String(opts.memoryMiB ?? 256), '-smp', '1',
      '-display', 'none', '-monitor', 'none', '-serial', `file:${opts.serialLog}`,
      '-netdev', `tap,id=n0,ifname=${tap},script=no,downscript=no`,
      '-device', nic,
      ...diskArgs,
      ...(opts.allowReboot ? [] : ['-no-reboot']),
    ];
    const pflash = (code: string, vars: string): string[] => {
      // Each VM writes its own copy of the variable store (boot entries, Secure Boot state).
      const copy = `${opts.serialLog}.vars.fd`;
      copyFileSync(vars, copy);
      return ['-drive', `if=pflash,format=raw,unit=0,readonly=on,file=${code}`, '-drive', `if=pflash,format=raw,unit=1,file=${copy}`];
    };
    if (fw === 'arm64') {
      const args = ['-machine', 'virt', '-cpu', 'cortex-a57', '-accel', 'tcg', ...pflash(AAVMF_CODE, AAVMF_VARS), ...common];
      return new Vm(opts, this.tb.spawn(this.sw, 'qemu-system-aarch64', args));
    }
    // A UEFI machine with an NVRAM file keeps its boot entries across QEMU runs (the agent's entry for the disk).
    const efiFirmware = opts.nvram
      ? ['-drive', 'if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd', '-drive', `if=pflash,format=raw,unit=1,file=${opts.nvram}`]
      : ['-bios', '/usr/share/ovmf/OVMF.fd'];
    const machine =
      fw === 'secureboot'
        ? ['-machine', 'q35,smm=on', '-global', 'driver=cfi.pflash01,property=secure,value=on', ...pflash(OVMF_SECBOOT_CODE, OVMF_MS_VARS)]
        : ['-machine', 'pc', ...(fw === 'efi' ? efiFirmware : []), ...(fw === 'efi-http' ? ['-bios', '/usr/share/ovmf/OVMF.fd', '-fw_cfg', 'name=opt/org.tianocore/IPv4PXESupport,string=n', '-fw_cfg', 'name=opt/org.tianocore/IPv6PXESupport,string=n'] : [])];
    const args = [...machine, '-accel', 'tcg', ...common, ...(disks.length ? [] : ['-boot', 'order=n'])];
    return new Vm(opts, this.tb.spawn(this.sw, 'qemu-system-x86_64', args));
  }

  /** curl from inside the server namespace (the test process cannot reach 10.77.0.1). */
  async curl(args: readonly string[]): Promise<string> {
    return (await this.tb.exec(this.srv, 'curl', ['-sS', '-m', '30', ...args])).stdout;
  }

  async api(base: string, token: string, method: string, path: string, body?: unknown): Promise<{ status: number; body: any }> {
    const out = await this.curl(['-X', method, '-H', `authorization: Bearer ${token}`, ...(body === undefined ? [] : ['-H', 'content-type: application/json', '--data-binary', JSON.stringify(body)]), '-w', '\n%{http_code}', `${base}${path}`]);
    const nl = out.lastIndexOf('\n');
    const text = out.slice(0, nl);
    let parsed: unknown = undefined;
    try {
      parsed = text ? JSON.parse(text) : undefined;
    } catch {
      parsed = text;
    }
    return { status: Number(out.slice(nl + 1)), body: parsed };
  }

  async destroy(): Promise<void> {
    await this.tb.destroy();
  }
}

function dnsmasqBase(iface: string): string[] {
  return ['--keep-in-foreground', '--conf-file=/dev/null', '--port=0', '--no-resolv', '--no-hosts', '--pid-file=', '--leasefile-ro', '--log-facility=-', '--log-dhcp', `--interface=${iface}`, '--bind-interfaces', '--user=root'];
}

/**
 * The end of a QEMU boot proof: the machines stopped; after a failure, their serial consoles,
 * racksmith's log and the suite's own `evidenceFiles` kept under test-artifacts/<evidence>;
 * then racksmith, the suite's other `services` (an apt cache), the bed and the work folder gone —
 * the bed and the folder even when stopping something before them throws.
 */
export async function endBootProof(p: {
  vms: readonly (Vm | null | undefined)[];
  failed: boolean;
  work: string;
  rs: RacksmithProcess | null | undefined;
  bed: PxeBed | null | undefined;
  evidence: string;
  /** More evidence files (name → text), read before anything is stopped. */
  evidenceFiles?: () => Record<string, string>;
  services?: readonly ({ stop(): Promise<void> } | null | undefined)[];
}): Promise<void> {
  try {
    const vms = p.vms.filter((v): v is Vm => v !== null && v !== undefined);
    for (const vm of vms) await vm.stop();
    if (p.failed && p.work) keepEvidence(p.evidence, vms, p.rs ?? null, p.evidenceFiles?.() ?? {});
    await p.rs?.stop();
    p.rs?.cleanup();
    for (const s of p.services ?? []) await s?.stop();
  } finally {
    await p.bed?.destroy();
    if (p.work) rmSync(p.work, { recursive: true, force: true });
  }
}
