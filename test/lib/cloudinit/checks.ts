/**
 * Pure readers for what the cloud-init test finds inside a machine after the role config ran:
 * each takes a file's text and returns the one fact the acceptance asks about.
 */

/** fstab lines that still turn swap on at boot (not commented, type `swap`). */
export function activeSwapEntries(fstab: string): string[] {
  return fstab
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'))
    .filter((l) => l.split(/\s+/)[2] === 'swap');
}

/**
 * `dpkg-query -W -f '${Package} ${Version} ${db:Status-Abbrev}\n'` → installed packages and
 * versions. The status's second letter is the current state (`i` installed); the first is the
 * wanted state, `h` for a held package.
 */
export function installedVersions(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of text.split('\n')) {
    const [name, version, status] = line.trim().split(/\s+/);
    if (name && version && status?.[1] === 'i') out.set(name, version);
  }
  return out;
}

/** The `exec-opts` of Docker's daemon.json; throws if the file is not a JSON object. */
export function dockerExecOpts(daemonJson: string): string[] {
  const parsed: unknown = JSON.parse(daemonJson);
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) throw new Error('daemon.json is not a JSON object');
  const opts = (parsed as Record<string, unknown>)['exec-opts'];
  return Array.isArray(opts) ? opts.map(String) : [];
}

/** TOML tables as `header → key → raw value`, enough for containerd's config (no arrays of tables). */
export function tomlTables(text: string): Map<string, Map<string, string>> {
  const tables = new Map<string, Map<string, string>>([['', new Map()]]);
  let current = tables.get('') as Map<string, string>;
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const header = /^\[([^[\]]+)\]$/.exec(line);
    if (header?.[1]) {
      const name = header[1].trim();
      current = tables.get(name) ?? new Map();
      tables.set(name, current);
      continue;
    }
    const kv = /^("[^"]*"|'[^']*'|[A-Za-z0-9_.-]+)\s*=\s*(.*)$/.exec(line);
    if (kv?.[1] && kv[2] !== undefined) current.set(kv[1].replace(/^["']|["']$/g, ''), kv[2].trim());
  }
  return tables;
}

/** The runc runtime's options table for config version 2 (containerd 1.x) and 3 (2.x). */
const RUNC_OPTIONS = ['plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options', "plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options"];

export interface ContainerdFacts {
  readonly version: string | null;
  readonly systemdCgroup: string | null;
  readonly disabledPlugins: string | null;
}

export function containerdFacts(toml: string): ContainerdFacts {
  const t = tomlTables(toml);
  const top = t.get('') ?? new Map<string, string>();
  let systemdCgroup: string | null = null;
  for (const name of RUNC_OPTIONS) systemdCgroup = t.get(name)?.get('SystemdCgroup') ?? systemdCgroup;
  return { version: top.get('version') ?? null, systemdCgroup, disabledPlugins: top.get('disabled_plugins') ?? null };
}

/** `key = value` lines of sysctl.d files (comments and blanks skipped). */
export function sysctlSettings(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue;
    const m = /^-?([^=\s]+)\s*=\s*(.*)$/.exec(line);
    if (m?.[1] && m[2] !== undefined) out.set(m[1].replace(/\//g, '.'), m[2].trim());
  }
  return out;
}

/** Module names of modules-load.d files. */
export function moduleNames(text: string): string[] {
  return text
    .split('\n')
    .map((l) => l.replace(/[#;].*$/, '').trim())
    .filter(Boolean);
}

export interface HaproxyServer {
  readonly backend: string;
  readonly name: string;
  readonly address: string;
  readonly check: boolean;
}

/** `server` lines per backend section of an haproxy configuration. */
export function haproxyServers(cfg: string): HaproxyServer[] {
  const out: HaproxyServer[] = [];
  let backend: string | null = null;
  for (const raw of cfg.split('\n')) {
    const line = raw.replace(/#.*$/, '').trim();
    const section = /^(global|defaults|frontend|backend|listen|resolvers|peers|userlist)\b\s*(\S*)/.exec(line);
    if (section && !raw.startsWith(' ') && !raw.startsWith('\t')) {
      backend = section[1] === 'backend' || section[1] === 'listen' ? (section[2] ?? '') : null;
      continue;
    }
    const server = /^server\s+(\S+)\s+(\S+)(.*)$/.exec(line);
    if (backend !== null && server?.[1] && server[2]) out.push({ backend, name: server[1], address: server[2], check: /\bcheck\b/.test(server[3] ?? '') });
  }
  return out;
}

/** cloud-init's form-encoded phone-home body → its fields. */
export function phoneHomeFields(body: string): Map<string, string> {
  return new Map(new URLSearchParams(body).entries());
}

/** `<type> <base64> [comment]` → `<type> <base64>`, the part that identifies a key. */
export function keyIdentity(line: string): string {
  const [type, b64] = line.trim().split(/\s+/);
  return `${type ?? ''} ${b64 ?? ''}`;
}
