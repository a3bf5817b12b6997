import { gunzipSync } from 'node:zlib';
import type { Cni, ContainerRuntime } from '../inventory/model.js';
import type { ReleaseInstaller } from '../boot/releases.js';
import type { ArtifactLocation } from '../artifacts/store.js';
import { errorMessage } from '../lib/errors.js';
import { AptIndexError, matchesVersion, packagesIndexCandidates, packageVersions, parseRelease, type ReleaseFile } from './apt-index.js';
import { checkCompatibility, cniManifestUrl, kubernetesAptPattern, OS_RELEASES, type OsId } from './compatibility.js';
import { GetError, type HttpGet } from './http-get.js';

/**
 * The preflight of a cluster: from racksmith's host, every upstream its seeds will make the
 * machines use — the OS mirror and suites, the installer artifacts, the Kubernetes apt repository
 * and the exact pinned kubelet/kubeadm/kubectl versions in its Packages index, Docker CE's
 * repository and pinned version, the CNI manifest, the apt proxy — so a dead mirror or a missing
 * version stops a rack power-on, not forty `apt-get`s. `planPreflight` decides what to check (pure,
 * from the cluster and the settings); `runPreflight` does the requests, each bounded by a timeout.
 */
export interface PreflightSettings {
  readonly ubuntuMirror: string;
  /** Debian clusters' archive (when racksmith installs Debian); none configured → that check fails. */
  readonly debianMirror?: string | null | undefined;
  readonly kubernetesRepo: string;
  readonly kubernetesLegacyRepo: string;
  readonly kubernetesLegacyGpgUrl: string;
  readonly dockerRepo: string;
  readonly dockerGpgUrl: string;
  readonly cniManifests: Readonly<Record<Cni, string>>;
  /** The apt proxy the seeds give the nodes (`http://host:3142`): apt repositories are checked through it, as the nodes will use them. */
  readonly aptProxy?: string | null | undefined;
}

export interface PreflightCluster {
  readonly name: string;
  readonly os: OsId;
  readonly kubernetesVersion: string;
  readonly containerRuntime: ContainerRuntime;
  readonly cni: Cni;
}

export interface WantedPackage {
  readonly name: string;
  /** apt's version pattern, as the seed pins it; null: any version. */
  readonly pattern: string | null;
}

export type PlannedCheck =
  /** A suite's Release file (`<dir>Release`, else `<dir>InRelease`). */
  | { readonly kind: 'release'; readonly id: string; readonly title: string; readonly dir: string; readonly viaProxy: boolean }
  /** Packages of a suite's index, with the versions the seeds pin. */
  | { readonly kind: 'packages'; readonly id: string; readonly title: string; readonly dir: string; readonly indexDir: string; readonly packages: readonly WantedPackage[]; readonly viaProxy: boolean }
  /** A URL that must answer 200 (a signing key, a manifest): status only, the body is not read. */
  | { readonly kind: 'url'; readonly id: string; readonly title: string; readonly url: string; readonly viaProxy: boolean }
  /** An installer artifact, wherever the artifacts store would take it from. */
  | { readonly kind: 'artifact'; readonly id: string; readonly title: string; readonly release: string; readonly file: string }
  /** The apt proxy itself, asked for a Release file through it. */
  | { readonly kind: 'proxy'; readonly id: string; readonly title: string; readonly proxy: string; readonly probe: string }
  /** Failed without a request: known to be gone upstream, or not checkable as configured. */
  | { readonly kind: 'fail'; readonly id: string; readonly title: string; readonly url: string | null; readonly message: string }
  | { readonly kind: 'skip'; readonly id: string; readonly title: string; readonly url: string | null; readonly message: string };

export type CheckState = 'ok' | 'failed' | 'skipped';

export interface CheckResult {
  readonly id: string;
  readonly title: string;
  readonly url: string | null;
  readonly state: CheckState;
  /** The HTTP status of the answer that decided it, when there was one. */
  readonly status: number | null;
  readonly detail: string;
  readonly ms: number;
}

export interface PreflightReport {
  readonly cluster: string;
  readonly ok: boolean;
  readonly checkedAt: string;
  readonly checks: readonly CheckResult[];
}

/**
 * The legacy Kubernetes apt repository was frozen on 2023-09-13 and removed on 2024-03-04
 * (kubernetes/release#3485); its hosts answer nothing useful any more, so its URLs are recognised
 * and reported without a request.
 */
const GONE_HOSTS: ReadonlyArray<{ readonly host: string; readonly path: RegExp }> = [
  { host: 'apt.kubernetes.io', path: /^\// },
  { host: 'packages.cloud.google.com', path: /^\/apt\/?$|^\/apt\/dists\// },
];

export function legacyRepositoryGone(url: string): boolean {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return false;
  }
  return GONE_HOSTS.some((g) => u.hostname === g.host && g.path.test(u.pathname));
}

export function legacyGoneMessage(version: string): string {
  return (
    `the legacy Kubernetes apt repository (apt.kubernetes.io, suite kubernetes-xenial), the only source of Kubernetes ${version}, is gone upstream: ` +
    'frozen on 2023-09-13, removed on 2024-03-04; pkgs.k8s.io starts at 1.24. ' +
    'Configure a site mirror of it: --kubernetes-legacy-repo URL (RACKSMITH_KUBERNETES_LEGACY_REPO) and --kubernetes-legacy-gpg-url URL for its key'
  );
}

const slash = (u: string): string => (u.endsWith('/') ? u : `${u}/`);

export function planPreflight(c: PreflightCluster, s: PreflightSettings, installer: ReleaseInstaller | null): PlannedCheck[] {
  const checks: PlannedCheck[] = [];
  const proxied = Boolean(s.aptProxy);
  const os = OS_RELEASES[c.os];
  const compat = checkCompatibility(c);
  if (!compat.ok) {
    checks.push({ kind: 'fail', id: 'compatibility', title: 'compatibility', url: null, message: compat.message });
    return checks;
  }
  const pins = compat.pins;

  // The OS archive: the release's suite and its updates (d-i's netboot images come from -updates).
  const mirror = c.os.startsWith('ubuntu-') ? s.ubuntuMirror : (s.debianMirror ?? null);
  if (mirror) {
    for (const suite of [os.codename, `${os.codename}-updates`]) {
      checks.push({ kind: 'release', id: `os-mirror:${suite}`, title: `${os.name} mirror, suite ${suite}`, dir: `${slash(mirror)}dists/${suite}/`, viaProxy: proxied });
    }
  } else {
    checks.push({ kind: 'fail', id: 'os-mirror', title: `${os.name} mirror`, url: null, message: `no mirror is configured for ${os.name}` });
  }
  if (s.aptProxy) {
    checks.push({ kind: 'proxy', id: 'apt-proxy', title: 'apt proxy', proxy: s.aptProxy, probe: `${slash(mirror ?? s.ubuntuMirror)}dists/${os.codename}/Release` });
  }

  // The installer: every file the release's machines ask racksmith for.
  if (installer) {
    for (const file of [...(installer.iso ? [installer.iso] : []), installer.kernel, installer.initrd]) {
      checks.push({ kind: 'artifact', id: `installer:${installer.release}/${file}`, title: `installer ${installer.release}/${file}`, release: installer.release, file });
    }
  } else {
    checks.push({ kind: 'fail', id: 'installer', title: 'installer', url: null, message: `racksmith has no installer for ${os.name}` });
  }

  // Kubernetes packages, pinned exactly as the role setup pins them.
  const pattern = kubernetesAptPattern(c.kubernetesVersion);
  const tools = ['kubelet', 'kubeadm', 'kubectl'].map((name) => ({ name, pattern }));
  if (pins.packages === 'legacy') {
    const repo = slash(s.kubernetesLegacyRepo);
    if (legacyRepositoryGone(repo)) {
      checks.push({ kind: 'fail', id: 'kubernetes-repo', title: 'Kubernetes apt repository (legacy, kubernetes-xenial)', url: repo, message: legacyGoneMessage(c.kubernetesVersion) });
      checks.push({ kind: 'skip', id: 'kubernetes-packages', title: `kubelet, kubeadm, kubectl ${pattern}`, url: null, message: 'not checked: their repository is gone' });
      checks.push({ kind: 'skip', id: 'kubernetes-key', title: 'Kubernetes signing key', url: s.kubernetesLegacyGpgUrl, message: 'not checked: its repository is gone' });
    } else {
      const dir = `${repo}dists/kubernetes-xenial/`;
      checks.push({ kind: 'release', id: 'kubernetes-repo', title: 'Kubernetes apt repository (legacy, kubernetes-xenial)', dir, viaProxy: proxied });
      checks.push({ kind: 'packages', id: 'kubernetes-packages', title: `kubelet, kubeadm, kubectl ${pattern}`, dir, indexDir: 'main/binary-amd64/', packages: tools, viaProxy: proxied });
      checks.push({ kind: 'url', id: 'kubernetes-key', title: 'Kubernetes signing key', url: s.kubernetesLegacyGpgUrl, viaProxy: false });
    }
  } else {
    const dir = `${s.kubernetesRepo.replace(/\/+$/, '')}/v1.${pins.minor}/deb/`;
    checks.push({ kind: 'release', id: 'kubernetes-repo', title: `Kubernetes apt repository (pkgs.k8s.io, v1.${pins.minor})`, dir, viaProxy: proxied });
    checks.push({ kind: 'packages', id: 'kubernetes-packages', title: `kubelet, kubeadm, kubectl ${pattern}`, dir, indexDir: '', packages: tools, viaProxy: proxied });
    checks.push({ kind: 'url', id: 'kubernetes-key', title: 'Kubernetes signing key', url: `${dir}Release.key`, viaProxy: false });
  }

  // Docker CE, where the runtime is docker: the suite is the codename the machine reports.
  if (pins.docker) {
    const dir = `${slash(s.dockerRepo)}dists/${os.codename}/`;
    checks.push({ kind: 'release', id: 'docker-repo', title: `Docker CE repository, suite ${os.codename}`, dir, viaProxy: proxied });
    checks.push({
      kind: 'packages',
      id: 'docker-packages',
      title: `Docker CE ${pins.docker.version} (docker-ce, docker-ce-cli ${pins.docker.apt}; containerd.io)`,
      dir,
      indexDir: 'stable/binary-amd64/',
      packages: [
        { name: 'docker-ce', pattern: pins.docker.apt },
        { name: 'docker-ce-cli', pattern: pins.docker.apt },
        { name: 'containerd.io', pattern: null },
      ],
      viaProxy: proxied,
    });
    checks.push({ kind: 'url', id: 'docker-key', title: 'Docker signing key', url: s.dockerGpgUrl, viaProxy: false });
  }

  // The CNI manifest the orchestrator applies (kubectl on the first control node fetches it).
  checks.push({ kind: 'url', id: 'cni-manifest', title: `CNI manifest (${c.cni} ${pins.cni.version})`, url: cniManifestUrl(s.cniManifests[c.cni], pins.cni), viaProxy: false });
  return checks;
}

export interface PreflightDeps {
  readonly get: HttpGet;
  readonly locate: (release: string, file: string) => Promise<ArtifactLocation>;
  /** Each request's deadline. */
  readonly timeoutMs: number;
  readonly now?: () => Date;
  readonly signal?: AbortSignal | undefined;
  /** Checks at once. */
  readonly concurrency?: number;
}

/** A Packages index may be large (the legacy repository's is megabytes): bounded, not unlimited. */
const INDEX_MAX_BYTES = 128 * 1024 * 1024;

interface Outcome {
  readonly state: CheckState;
  readonly status: number | null;
  readonly detail: string;
  readonly url: string | null;
}

class CheckFailed extends Error {
  constructor(
    message: string,
    readonly status: number | null,
    readonly url: string | null,
  ) {
    super(message);
  }
}

function sizeText(bytes: number): string {
  if (bytes >= 1024 ** 3) return `${(bytes / 1024 ** 3).toFixed(1)} GiB`;
  if (bytes >= 1024 ** 2) return `${(bytes / 1024 ** 2).toFixed(1)} MiB`;
  if (bytes >= 1024) return `${(bytes / 1024).toFixed(0)} KiB`;
  return `${bytes} bytes`;
}

export async function runPreflight(cluster: string, plan: readonly PlannedCheck[], deps: PreflightDeps, proxy: string | null = null): Promise<PreflightReport> {
  const now = deps.now ?? (() => new Date());
  const started = now().toISOString();
  // One request per URL in a run: the Release a suite check read is the one its Packages check uses.
  const memo = new Map<string, Promise<{ status: number; body: Buffer | null; url: string }>>();
  const get = (url: string, viaProxy: boolean, body: boolean): Promise<{ status: number; body: Buffer | null; url: string }> => {
    const key = `${viaProxy ? 'p' : 'd'}${body ? 'b' : 'h'} ${url}`;
    let p = memo.get(key);
    if (!p) {
      p = deps.get(url, { timeoutMs: deps.timeoutMs, body, maxBytes: INDEX_MAX_BYTES, proxy: viaProxy ? proxy : null, signal: deps.signal }).then((r) => ({ status: r.status, body: r.body, url: r.url }));
      memo.set(key, p);
    }
    return p;
  };
  const fetchOk = async (url: string, viaProxy: boolean, body: boolean): Promise<{ status: number; body: Buffer | null; url: string }> => {
    let r;
    try {
      r = await get(url, viaProxy, body);
    } catch (err) {
      throw new CheckFailed(`${err instanceof GetError ? err.message : errorMessage(err)}${viaProxy && proxy ? ` (through the apt proxy ${proxy})` : ''}`, null, url);
    }
    if (r.status !== 200) throw new CheckFailed(`HTTP ${r.status}${viaProxy && proxy ? ` (through the apt proxy ${proxy})` : ''}`, r.status, url);
    return r;
  };

  async function release(dir: string, viaProxy: boolean): Promise<{ release: ReleaseFile; url: string; status: number }> {
    let r;
    try {
      r = await fetchOk(`${dir}Release`, viaProxy, true);
    } catch (first) {
      // Some mirrors publish only the signed InRelease.
      try {
        r = await fetchOk(`${dir}InRelease`, viaProxy, true);
      } catch {
        throw first;
      }
    }
    try {
      return { release: parseRelease((r.body ?? Buffer.alloc(0)).toString('utf8')), url: r.url, status: r.status };
    } catch (err) {
      throw new CheckFailed(err instanceof AptIndexError ? `${err.message} at ${r.url}` : errorMessage(err), r.status, r.url);
    }
  }

  async function one(c: PlannedCheck): Promise<Outcome> {
    switch (c.kind) {
      case 'fail':
        return { state: 'failed', status: null, detail: c.message, url: c.url };
      case 'skip':
        return { state: 'skipped', status: null, detail: c.message, url: c.url };
      case 'release': {
        const r = await release(c.dir, c.viaProxy);
        const what = [r.release.origin, r.release.suite ?? r.release.codename].filter(Boolean).join(' ') || 'a Release file';
        return { state: 'ok', status: r.status, detail: `${what}${r.release.date ? `, ${r.release.date}` : ''}`, url: r.url };
      }
      case 'packages': {
        const rel = await release(c.dir, c.viaProxy);
        let index: { status: number; body: Buffer | null; url: string } | null = null;
        let lastError: unknown = null;
        for (const name of packagesIndexCandidates(rel.release, c.indexDir)) {
          try {
            index = await fetchOk(`${c.dir}${name}`, c.viaProxy, true);
            break;
          } catch (err) {
            lastError = err;
          }
        }
        if (!index) throw lastError instanceof CheckFailed ? lastError : new CheckFailed(`no Packages index under ${c.dir}${c.indexDir}`, null, c.dir);
        let text: string;
        try {
          const raw = index.body ?? Buffer.alloc(0);
          text = (index.url.endsWith('.gz') ? gunzipSync(raw, { maxOutputLength: INDEX_MAX_BYTES }) : raw).toString('utf8');
        } catch (err) {
          throw new CheckFailed(`cannot read the index: ${errorMessage(err)}`, index.status, index.url);
        }
        const versions = packageVersions(text);
        const found: string[] = [];
        const missing: string[] = [];
        for (const p of c.packages) {
          const have = versions.get(p.name) ?? [];
          const match = p.pattern === null ? have : have.filter((v) => matchesVersion(p.pattern as string, v));
          if (have.length === 0) missing.push(`no package ${p.name}`);
          else if (match.length === 0) missing.push(`${p.name} has no version ${p.pattern} (it has ${have.slice(-6).join(', ')})`);
          else found.push(`${p.name} ${match[match.length - 1]}`);
        }
        if (missing.length > 0) return { state: 'failed', status: index.status, detail: `${missing.join('; ')} in ${index.url}`, url: index.url };
        return { state: 'ok', status: index.status, detail: found.join(', '), url: index.url };
      }
      case 'url': {
        const r = await fetchOk(c.url, c.viaProxy, false);
        return { state: 'ok', status: r.status, detail: `HTTP ${r.status}`, url: r.url === c.url ? c.url : `${c.url} → ${r.url}` };
      }
      case 'proxy': {
        const r = await fetchOk(c.probe, true, false);
        return { state: 'ok', status: r.status, detail: `${c.proxy} answers (HTTP ${r.status} for ${c.probe})`, url: c.proxy };
      }
      case 'artifact': {
        const at = await deps.locate(c.release, c.file);
        switch (at.source) {
          case 'local':
            return { state: 'ok', status: null, detail: `in the artifacts directory (${sizeText(at.size)})`, url: null };
          case 'cache':
            return { state: 'ok', status: null, detail: `cached (${sizeText(at.size)})`, url: null };
          case 'iso':
            return { state: 'ok', status: null, detail: `taken from ${at.iso} (${at.path})`, url: null };
          case 'none':
            return { state: 'failed', status: null, detail: at.message, url: null };
          case 'upstream': {
            const r = await fetchOk(at.url, false, false);
            return { state: 'ok', status: r.status, detail: `HTTP ${r.status}, not cached yet (racksmith artifacts prefetch fetches it)`, url: at.url };
          }
        }
      }
    }
  }

  const results: CheckResult[] = new Array(plan.length);
  let next = 0;
  const worker = async (): Promise<void> => {
    for (let i = next++; i < plan.length; i = next++) {
      const c = plan[i] as PlannedCheck;
      const t = Date.now();
      let o: Outcome;
      try {
        o = await one(c);
      } catch (err) {
        o = err instanceof CheckFailed ? { state: 'failed', status: err.status, detail: err.message, url: err.url } : { state: 'failed', status: null, detail: errorMessage(err), url: null };
      }
      results[i] = { id: c.id, title: c.title, url: o.url, state: o.state, status: o.status, detail: o.detail, ms: Date.now() - t };
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(deps.concurrency ?? 4, plan.length)) }, worker));
  return { cluster, ok: results.every((r) => r.state !== 'failed'), checkedAt: started, checks: results };
}

/** One line per check, for people: state, what, and the URL or the reason. */
export function formatCheck(r: CheckResult): string {
  const state = r.state === 'ok' ? 'ok' : r.state === 'failed' ? 'FAILED' : 'skipped';
  return `${state.padEnd(8)}${r.title}: ${r.detail}${r.url && r.state !== 'skipped' ? `  [${r.url}]` : ''}`;
}

export function formatReport(r: PreflightReport): string {
  const failed = r.checks.filter((c) => c.state === 'failed').length;
  return [...r.checks.map(formatCheck), r.ok ? `cluster ${r.cluster}: all ${r.checks.length} checks passed` : `cluster ${r.cluster}: ${failed} of ${r.checks.length} checks failed`].join('\n') + '\n';
}
