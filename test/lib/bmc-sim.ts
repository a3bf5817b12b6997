import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { createSocket, type Socket } from 'node:dgram';
import { createServer, type Server, type Socket as TcpSocket } from 'node:net';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/**
 * A simulated BMC: OpenIPMI's `ipmi_sim` speaking IPMI 2.0 lanplus on 127.0.0.1, with a
 * `chassis_control` program (a shell script written here) that ipmi_sim runs for every power and
 * boot-device request. The script logs each call with a start and end timestamp (so tests can
 * count the commands in flight across BMCs) and keeps the chassis state in files — or, in VM
 * mode, starts and stops a real QEMU VM, so a test can assert on the VM's process.
 */
export interface BmcSimOptions {
  readonly name: string;
  readonly username?: string;
  readonly password: string;
  /** Milliseconds each `set` call takes (a slow BMC; makes overlap measurable). */
  readonly setDelayMs?: number;
  /** The chassis program fails every `set boot` (the BMC rejects the boot device). */
  readonly rejectBoot?: boolean;
  /** Start a QEMU VM on power on (no disk; `-boot order=n` when the boot device is pxe). */
  readonly vm?: boolean;
  /** VM mode: QEMU arguments for the NIC (default `-nic none`) and others, e.g. a tap. */
  readonly vmArgs?: readonly string[];
  readonly vmMemoryMiB?: number;
  /**
   * VM mode: the whole shell command that starts the VM instead of the default QEMU line (the
   * virtual rack's machines with their disks). It must detach and write the VM's PID to
   * \$D/qemu.pid; \$order holds the boot device asked for (n after \`bootdev pxe\`, else c).
   */
  readonly vmCommand?: string;
  /** Run ipmi_sim (and so the VM) inside this network namespace, listening on `address`. */
  readonly netns?: string;
  /** Listen address (default 127.0.0.1) and port (default: a free one; 623 inside a namespace). */
  readonly address?: string;
  readonly port?: number;
  /** FRU 0 with a product area (manufacturer, product name, serial), as a real BMC has. */
  readonly fru?: { readonly manufacturer: string; readonly product: string; readonly serial: string };
  /** Serial over LAN to this device: "tcp:ADDR:PORT" (a QEMU serial port listening there). */
  readonly sol?: string;
}

export interface ChassisCall {
  readonly start: number;
  readonly end: number;
  readonly args: string;
}

export interface BmcSim {
  readonly name: string;
  readonly address: string;
  readonly port: number;
  readonly dir: string;
  /** Chassis program calls, finished ones, in order. */
  calls(): ChassisCall[];
  /** `set` calls only (what changes the chassis). */
  sets(): ChassisCall[];
  /** The chassis state as the simulator keeps it: power "0"/"1", boot device. */
  power(): string;
  boot(): string;
  /** VM mode: the QEMU process id, or null when none runs. */
  vmPid(): number | null;
  /** VM mode: the running VM's command line. */
  vmCmdline(): string | null;
  /** The last chassis identify request: "<interval> <force>" ("0 0" off, "0 1" on until off), or null. */
  identify(): string | null;
  stop(): Promise<void>;
}

export async function freeUdpPort(): Promise<number> {
  const s = createSocket('udp4');
  await new Promise<void>((resolve, reject) => {
    s.once('error', reject);
    s.bind(0, '127.0.0.1', () => resolve());
  });
  const port = s.address().port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

function chassisScript(dir: string, o: BmcSimOptions): string {
  const delay = ((o.setDelayMs ?? 0) / 1000).toFixed(3);
  return `#!/bin/sh
# chassis_control for ipmi_sim: "$0 get power boot" or "$0 set power 1 boot pxe"
D=${dir}
now() { date +%s.%N; }
T0=$(now)
ARGS="$*"
op=$1; shift
vm_alive() { [ -f $D/qemu.pid ] && kill -0 "$(cat $D/qemu.pid)" 2>/dev/null; }
vm_start() {
  vm_alive && return 0
  order=c; [ "$(cat $D/boot 2>/dev/null)" = pxe ] && order=n
  ${o.vmCommand ?? `qemu-system-x86_64 -machine pc -accel tcg -m ${o.vmMemoryMiB ?? 64} -smp 1 -display none -monitor none ${(o.vmArgs ?? ['-nic', 'none']).join(' ')} \\
    -serial file:$D/serial.log -boot order=$order -name rs-bmcsim-${o.name} -pidfile $D/qemu.pid -daemonize \\
    </dev/null >/dev/null 2>>$D/qemu.err`}
}
vm_stop() {
  if vm_alive; then
    p=$(cat $D/qemu.pid); kill "$p" 2>/dev/null
    i=0; while kill -0 "$p" 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done
    kill -9 "$p" 2>/dev/null
  fi
  rm -f $D/qemu.pid
}
rc=0
if [ "$op" = get ]; then
  for k in "$@"; do
    case $k in
      power) if [ ${o.vm ? 1 : 0} = 1 ]; then if vm_alive; then echo power:1; else echo power:0; fi
             else echo "power:$(cat $D/power 2>/dev/null || echo 0)"; fi ;;
      boot) echo "boot:$(cat $D/boot 2>/dev/null || echo default)" ;;
      *) echo "$k:0" ;;
    esac
  done
else
  sleep ${delay}
  # "set identify" then "<interval> <force>" as one argument: not a key/value pair.
  if [ "$1" = identify ]; then shift; echo "$*" > $D/identify; shift $#; fi
  while [ $# -gt 1 ]; do
    k=$1; v=$2; shift 2
    case $k in
      power) echo "$v" > $D/power
             if [ ${o.vm ? 1 : 0} = 1 ]; then if [ "$v" = 1 ]; then vm_start; else vm_stop; fi; fi ;;
      reset) if [ ${o.vm ? 1 : 0} = 1 ] && vm_alive; then vm_stop; vm_start; fi ;;
      boot) if [ ${o.rejectBoot ? 1 : 0} = 1 ]; then rc=1; else echo "$v" > $D/boot; fi ;;
    esac
  done
fi
echo "$T0 $(now) $ARGS" >> $D/chassis.log
exit $rc
`;
}

export async function startBmcSim(o: BmcSimOptions): Promise<BmcSim> {
  const dir = mkdtempSync(join(tmpdir(), `rs-bmcsim-${o.name}-`));
  const port = o.port ?? (o.netns ? 623 : await freeUdpPort());
  const address = o.address ?? '127.0.0.1';
  const user = o.username ?? 'admin';
  const inNs = (cmd: string, args: string[]): [string, string[]] => (o.netns ? ['ip', ['netns', 'exec', o.netns, cmd, ...args]] : [cmd, args]);
  mkdirSync(join(dir, 'state'));
  const prog = join(dir, 'chassis.sh');
  writeFileSync(prog, chassisScript(dir, o));
  chmodSync(prog, 0o755);
  writeFileSync(
    join(dir, 'lan.conf'),
    `name "${o.name}"
set_working_mc 0x20
  startlan 1
    addr ${address} ${port}
    priv_limit admin
    allowed_auths_callback none md2 md5 straight
    allowed_auths_user none md2 md5 straight
    allowed_auths_operator none md2 md5 straight
    allowed_auths_admin none md2 md5 straight
    guid a123456789abcdefa123456789abcdef
  endlan
  chassis_control "${prog}"
${o.sol ? `  sol "${o.sol}" 115200
` : ''}  user 2 true "${user}" "${o.password}" admin 10 none md2 md5 straight
`,
  );
  const fru = o.fru ? fruImage(o.fru) : null;
  writeFileSync(
    join(dir, 'bmc.emu'),
    'mc_setbmc 0x20\nmc_add 0x20 0 no-device-sdrs 0x23 9 8 0x9f 0x1291 0xf02 persist_sdr\n' +
      (fru ? `mc_add_fru_data 0x20 0 ${fru.length} data ${[...fru].map((b) => `0x${b.toString(16).padStart(2, '0')}`).join(' ')}\n` : '') +
      'mc_enable 0x20\n',
  );
  const child: ChildProcess = spawn(...inNs('ipmi_sim', ['-c', join(dir, 'lan.conf'), '-f', join(dir, 'bmc.emu'), '-n', '-s', join(dir, 'state')]), { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));

  // Up when it answers a real lanplus session.
  let up = false;
  for (let i = 0; i < 50 && child.exitCode === null; i++) {
    try {
      const { stdout } = await run(...inNs('ipmitool', ['-I', 'lanplus', '-C', '3', '-N', '1', '-R', '1', '-H', address, '-p', String(port), '-U', user, '-P', o.password, 'mc', 'info']), { timeout: 5000 });
      if (/Device ID/.test(stdout)) {
        up = true;
        break;
      }
    } catch {
      /* not yet */
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  const read = (f: string, dflt: string): string => (existsSync(join(dir, f)) ? readFileSync(join(dir, f), 'utf8').trim() : dflt);
  const vmPid = (): number | null => {
    const p = Number(read('qemu.pid', '0'));
    if (!p) return null;
    try {
      process.kill(p, 0);
      return p;
    } catch {
      return null;
    }
  };
  const sim: BmcSim = {
    name: o.name,
    address,
    port,
    dir,
    calls() {
      return read('chassis.log', '')
        .split('\n')
        .filter(Boolean)
        .map((l) => {
          const [start, end, ...args] = l.split(' ');
          return { start: Number(start), end: Number(end), args: args.join(' ') };
        });
    },
    sets() {
      return sim.calls().filter((c) => c.args.startsWith('set '));
    },
    power: () => read('power', '0'),
    identify: () => (existsSync(join(dir, 'identify')) ? read('identify', '') : null),
    boot: () => read('boot', 'default'),
    vmPid,
    vmCmdline() {
      const p = vmPid();
      if (p === null) return null;
      try {
        return readFileSync(`/proc/${p}/cmdline`, 'utf8').split('\0').join(' ').trim();
      } catch {
        return null;
      }
    },
    async stop() {
      const p = vmPid();
      if (p !== null) {
        try {
          process.kill(p, 'SIGKILL');
        } catch {
          /* gone */
        }
      }
      if (child.exitCode === null) {
        child.kill('SIGKILL');
        await new Promise((r) => child.once('exit', r));
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
  if (!up) {
    await sim.stop();
    throw new Error(`ipmi_sim ${o.name} did not come up on ${address}:${port}: ${stderr.slice(-1000)}`);
  }
  return sim;
}

/**
 * An IPMI FRU image (Platform Management FRU Information Storage Definition v1.0): the common
 * header, then a product info area with manufacturer, product name and serial as 8-bit ASCII
 * type/length fields, each area padded to 8 bytes with a zero checksum.
 */
export function fruImage(p: { manufacturer: string; product: string; serial: string }): Buffer {
  const field = (s: string): number[] => [0xc0 | s.length, ...Buffer.from(s, 'latin1')];
  const sum = (b: number[]): number => (0x100 - (b.reduce((a, x) => a + x, 0) & 0xff)) & 0xff;
  // version 1, length (filled in), language English; manufacturer, name, part, version, serial, asset tag, FRU file id; end.
  const area = [0x01, 0, 0x00, ...field(p.manufacturer), ...field(p.product), ...field(''), ...field(''), ...field(p.serial), ...field(''), ...field(''), 0xc1];
  while ((area.length + 1) % 8 !== 0) area.push(0);
  area[1] = (area.length + 1) / 8;
  area.push(sum(area));
  const header = [0x01, 0, 0, 0, 1, 0, 0];
  header.push(sum(header));
  return Buffer.from([...header, ...area]);
}

/** A BMC that never answers: a UDP socket that reads every packet and drops it. */
export async function startDeadBmc(): Promise<{ port: number; packets(): number; stop(): Promise<void> }> {
  const s: Socket = createSocket('udp4');
  let n = 0;
  s.on('message', () => n++);
  await new Promise<void>((resolve, reject) => {
    s.once('error', reject);
    s.bind(0, '127.0.0.1', () => resolve());
  });
  return {
    port: s.address().port,
    packets: () => n,
    stop: () => new Promise<void>((r) => s.close(() => r())),
  };
}

/** Largest number of intervals open at once. */
/**
 * One BMC's chassis calls with the repeats of a late answer folded in. When the BMC answers late
 * (a loaded host), ipmitool sends the request once more (`-R 1`) and racksmith's driver may try a
 * timed-out command again; ipmi_sim runs the chassis program for each. A call with the same
 * arguments as the one before it, started within `windowMs` of it, is such a repeat of one
 * command: one call, from the first start to the last end.
 */
export function foldRetransmissions(calls: readonly ChassisCall[], windowMs = 15_000): ChassisCall[] {
  const out: ChassisCall[] = [];
  for (const c of calls) {
    const prev = out[out.length - 1];
    if (prev && prev.args === c.args && (c.start - prev.start) * 1000 < windowMs) out[out.length - 1] = { ...prev, end: Math.max(prev.end, c.end) };
    else out.push(c);
  }
  return out;
}

export function maxOverlap(intervals: readonly { start: number; end: number }[]): number {
  const points = intervals.flatMap((i) => [
    { t: i.start, d: 1 },
    { t: i.end, d: -1 },
  ]);
  // An end at the same instant as a start closes first.
  points.sort((a, b) => a.t - b.t || a.d - b.d);
  let open = 0;
  let max = 0;
  for (const p of points) {
    open += p.d;
    max = Math.max(max, open);
  }
  return max;
}

/**
 * Polls `ps -eo args` (every process's command line, as any user sees it) until stopped, and
 * reports the lines that contained the needle, and how many ipmitool command lines it saw.
 */
export function watchPs(needle: string): { stop(): Promise<{ samples: number; leaks: string[]; ipmitoolLines: string[] }> } {
  let running = true;
  let samples = 0;
  const leaks: string[] = [];
  const ipmitoolLines: string[] = [];
  const loop = (async () => {
    while (running) {
      try {
        const { stdout } = await run('ps', ['-eo', 'args'], { maxBuffer: 16 * 1024 * 1024 });
        samples++;
        for (const line of stdout.split('\n')) {
          if (line.includes(needle)) leaks.push(line);
          if (/^(\S*\/)?ipmitool /.test(line) && ipmitoolLines.length < 200) ipmitoolLines.push(line);
        }
      } catch {
        /* ps failed once: try again */
      }
      await new Promise((r) => setTimeout(r, 15));
    }
  })();
  return {
    async stop() {
      running = false;
      await loop;
      return { samples, leaks, ipmitoolLines };
    },
  };
}

/**
 * The machine's UART as a real BMC sees it: always there, whether the host is powered or not.
 * ipmi_sim's SOL connects to one side (at start), QEMU's COM1 to the other (when it runs); bytes
 * flow while both are connected. ipmi_sim answers a SOL activation only once its device has
 * sent something, so while no host is connected the line idles with a CR/LF a second (blank
 * lines, which the capture drops).
 */
export async function uartRelay(): Promise<{ bmcPort: number; hostPort: number; servers: Server[] }> {
  let bmc: TcpSocket | null = null;
  let host: TcpSocket | null = null;
  const side = (set: (s: TcpSocket | null) => void, other: () => TcpSocket | null) =>
    createServer((sock) => {
      set(sock);
      sock.on('data', (d) => other()?.write(d));
      sock.on('error', () => undefined);
      sock.on('close', () => set(null));
    });
  const a = side((s) => (bmc = s), () => host);
  const idle = setInterval(() => {
    if (!host) bmc?.write('\r\n');
  }, 1000);
  idle.unref();
  const b = side((s) => (host = s), () => bmc);
  const listen = (srv: Server): Promise<number> => new Promise((r) => srv.listen(0, '127.0.0.1', () => r((srv.address() as { port: number }).port)));
  return { bmcPort: await listen(a), hostPort: await listen(b), servers: [a, b] };
}

/**
 * A person's own `ipmitool sol activate` against a simulator: what it prints once the BMC has
 * answered, then `~.` to leave. The password comes from the environment (-E), so a ps watcher
 * sees only racksmith's command lines.
 */
export async function personSolActivate(port: number, password: string): Promise<string> {
  const child = spawn('ipmitool', ['-I', 'lanplus', '-C', '3', '-H', '127.0.0.1', '-p', String(port), '-U', 'admin', '-E', 'sol', 'activate'], {
    env: { ...process.env, IPMI_PASSWORD: password },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString('latin1')));
  child.stderr.on('data', (d: Buffer) => (out += d.toString('latin1')));
  const closed = new Promise((r) => child.once('close', r));
  let ended = false;
  void closed.then(() => (ended = true));
  // Until the BMC has answered (a session, or a refusal after which ipmitool exits), not a fixed
  // wait: an ipmitool starved of CPU (beside other suites, or QEMU under TCG) may not have it yet.
  const deadline = Date.now() + 30_000;
  while (!ended && !/SOL Session operational|SOL payload already active/.test(out) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  // A refused ipmitool may be gone by now: its stdin then fails, which says nothing here.
  child.stdin.on('error', () => undefined);
  if (child.exitCode === null) child.stdin.write('\r~.\r');
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([closed, new Promise((r) => (timer = setTimeout(r, 10_000)))]);
  clearTimeout(timer);
  if (child.exitCode === null) child.kill('SIGKILL');
  return out;
}
