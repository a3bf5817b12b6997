import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/**
 * A private libvirtd for one test: Debian's libvirt-daemon-system started by hand (no systemd
 * here), inside a network namespace (so its QEMU domains join that namespace's bridge) and a
 * mount namespace of its own, where /run/libvirt, /var/lib/libvirt, /var/log/libvirt,
 * /var/cache/libvirt and /etc/libvirt/qemu.conf are folders of the test. Its socket is in the
 * test's folder, reachable as `qemu:///system?socket=…` from outside. QEMU runs as root without
 * a security driver (TCG; no KVM here).
 */
export interface Libvirtd {
  readonly uri: string;
  readonly dir: string;
  virsh(args: readonly string[]): Promise<string>;
  log(): string;
  stop(): Promise<void>;
}

export async function startLibvirtd(netns: string): Promise<Libvirtd> {
  const dir = mkdtempSync(join(tmpdir(), 'rs-libvirt-'));
  for (const d of ['run', 'lib/qemu', 'lib/images', 'log/qemu', 'cache', 'sock', 'etc']) mkdirSync(join(dir, d), { recursive: true });
  for (const d of ['/run/libvirt', '/var/lib/libvirt', '/var/log/libvirt', '/var/cache/libvirt', '/etc/libvirt']) mkdirSync(d, { recursive: true });
  writeFileSync(join(dir, 'libvirtd.conf'), `unix_sock_dir = "${dir}/sock"\nunix_sock_rw_perms = "0700"\nauth_unix_rw = "none"\nlog_outputs = "3:file:${dir}/libvirtd.log"\n`);
  writeFileSync(join(dir, 'etc', 'qemu.conf'), 'user = "root"\ngroup = "root"\ndynamic_ownership = 0\nsecurity_driver = "none"\ncgroup_controllers = [ ]\nremember_owner = 0\n');
  // mount-namespace set-up, then libvirtd in the foreground (its PID is the shell's after exec).
  const script = [
    'set -e',
    `mount --bind ${dir}/run /run/libvirt`,
    `mount --bind ${dir}/lib /var/lib/libvirt`,
    `mount --bind ${dir}/log /var/log/libvirt`,
    `mount --bind ${dir}/cache /var/cache/libvirt`,
    // All of /etc/libvirt: the domains' definitions are kept in it (qemu/<name>.xml).
    `mount --bind ${dir}/etc /etc/libvirt`,
    // Own PID files: the default ones (/run/virtlogd.pid, /run/libvirtd.pid) are outside the bind
    // mounts, so a second bed's daemons found them locked and exited.
    `virtlogd -d -p ${dir}/run/virtlogd.pid`,
    `exec libvirtd -f ${dir}/libvirtd.conf -p ${dir}/run/libvirtd.pid`,
  ].join('\n');
  let output = '';
  const child: ChildProcess = spawn('ip', ['netns', 'exec', netns, 'unshare', '-m', '--propagation', 'private', 'sh', '-c', script], { stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout?.on('data', (d: Buffer) => (output = (output + d.toString()).slice(-10_000)));
  child.stderr?.on('data', (d: Buffer) => (output = (output + d.toString()).slice(-10_000)));
  const uri = `qemu:///system?socket=${dir}/sock/libvirt-sock`;
  const virsh = async (args: readonly string[]): Promise<string> => (await run('virsh', ['-c', uri, ...args], { timeout: 60_000 })).stdout;
  const d: Libvirtd = {
    uri,
    dir,
    virsh,
    log: () => output,
    async stop() {
      // Domains first (QEMU outlives libvirtd), then the daemons of this mount namespace.
      try {
        for (const name of (await virsh(['list', '--name'])).split('\n').filter(Boolean)) await virsh(['destroy', name]).catch(() => undefined);
      } catch {
        /* libvirtd already gone */
      }
      const pid = child.pid;
      if (pid !== undefined) {
        // virtlogd was started from this namespace's shell: find it among this daemon's siblings by its mount namespace.
        const ns = await run('readlink', [`/proc/${pid}/ns/mnt`]).then((r) => r.stdout.trim(), () => '');
        if (child.exitCode === null) child.kill('SIGTERM');
        await Promise.race([new Promise((r) => child.once('exit', r)), new Promise((r) => setTimeout(r, 5000))]);
        if (child.exitCode === null) child.kill('SIGKILL');
        if (ns) {
          const { stdout } = await run('sh', ['-c', `for p in /proc/[0-9]*; do [ "$(readlink $p/ns/mnt 2>/dev/null)" = "${ns}" ] && echo \${p#/proc/}; done; true`]);
          for (const p of stdout.split('\n').filter(Boolean)) {
            try {
              process.kill(Number(p), 'SIGKILL');
            } catch {
              /* gone */
            }
          }
        }
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
  for (let i = 0; i < 100; i++) {
    if (child.exitCode !== null) break;
    try {
      await virsh(['version']);
      return d;
    } catch {
      await new Promise((r) => setTimeout(r, 200));
    }
  }
  const why = output;
  await d.stop();
  throw new Error(`libvirtd did not start: ${why.slice(-2000)}`);
}

/**
 * A QEMU/TCG domain on a bridge, booting from `boot` first, its COM1 to a file, with an empty
 * (unbootable) disk so that "boot from disk" really does not reach the network.
 */
export function domainXml(o: { name: string; uuid: string; mac: string; bridge: string; serialLog: string; disk: string; boot: 'network' | 'hd'; memoryMiB?: number }): string {
  return `<domain type='qemu'>
  <name>${o.name}</name>
  <uuid>${o.uuid}</uuid>
  <memory unit='MiB'>${o.memoryMiB ?? 256}</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type><boot dev='${o.boot}'/></os>
  <features><acpi/><apic/></features>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <disk type='file' device='disk'><driver name='qemu' type='raw'/><source file='${o.disk}'/><target dev='vda' bus='virtio'/></disk>
    <interface type='bridge'><source bridge='${o.bridge}'/><mac address='${o.mac}'/><model type='virtio'/></interface>
    <serial type='file'><source path='${o.serialLog}'/><target port='0'/></serial>
  </devices>
</domain>
`;
}

/**
 * Which device a domain boots first, as libvirt records it: the legacy `<os><boot dev=…/>`, or
 * the per-device `<boot order='1'/>` sushy-emulator writes on an override (`network` when it is
 * on the NIC). Null when nothing is bootable.
 */
export function firstBootDevice(xml: string): string | null {
  const os = /<os>[\s\S]*?<\/os>/.exec(xml)?.[0] ?? '';
  const dev = /<boot dev='(\w+)'/.exec(os)?.[1];
  if (dev) return dev;
  for (const m of xml.matchAll(/<(interface|disk)\b[\s\S]*?<\/\1>/g)) {
    if (/<boot order='1'\/>/.test(m[0])) return m[1] === 'interface' ? 'network' : 'hd';
  }
  return null;
}
