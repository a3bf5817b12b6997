import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { freePort as freeTcpPort } from './racksmith.js';

const run = promisify(execFile);

/**
 * OpenStack's sushy-emulator, the Redfish BMC emulator Ironic and Metal3 run in their CI, from
 * the source snapshot kept with the tests (`test/fixtures/peers/sushy-tools-<commit>.tar.gz`, see its
 * README) on Debian's Python packages. Unpacked once per test process into a temporary folder.
 * `fake` mode keeps systems in its own state folder; `libvirt` mode drives QEMU domains through a
 * libvirtd (test/lib/libvirt.ts).
 */
export const PYTHON = '/usr/bin/python3';
export const SUSHY_PY_MODULES = ['flask', 'tenacity', 'bcrypt', 'webob', 'pbr', 'requests'];

export interface FakeSystem {
  readonly uuid: string;
  readonly name: string;
  readonly power?: 'On' | 'Off';
  readonly nics: readonly string[];
}

export interface SushyOptions {
  readonly users: Readonly<Record<string, string>>;
  readonly fake?: readonly FakeSystem[];
  /** libvirt mode: the URI (e.g. `qemu:///system?socket=…`). */
  readonly libvirtUri?: string;
  /** Serve HTTPS with this certificate and key (PEM files). */
  readonly tls?: { readonly cert: string; readonly key: string };
  /** Run inside this network namespace, listening on `address`. */
  readonly netns?: string;
  readonly address?: string;
  readonly port?: number;
}

export interface Sushy {
  readonly url: string;
  readonly address: string;
  readonly port: number;
  readonly dir: string;
  /** A GET straight at the emulator with Basic auth: the state as sushy keeps it. */
  get(path: string): Promise<{ status: number; json: any }>;
  log(): string;
  stop(): Promise<void>;
}

/** Where the snapshot is: SUSHY_TOOLS_TARBALL, else the one kept with the tests (test/fixtures/peers/). */
export function sushyTarball(): string | null {
  const given = process.env['SUSHY_TOOLS_TARBALL'];
  if (given) return existsSync(given) ? given : null;
  // dist/test/lib → the repository's test/fixtures/peers
  const peers = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'test', 'fixtures', 'peers');
  const f = existsSync(peers) ? readdirSync(peers).find((n) => /^sushy-tools-.*\.tar\.gz$/.test(n)) : undefined;
  return f ? join(peers, f) : null;
}

/** Null when sushy-emulator can run here, else why not. */
export function sushyMissing(): string | null {
  if (!sushyTarball()) return 'no sushy-tools source snapshot (test/fixtures/peers/sushy-tools-*.tar.gz, or SUSHY_TOOLS_TARBALL)';
  if (!existsSync(PYTHON)) return `no ${PYTHON}`;
  try {
    execFileSync(PYTHON, ['-c', `import ${SUSHY_PY_MODULES.join(', ')}`], { stdio: 'ignore' });
  } catch {
    return `Debian's python3-{${SUSHY_PY_MODULES.join(',')}} are not all installed`;
  }
  return null;
}

let unpacked: string | null = null;
function source(): string {
  if (unpacked && existsSync(unpacked)) return unpacked;
  const tarball = sushyTarball();
  if (!tarball) throw new Error('no sushy-tools snapshot');
  const dir = mkdtempSync(join(tmpdir(), 'rs-sushy-src-'));
  execFileSync('tar', ['-xzf', tarball, '-C', dir, '--strip-components=1']);
  unpacked = dir;
  process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** `user:bcrypt` lines, as sushy's auth middleware reads them (Apache htpasswd, bcrypt only). */
async function htpasswd(users: Readonly<Record<string, string>>): Promise<string> {
  const script = 'import bcrypt, json, sys\nfor u, p in json.load(sys.stdin).items(): print(u + ":" + bcrypt.hashpw(p.encode(), bcrypt.gensalt(4)).decode())';
  return new Promise((resolve, reject) => {
    const child = execFile(PYTHON, ['-c', script], (err, stdout) => (err ? reject(err) : resolve(stdout)));
    child.stdin?.end(JSON.stringify(users));
  });
}

const py = (v: unknown): string => JSON.stringify(v).replace(/\btrue\b/g, 'True').replace(/\bfalse\b/g, 'False').replace(/\bnull\b/g, 'None');

export async function startSushy(o: SushyOptions): Promise<Sushy> {
  const src = source();
  const dir = mkdtempSync(join(tmpdir(), 'rs-sushy-'));
  mkdirSync(join(dir, 'state'));
  writeFileSync(join(dir, 'users'), await htpasswd(o.users), { mode: 0o600 });
  const conf: string[] = [`SUSHY_EMULATOR_AUTH_FILE = ${py(join(dir, 'users'))}`, `SUSHY_EMULATOR_STATE_DIR = ${py(join(dir, 'state'))}`];
  if (o.fake) {
    conf.push('SUSHY_EMULATOR_FAKE_DRIVER = True');
    conf.push(`SUSHY_EMULATOR_FAKE_SYSTEMS = ${py(o.fake.map((s) => ({ uuid: s.uuid, name: s.name, power_state: s.power ?? 'Off', external_notifier: false, nics: s.nics.map((mac) => ({ mac, ip: '' })) })))}`);
  } else if (o.libvirtUri) {
    conf.push(`SUSHY_EMULATOR_LIBVIRT_URI = ${py(o.libvirtUri)}`);
  }
  if (o.tls) conf.push(`SUSHY_EMULATOR_SSL_CERT = ${py(o.tls.cert)}`, `SUSHY_EMULATOR_SSL_KEY = ${py(o.tls.key)}`);
  writeFileSync(join(dir, 'emulator.conf'), conf.join('\n') + '\n');
  const address = o.address ?? '127.0.0.1';
  const port = o.port ?? (await freeTcpPort());
  const args = ['-m', 'sushy_tools.emulator.main', '--config', join(dir, 'emulator.conf'), '-i', address, '-p', String(port), ...(o.fake ? ['--fake'] : o.libvirtUri ? ['--libvirt-uri', o.libvirtUri] : [])];
  const [cmd, argv] = o.netns ? ['ip', ['netns', 'exec', o.netns, PYTHON, ...args]] : [PYTHON, args];
  let output = '';
  const child: ChildProcess = spawn(cmd, argv, { env: { ...process.env, PBR_VERSION: '1.0.0', PYTHONPATH: src, PYTHONDONTWRITEBYTECODE: '1' }, stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout?.on('data', (d: Buffer) => (output = (output + d.toString()).slice(-20_000)));
  child.stderr?.on('data', (d: Buffer) => (output = (output + d.toString()).slice(-20_000)));
  const url = `${o.tls ? 'https' : 'http'}://${address}:${port}`;
  const auth = Object.entries(o.users)[0] as [string, string];

  const get = (path: string): Promise<{ status: number; json: any }> =>
    new Promise((resolveGet, reject) => {
      const opts = { host: address, port, path, method: 'GET', headers: { Authorization: `Basic ${Buffer.from(`${auth[0]}:${auth[1]}`).toString('base64')}` }, rejectUnauthorized: false, timeout: 20_000 };
      const req = (o.tls ? httpsRequest : request)(opts, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString();
          let json: any = null;
          try {
            json = JSON.parse(text);
          } catch {
            json = text;
          }
          resolveGet({ status: res.statusCode ?? 0, json });
        });
      });
      // 20 s, not 5: the emulator (Python) beside two other suites once took longer to answer.
      req.on('timeout', () => req.destroy(new Error(`GET ${path}: no answer from sushy-emulator in 20 s`)));
      req.on('error', reject);
      req.end();
    });

  const sushy: Sushy = {
    url,
    address,
    port,
    dir,
    get: o.netns ? (path) => nsGet(o.netns as string, url, auth, path) : get,
    log: () => output,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        const exited = await Promise.race([new Promise((r) => child.once('exit', () => r(true))), new Promise((r) => setTimeout(() => r(false), 3000))]);
        if (!exited) {
          child.kill('SIGKILL');
          await new Promise((r) => child.once('exit', r));
        }
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
  for (let i = 0; i < 100; i++) {
    if (child.exitCode !== null) break;
    try {
      const r = await sushy.get('/redfish/v1/');
      if (r.status === 200) return sushy;
    } catch {
      /* not yet */
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  await sushy.stop();
  throw new Error(`sushy-emulator did not come up on ${url}:\n${output.slice(-3000)}`);
}

/** A GET from inside a namespace (curl), for an emulator that listens only there. */
async function nsGet(netns: string, url: string, auth: [string, string], path: string): Promise<{ status: number; json: any }> {
  const { stdout } = await run('ip', ['netns', 'exec', netns, 'curl', '-sk', '-m', '20', '-u', `${auth[0]}:${auth[1]}`, '-w', '\n%{http_code}', `${url}${path}`]);
  const i = stdout.lastIndexOf('\n');
  const body = stdout.slice(0, i);
  let json: any = body;
  try {
    json = JSON.parse(body);
  } catch {
    /* text */
  }
  return { status: Number(stdout.slice(i + 1)), json };
}

/** A self-signed certificate for 127.0.0.1 (and its SHA-256 fingerprint), by openssl. */
export async function selfSignedCert(dir: string, cn = '127.0.0.1'): Promise<{ cert: string; key: string; fingerprint: string }> {
  const cert = join(dir, `${cn}.crt`);
  const key = join(dir, `${cn}.key`);
  await run('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '2', '-subj', `/CN=${cn}`, '-addext', `subjectAltName=IP:${cn}`, '-keyout', key, '-out', cert]);
  const { stdout } = await run('openssl', ['x509', '-in', cert, '-noout', '-fingerprint', '-sha256']);
  const fingerprint = (/=([0-9A-F:]+)/i.exec(stdout)?.[1] ?? '').trim();
  return { cert, key, fingerprint };
}
