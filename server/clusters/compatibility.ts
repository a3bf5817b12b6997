import type { Cni, ContainerRuntime, UbuntuRelease } from '../inventory/model.js';

/**
 * What racksmith builds, as one table: which Kubernetes minor runs on which OS release, with
 * which container runtime (and, for Docker, which Docker CE version) and which CNI release. A
 * cluster is accepted only as a row of this table allows (POST and PATCH /clusters), and the
 * seeds and the orchestrator install exactly the versions the row pins. Evidence for each row is
 * in docs/compatibility.md; to support a new Kubernetes minor, add or widen a row there and here.
 *
 * The OS axis is keyed by the `os` ids of the API (`ubuntu-22.04`, `debian-12`).
 */
export const OS_IDS = ['ubuntu-18.04', 'ubuntu-20.04', 'ubuntu-22.04', 'ubuntu-24.04', 'debian-12'] as const;
export type OsId = (typeof OS_IDS)[number];

export interface OsRelease {
  readonly id: OsId;
  readonly name: string;
  /** The apt suite of its archive (and of Docker's repository for it). */
  readonly codename: string;
  /**
   * The cgroup hierarchy it boots with: `v1` (legacy or hybrid) or `v2` (unified only). The
   * kubelet supports cgroup v2 from 1.25 (GA) and refuses cgroup v1 from 1.35 (KEP-5573).
   */
  readonly cgroup: 'v1' | 'v2';
}

export const OS_RELEASES: Readonly<Record<OsId, OsRelease>> = {
  'ubuntu-18.04': { id: 'ubuntu-18.04', name: 'Ubuntu 18.04', codename: 'bionic', cgroup: 'v1' },
  'ubuntu-20.04': { id: 'ubuntu-20.04', name: 'Ubuntu 20.04', codename: 'focal', cgroup: 'v1' },
  'ubuntu-22.04': { id: 'ubuntu-22.04', name: 'Ubuntu 22.04', codename: 'jammy', cgroup: 'v2' },
  'ubuntu-24.04': { id: 'ubuntu-24.04', name: 'Ubuntu 24.04', codename: 'noble', cgroup: 'v2' },
  'debian-12': { id: 'debian-12', name: 'Debian 12', codename: 'bookworm', cgroup: 'v2' },
};

/** A cluster's `ubuntuRelease` as an OS id. */
export function osOfRelease(release: UbuntuRelease): OsId {
  return `ubuntu-${release}`;
}

/** Docker CE as the 1.18-era recipe installs it (dockershim, Kubernetes ≤ 1.23). */
export interface DockerPin {
  /** The Docker CE release line, e.g. `19.03`. */
  readonly version: string;
  /** The apt version pattern for docker-ce and docker-ce-cli (epoch 5 on download.docker.com). */
  readonly apt: string;
}

/** A CNI release: its version goes into the manifest URL (`{version}` in the CNI manifest setting). */
export interface CniRelease {
  readonly cni: Cni;
  readonly version: string;
}

export type KubernetesPackageSource = 'legacy' | 'pkgs.k8s.io';

export interface CompatibilityRow {
  /** Kubernetes minors (1.x), inclusive. */
  readonly kubernetes: readonly [number, number];
  readonly os: readonly OsId[];
  /** Runtimes this row allows; `containerd` comes from the OS archive, Docker CE is pinned. */
  readonly runtimes: { readonly docker?: DockerPin; readonly containerd?: 'os-archive' };
  readonly cnis: Partial<Readonly<Record<Cni, string>>>;
}

const CGROUP_V1: readonly OsId[] = ['ubuntu-18.04', 'ubuntu-20.04'];
const ALL_OS: readonly OsId[] = OS_IDS;
const CGROUP_V2: readonly OsId[] = ['ubuntu-22.04', 'ubuntu-24.04', 'debian-12'];
const DOCKER_19_03: DockerPin = { version: '19.03', apt: '5:19.03.*' };
const DOCKER_20_10: DockerPin = { version: '20.10', apt: '5:20.10.*' };
const WEAVE = 'v2.8.1';
const FLANNEL = 'v0.27.4';

export const COMPATIBILITY: readonly CompatibilityRow[] = [
  { kubernetes: [18, 20], os: CGROUP_V1, runtimes: { docker: DOCKER_19_03, containerd: 'os-archive' }, cnis: { weave: WEAVE, flannel: FLANNEL } },
  { kubernetes: [21, 23], os: CGROUP_V1, runtimes: { docker: DOCKER_20_10, containerd: 'os-archive' }, cnis: { weave: WEAVE, flannel: FLANNEL } },
  { kubernetes: [24, 24], os: CGROUP_V1, runtimes: { containerd: 'os-archive' }, cnis: { flannel: FLANNEL, calico: 'v3.26.4' } },
  { kubernetes: [25, 26], os: ALL_OS, runtimes: { containerd: 'os-archive' }, cnis: { flannel: FLANNEL, calico: 'v3.26.4' } },
  { kubernetes: [27, 28], os: ALL_OS, runtimes: { containerd: 'os-archive' }, cnis: { flannel: FLANNEL, calico: 'v3.28.2' } },
  { kubernetes: [29, 31], os: ALL_OS, runtimes: { containerd: 'os-archive' }, cnis: { flannel: FLANNEL, calico: 'v3.29.3' } },
  { kubernetes: [32, 34], os: ALL_OS, runtimes: { containerd: 'os-archive' }, cnis: { flannel: FLANNEL, calico: 'v3.31.3' } },
  { kubernetes: [35, 35], os: CGROUP_V2, runtimes: { containerd: 'os-archive' }, cnis: { flannel: FLANNEL, calico: 'v3.31.3' } },
];

export const KUBERNETES_MINORS: readonly [number, number] = [
  Math.min(...COMPATIBILITY.map((r) => r.kubernetes[0])),
  Math.max(...COMPATIBILITY.map((r) => r.kubernetes[1])),
];

/** The legacy repository (apt.kubernetes.io) only ever had versions before 1.24; pkgs.k8s.io starts at 1.24. */
export function kubernetesPackageSource(minor: number): KubernetesPackageSource {
  return minor < 24 ? 'legacy' : 'pkgs.k8s.io';
}

/** The apt version pattern of kubelet, kubeadm and kubectl for a Kubernetes version (`1.28.4-*`: any package revision). */
export function kubernetesAptPattern(version: string): string {
  return `${version.replace(/^v/, '')}-*`;
}

export interface ClusterSpec {
  readonly os: OsId;
  readonly kubernetesVersion: string;
  readonly containerRuntime: ContainerRuntime;
  readonly cni: Cni;
}

export interface Pins {
  readonly row: CompatibilityRow;
  readonly minor: number;
  readonly packages: KubernetesPackageSource;
  /** Docker CE when the runtime is docker, else null. */
  readonly docker: DockerPin | null;
  readonly cni: CniRelease;
}

/** The field an incompatibility is reported against (the API's names). */
export type SpecField = 'kubernetesVersion' | 'os' | 'containerRuntime' | 'cni';

export type Compatibility = { readonly ok: true; readonly pins: Pins } | { readonly ok: false; readonly field: SpecField; readonly message: string };

export function minorOf(version: string): number {
  const m = /^v?1\.(\d{1,3})\.\d{1,4}$/.exec(version);
  return m ? Number(m[1]) : Number.NaN;
}

const osName = (id: OsId): string => OS_RELEASES[id].name;
const list = (xs: readonly string[]): string => xs.join(', ');

function rowOf(minor: number): CompatibilityRow | undefined {
  return COMPATIBILITY.find((r) => minor >= r.kubernetes[0] && minor <= r.kubernetes[1]);
}

/** Why an OS release is not in a Kubernetes minor's row, in the operator's terms. */
function osReason(os: OsRelease, minor: number): string {
  if (os.cgroup === 'v2' && minor < 25) return `it boots with cgroup v2 only, which the kubelet supports from Kubernetes 1.25`;
  if (os.cgroup === 'v1' && minor >= 35) return `it boots with cgroup v1, which the kubelet refuses from Kubernetes 1.35`;
  return 'this pair is not in racksmith\'s compatibility table';
}

function minorsWith(pred: (r: CompatibilityRow) => boolean): string {
  const ranges = COMPATIBILITY.filter(pred).map((r) => r.kubernetes);
  const merged: [number, number][] = [];
  for (const [a, b] of ranges) {
    const last = merged[merged.length - 1];
    if (last && a === last[1] + 1) last[1] = b;
    else merged.push([a, b]);
  }
  return merged.map(([a, b]) => (a === b ? `1.${a}` : `1.${a} to 1.${b}`)).join(', ');
}

/**
 * Whether a cluster's Kubernetes version, OS release, runtime and CNI go together, and if so the
 * versions to install. The first mismatch is reported, in the order an operator would fix them.
 */
export function checkCompatibility(spec: ClusterSpec): Compatibility {
  const minor = minorOf(spec.kubernetesVersion);
  const [lo, hi] = KUBERNETES_MINORS;
  const row = Number.isInteger(minor) ? rowOf(minor) : undefined;
  if (!row) {
    return { ok: false, field: 'kubernetesVersion', message: `Kubernetes ${spec.kubernetesVersion} is not in racksmith's compatibility table: it supports 1.${lo} to 1.${hi}` };
  }
  if (!row.os.includes(spec.os)) {
    const os = OS_RELEASES[spec.os];
    return {
      ok: false,
      field: 'os',
      message: `Kubernetes 1.${minor} does not run on ${os.name}: ${osReason(os, minor)} (Kubernetes 1.${minor} runs on ${list(row.os.map(osName))}; ${os.name} runs Kubernetes ${minorsWith((r) => r.os.includes(spec.os))})`,
    };
  }
  if (spec.containerRuntime === 'docker' && !row.runtimes.docker) {
    return { ok: false, field: 'containerRuntime', message: `Kubernetes 1.24 and later have no dockershim: use containerd (Docker is supported for Kubernetes ${minorsWith((r) => r.runtimes.docker !== undefined)})` };
  }
  if (spec.containerRuntime === 'containerd' && !row.runtimes.containerd) {
    return { ok: false, field: 'containerRuntime', message: `containerd is not in racksmith's compatibility table for Kubernetes 1.${minor}` };
  }
  const cniVersion = row.cnis[spec.cni];
  if (!cniVersion) {
    const others = (Object.keys(row.cnis) as Cni[]).join(' or ');
    return { ok: false, field: 'cni', message: `${spec.cni} is not pinned for Kubernetes 1.${minor} (racksmith pins ${spec.cni} for Kubernetes ${minorsWith((r) => r.cnis[spec.cni] !== undefined)}): use ${others}` };
  }
  return {
    ok: true,
    pins: {
      row,
      minor,
      packages: kubernetesPackageSource(minor),
      docker: spec.containerRuntime === 'docker' ? (row.runtimes.docker ?? null) : null,
      cni: { cni: spec.cni, version: cniVersion },
    },
  };
}

/** The pins of a cluster already accepted; throws if the table no longer allows it (a downgraded racksmith). */
export function pinsOf(spec: ClusterSpec): Pins {
  const c = checkCompatibility(spec);
  if (!c.ok) throw new Error(c.message);
  return c.pins;
}

/**
 * The manifest URL of a CNI release: the setting's `{version}` is replaced by the pinned version;
 * a URL without it (a site mirror of one file) is used as it is.
 */
export function cniManifestUrl(setting: string, release: CniRelease): string {
  return setting.split('{version}').join(release.version);
}

/** A manifest URL that follows "latest" is not pinned: refused in the settings. */
export function floatingManifest(url: string): boolean {
  return /\/latest(\/|$)|[?&]version=latest\b/i.test(url);
}
