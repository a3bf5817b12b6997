import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, lstatSync, mkdirSync, readFileSync, readdirSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/**
 * One test machine: a private, writable copy of the cached root filesystem (an overlay on top of
 * it, or a plain copy where overlayfs is not available) in which commands run chrooted, inside
 * the test's network namespace and in fresh mount, UTS, IPC and PID namespaces. So: apt and
 * phone-home reach only what the test serves; `hostname` renames nothing but the namespace;
 * /proc, /sys and /dev are mounted for each command and vanish with its namespaces even when the
 * test fails; and whatever a command leaves running is killed when it returns.
 *
 * The root shares the host's kernel, so the commands that would change the kernel itself
 * (swapoff/swapon, sysctl writes, modprobe) and systemctl (no systemd runs in the root) are
 * replaced, with dpkg-divert, by recording shims — placed by the test, never by racksmith.
 */

export const CALLS_LOG = '/var/log/racksmith-test/calls.log';

const PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/**
 * Mounts the API file systems inside the (already unshared) mount namespace, then runs the command
 * chrooted. /dev is a private tmpfs with only the character devices a system needs (never the
 * host's disks or its /dev/log); /sys and /proc/sys are read-only.
 */
const ENTER = `
set -e
root=$1; shift
mount -t proc proc "$root/proc"
mount --bind "$root/proc/sys" "$root/proc/sys"
mount -o remount,bind,ro "$root/proc/sys"
mount -t sysfs -o ro sysfs "$root/sys"
mount -t tmpfs -o mode=0755,nosuid tmpfs "$root/dev"
for d in null zero full random urandom tty; do
  : > "$root/dev/$d"
  mount --bind "/dev/$d" "$root/dev/$d"
done
mkdir -p "$root/dev/pts" "$root/dev/shm"
mount -t devpts -o newinstance,ptmxmode=0666,mode=0620 devpts "$root/dev/pts"
ln -s pts/ptmx "$root/dev/ptmx"
mount -t tmpfs -o nosuid,nodev tmpfs "$root/dev/shm"
ln -s /proc/self/fd "$root/dev/fd"
ln -s /proc/self/fd/0 "$root/dev/stdin"
ln -s /proc/self/fd/1 "$root/dev/stdout"
ln -s /proc/self/fd/2 "$root/dev/stderr"
# The kernel keeps a host name across a boot (systemd sets it from /etc/hostname); each command
# here gets a fresh UTS namespace, so it starts from the machine's /etc/hostname.
if [ -s "$root/etc/hostname" ]; then hostname "$(head -n1 "$root/etc/hostname")"; fi
set +e
# Not exec: PID 1 of the namespace stays outside the root, so systemctl sees "in a chroot".
chroot "$root" /usr/bin/env -i PATH=${PATH} LANG=en_US.UTF-8 HOME=/root TERM=dumb "$@"
`;

const SHIM_HEADER = `#!/bin/sh
# Placed by racksmith's cloud-init test with dpkg-divert, not by racksmith. The test runs in a
# chroot that shares the host's kernel and has no systemd running: this call is recorded in
# ${CALLS_LOG} instead of changing the host.
mkdir -p ${dirname(CALLS_LOG)}
echo "$(basename "$0") $*" >> ${CALLS_LOG}
`;

/** Recorded only: each of these would change the host's kernel state. */
const RECORD_ONLY = `${SHIM_HEADER}exit 0
`;

/** sysctl: reads run for real (harmless); writes (`-w`, `-p`, `--system`, `k=v`) are recorded. */
const SYSCTL_SHIM = `${SHIM_HEADER}for a in "$@"; do
  case "$a" in
    -w|--write|-p|--load|--load=*|-p*|--system|*=*) exit 0;;
  esac
done
exec /usr/sbin/sysctl.distrib "$@"
`;

/**
 * systemctl: what a real systemd would refuse is refused (a unit that has no unit file), the
 * rest is recorded; offline verbs (enable, disable, mask, is-enabled…) run for real, so enabled
 * units show up as the symlinks a boot would follow.
 */
const SYSTEMCTL_SHIM = `${SHIM_HEADER}real=/usr/bin/systemctl.distrib
verb=
units=
for a in "$@"; do
  case "$a" in
    -*) ;;
    *) if [ -z "$verb" ]; then verb=$a; else units="$units $a"; fi;;
  esac
done
unit_exists() {
  u=$1
  case "$u" in *.*) ;; *) u=$u.service;; esac
  for d in /etc/systemd/system /run/systemd/system /lib/systemd/system /usr/lib/systemd/system; do
    [ -e "$d/$u" ] && return 0
  done
  # systemd-sysv-generator turns an init script into a unit of the same name.
  [ -x "/etc/init.d/\${u%.service}" ] && return 0
  return 1
}
check_units() {
  for u in $units; do
    if ! unit_exists "$u"; then
      echo "Failed to $verb $u: Unit $u not found." >&2
      exit 5
    fi
  done
}
case "$verb" in
  start|stop|restart|try-restart|reload|reload-or-restart|try-reload-or-restart|force-reload|condrestart)
    check_units
    exit 0;;
  daemon-reload|daemon-reexec)
    exit 0;;
  enable|disable|reenable)
    check_units
    # --now would need a running systemd; the start it asks for is in the log above.
    for a do shift; [ "$a" = --now ] || set -- "$@" "$a"; done
    exec "$real" "$@";;
  *)
    exec "$real" "$@";;
esac
`;

/** Debian's convention for chroots: package scripts do not start daemons (invoke-rc.d asks this). */
const POLICY_RC_D = `#!/bin/sh
# Placed by racksmith's cloud-init test: no daemon starts from a package script in the test root.
exit 101
`;

/**
 * The host path of `p` inside the root filesystem at `root`, following symbolic links as the
 * machine would: an absolute link (`/var/lib/cloud/instance → /var/lib/cloud/instances/<id>`)
 * resolves inside the root, never on the host; `..` never climbs above the root.
 */
export function pathInRoot(root: string, p: string): string {
  if (!p.startsWith('/')) throw new Error(`not an absolute path inside the machine: ${p}`);
  const pending = p.split('/').filter(Boolean);
  const done: string[] = [];
  for (let hops = 0; pending.length > 0; ) {
    const part = pending.shift() as string;
    if (part === '.') continue;
    if (part === '..') {
      done.pop();
      continue;
    }
    const host = join(root, ...done, part);
    let target: string | null = null;
    try {
      if (lstatSync(host).isSymbolicLink()) target = readlinkSync(host);
    } catch {
      /* does not exist (yet): keep the name */
    }
    if (target === null) {
      done.push(part);
      continue;
    }
    if (++hops > 40) throw new Error(`too many symbolic links under ${p}`);
    if (target.startsWith('/')) done.length = 0;
    pending.unshift(...target.split('/').filter(Boolean));
  }
  return join(root, ...done);
}

/**
 * Unmounts and removes the machine folders a killed run left under `parent`: folders named
 * `<prefix><pid>-…` whose process no longer exists (a live run's folders are never touched).
 */
export async function sweepStale(parent: string, prefix: string): Promise<string[]> {
  const swept: string[] = [];
  const dead = (entry: string): boolean => {
    const pid = /^(\d+)-/.exec(entry.slice(prefix.length))?.[1];
    return entry.startsWith(prefix) && pid !== undefined && !existsSync(`/proc/${pid}`);
  };
  const owner = (mountPoint: string): string => mountPoint.slice(parent.length + 1).split('/')[0] ?? '';
  const mounts = readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((l) => l.split(' ')[4] ?? '')
    .filter((mp) => mp.startsWith(join(parent, prefix)) && dead(owner(mp)))
    // Deepest first: a mount inside another goes before it.
    .sort((a, b) => b.length - a.length);
  for (const mp of mounts) {
    await run('umount', ['-l', mp], { timeout: 30_000 }).catch(() => undefined);
    swept.push(mp);
  }
  const still = readFileSync('/proc/self/mountinfo', 'utf8');
  for (const entry of readdirSync(parent)) {
    const dir = join(parent, entry);
    if (!dead(entry) || still.includes(` ${dir}/`) || still.includes(` ${dir} `)) continue;
    rmSync(dir, { recursive: true, force: true });
    swept.push(dir);
  }
  return swept;
}

export interface RunResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

export interface MachineRootOptions {
  /** The cached root filesystem (lower layer, never written). */
  readonly image: string;
  /** A fresh folder for this machine's upper layer and mount point. */
  readonly workDir: string;
  /** The network namespace every command runs in. */
  readonly netns: string;
}

export class MachineRoot {
  readonly root: string;
  readonly netns: string;
  readonly workDir: string;
  private mounted = false;
  private readonly children = new Set<ChildProcess>();

  private constructor(opts: MachineRootOptions) {
    this.workDir = opts.workDir;
    this.netns = opts.netns;
    this.root = join(opts.workDir, 'root');
  }

  /** An overlay over the image (seconds), or a full copy (about a minute) where overlays fail. */
  static async create(opts: MachineRootOptions): Promise<MachineRoot> {
    const m = new MachineRoot(opts);
    const upper = join(opts.workDir, 'upper');
    const work = join(opts.workDir, 'work');
    for (const d of [m.root, upper, work]) mkdirSync(d, { recursive: true });
    try {
      await run('mount', ['-t', 'overlay', 'overlay', '-o', `lowerdir=${opts.image},upperdir=${upper},workdir=${work}`, m.root], { timeout: 30_000 });
      m.mounted = true;
    } catch {
      await run('cp', ['-a', '--reflink=auto', `${opts.image}/.`, m.root], { timeout: 10 * 60_000 });
    }
    return m;
  }

  get overlay(): boolean {
    return this.mounted;
  }

  private argv(command: readonly string[]): string[] {
    return ['netns', 'exec', this.netns, 'unshare', '--mount', '--uts', '--ipc', '--pid', '--fork', '--kill-child', '--propagation', 'private', 'sh', '-c', ENTER, 'sh', this.root, ...command];
  }

  /** Runs a command in the machine; never rejects on a non-zero exit (the caller asserts). */
  exec(command: readonly string[], opts: { timeoutMs?: number; input?: string } = {}): Promise<RunResult> {
    return new Promise((resolve, reject) => {
      const child = execFile('ip', this.argv(command), { timeout: opts.timeoutMs ?? 120_000, killSignal: 'SIGKILL', maxBuffer: 64 * 1024 * 1024, encoding: 'utf8' }, (err, stdout, stderr) => {
        if (err && typeof err.code !== 'number') return reject(new Error(`${command.join(' ')}: ${err.message}\n${stderr}`));
        resolve({ code: err ? Number(err.code) : 0, stdout, stderr });
      });
      if (opts.input !== undefined) child.stdin?.end(opts.input);
    });
  }

  /** Like exec, but a non-zero exit is an error carrying the output. */
  async must(command: readonly string[], opts: { timeoutMs?: number; input?: string } = {}): Promise<RunResult> {
    const r = await this.exec(command, opts);
    if (r.code !== 0) throw new Error(`${command.join(' ')} exited ${r.code}:\n${(r.stdout + r.stderr).trim().slice(-3000)}`);
    return r;
  }

  /** A long-running process in the machine (a daemon in the foreground); ended by destroy(). */
  spawn(command: readonly string[]): ChildProcess {
    const child = spawn('ip', this.argv(command), { stdio: ['ignore', 'pipe', 'pipe'] });
    this.children.add(child);
    child.on('exit', () => this.children.delete(child));
    return child;
  }

  /** The host path of a path inside the machine (symbolic links followed as the machine would). */
  path(p: string): string {
    return pathInRoot(this.root, p);
  }

  exists(p: string): boolean {
    return existsSync(this.path(p));
  }

  read(p: string): string {
    return readFileSync(this.path(p), 'utf8');
  }

  readOr(p: string, fallback: string): string {
    return this.exists(p) ? this.read(p) : fallback;
  }

  list(p: string): string[] {
    return this.exists(p) ? readdirSync(this.path(p)).sort() : [];
  }

  write(p: string, content: string | Buffer, mode = 0o644): void {
    mkdirSync(dirname(this.path(p)), { recursive: true });
    writeFileSync(this.path(p), content, { mode });
  }

  /** The shims and the chroot policy (see the class comment); done once per machine, before cloud-init. */
  async installShims(): Promise<void> {
    const shims: Array<[string, string]> = [
      ['/usr/bin/systemctl', SYSTEMCTL_SHIM],
      ['/usr/sbin/sysctl', SYSCTL_SHIM],
      ['/usr/sbin/swapoff', RECORD_ONLY],
      ['/usr/sbin/swapon', RECORD_ONLY],
      ['/usr/sbin/modprobe', RECORD_ONLY],
    ];
    for (const [path] of shims) {
      // The package database knows these under their pre-usrmerge names (/sbin/…, /bin/…).
      const owned = path.replace(/^\/usr\/(s?bin)\//, '/$1/');
      const { stdout } = await this.must(['dpkg-query', '-S', owned]).catch(() => this.must(['dpkg-query', '-S', path]));
      const registered = stdout.trim().split(': ').pop() ?? path;
      await this.must(['dpkg-divert', '--local', '--rename', '--divert', `${registered}.distrib`, '--add', registered]);
    }
    for (const [path, body] of shims) this.write(path, body, 0o755);
    this.write('/usr/sbin/policy-rc.d', POLICY_RC_D, 0o755);
  }

  /** The test's calls log: one line per recorded command (`systemctl restart containerd`). */
  calls(): string[] {
    return this.readOr(CALLS_LOG, '')
      .split('\n')
      .filter((l) => l.length > 0);
  }

  async destroy(): Promise<void> {
    for (const child of this.children) {
      try {
        child.kill('SIGKILL');
      } catch {
        /* gone */
      }
    }
    if (this.mounted) {
      for (let i = 0; i < 20 && this.mounted; i++) {
        try {
          await run('umount', [this.root], { timeout: 30_000 });
          this.mounted = false;
        } catch {
          await new Promise((r) => setTimeout(r, 100));
        }
      }
      if (this.mounted) {
        await run('umount', ['-l', this.root], { timeout: 30_000 }).then(
          () => (this.mounted = false),
          () => undefined,
        );
        // Never delete through a mount that is still there: it would only write whiteouts.
        if (this.mounted) return;
      }
    }
    rmSync(this.workDir, { recursive: true, force: true });
  }
}
