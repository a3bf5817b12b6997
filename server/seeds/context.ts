import type { Cluster, Machine } from '../inventory/model.js';
import type { ReleaseInstaller } from '../boot/releases.js';
import { conflict } from '../lib/errors.js';
import { checkCompatibility, kubernetesPackageSource, osOfRelease, type DockerPin } from '../clusters/compatibility.js';
import { vrrpFor } from '../orchestrator/lb-pair.js';
import { installVersion } from '../orchestrator/upgrade.js';

/**
 * The data every seed template sees, built once per request as a pure function of the machine,
 * its cluster (and the cluster's other machines, for the load balancer's backends) and the
 * settings. Templates never reach for anything else.
 */
export interface SeedSettings {
  readonly baseUrl: string;
  readonly sshUser: string;
  readonly sshPublicKey: string;
  readonly ubuntuMirror: string;
  readonly kubernetesRepo: string;
  readonly kubernetesLegacyRepo: string;
  readonly kubernetesLegacyGpgUrl: string;
  readonly dockerRepo: string;
  readonly dockerGpgUrl: string;
}

export interface KubernetesPackages {
  readonly version: string;
  readonly minor: number;
  readonly runtime: Cluster['containerRuntime'];
  /** Docker CE pinned for this Kubernetes version (the docker runtime only). */
  readonly docker: DockerPin | null;
  /** apt source: `deb [signed-by=…] <repo> <suite>`. */
  readonly repo: string;
  readonly suite: string;
  readonly keyUrl: string;
  readonly legacy: boolean;
}

export interface HaproxyContext {
  readonly frontendPort: number;
  readonly backends: readonly { name: string; address: string; port: number }[];
}

export const API_SERVER_PORT = 6443;

export function kubernetesMinorOf(version: string): number {
  return Number(version.replace(/^v/, '').split('.')[1]);
}

/**
 * Where kubelet/kubeadm/kubectl come from. pkgs.k8s.io has one repository per minor version and
 * only from v1.24 on; older versions were only ever in the legacy repository (apt.kubernetes.io,
 * suite kubernetes-xenial), removed upstream in 2024 — so its URL is a setting, for a mirror.
 */
export function kubernetesPackages(cluster: Cluster, s: SeedSettings): KubernetesPackages {
  const version = cluster.kubernetesVersion.replace(/^v/, '');
  const minor = kubernetesMinorOf(version);
  const compat = checkCompatibility({ os: osOfRelease(cluster.ubuntuRelease), kubernetesVersion: version, containerRuntime: cluster.containerRuntime, cni: cluster.cni });
  // A cluster stored before the compatibility table existed may fall outside it: say so, never render a guess.
  if (!compat.ok) throw conflict('ERR_INCOMPATIBLE', `cluster ${cluster.name}: ${compat.message} (change it with PATCH /api/v1/clusters/${cluster.name})`, compat.field);
  const docker = compat.pins.docker;
  const repo = kubernetesRepository(version, s);
  return { version, minor, runtime: cluster.containerRuntime, docker, ...repo };
}

export interface KubernetesRepository {
  /** apt source: `deb [signed-by=…] <repo> <suite>`. */
  readonly repo: string;
  readonly suite: string;
  readonly keyUrl: string;
  readonly legacy: boolean;
}

/**
 * Where kubelet/kubeadm/kubectl of a version come from: the legacy repository (suite
 * kubernetes-xenial) before 1.24, else pkgs.k8s.io's flat repository of the version's minor.
 */
export function kubernetesRepository(version: string, s: Pick<SeedSettings, 'kubernetesRepo' | 'kubernetesLegacyRepo' | 'kubernetesLegacyGpgUrl'>): KubernetesRepository {
  const minor = kubernetesMinorOf(version);
  if (kubernetesPackageSource(minor) === 'legacy') return { repo: s.kubernetesLegacyRepo, suite: 'kubernetes-xenial main', keyUrl: s.kubernetesLegacyGpgUrl, legacy: true };
  const base = `${s.kubernetesRepo.replace(/\/+$/, '')}/v1.${minor}/deb/`;
  return { repo: base, suite: '/', keyUrl: `${base}Release.key`, legacy: false };
}

/** The load balancer's backends: the cluster's control-plane machines that have an address. */
export function haproxyContext(cluster: Cluster, members: readonly Machine[]): HaproxyContext {
  const backends = members
    .filter((m) => m.cluster === cluster.name && m.role === 'control-plane' && m.ip)
    .sort((a, b) => (a.hostname ?? a.mac).localeCompare(b.hostname ?? b.mac))
    .map((m) => ({ name: m.hostname ?? m.mac.replace(/:/g, ''), address: m.ip as string, port: API_SERVER_PORT }));
  return { frontendPort: API_SERVER_PORT, backends };
}

export interface MirrorParts {
  readonly protocol: 'http' | 'https';
  readonly host: string;
  readonly directory: string;
}

/** d-i wants the mirror as protocol, host[:port] and directory. */
export function mirrorParts(mirror: string): MirrorParts {
  const u = new URL(mirror);
  return { protocol: u.protocol === 'https:' ? 'https' : 'http', host: u.host, directory: u.pathname.replace(/\/+$/, '') || '/' };
}

/**
 * Ubuntu's archive carries amd64 and i386 only; ARM64 machines install from ubuntu-ports. A site
 * mirror (any other URL) is taken as the operator gave it.
 */
export const UBUNTU_PORTS = 'http://ports.ubuntu.com/ubuntu-ports';
export function mirrorFor(arch: string | null, mirror: string): string {
  const archive = /^https?:\/\/archive\.ubuntu\.com\/ubuntu\/?$/.test(mirror);
  return arch === 'arm64' && archive ? UBUNTU_PORTS : mirror;
}

export function seedBaseUrl(baseUrl: string, token: string): string {
  return `${baseUrl}/seed/${token}/`;
}

/** `iid-<mac hex>-<install time in base 36>`: new on every install. */
export function newInstanceId(machine: Machine, now: Date): string {
  return `iid-${machine.mac.replace(/:/g, '')}-${now.getTime().toString(36)}`;
}

export interface SeedFacts {
  readonly machine: Machine;
  readonly cluster: Cluster;
  readonly members: readonly Machine[];
  readonly installer: ReleaseInstaller;
  readonly token: string;
  readonly instanceId: string;
}

export function seedContext(f: SeedFacts, s: SeedSettings): Record<string, unknown> {
  const seedUrl = seedBaseUrl(s.baseUrl, f.token);
  const role = f.machine.role;
  if (!role) throw new Error(`machine ${f.machine.mac} has no role`);
  return {
    mac: f.machine.mac,
    hostname: f.machine.hostname ?? f.machine.mac.replace(/:/g, ''),
    role,
    cluster: f.cluster.name,
    release: f.installer.release,
    installer: f.installer.kind,
    instanceId: f.instanceId,
    seedUrl,
    phoneHomeUrl: `${seedUrl}phone-home`,
    roleSetupUrl: `${seedUrl}role-setup`,
    sshUser: s.sshUser,
    sshPublicKey: s.sshPublicKey,
    mirror: mirrorParts(mirrorFor(f.machine.arch, s.ubuntuMirror)),
    repos: { docker: s.dockerRepo, dockerGpgUrl: s.dockerGpgUrl },
    // During a rolling upgrade, once the control plane moved on, a machine installs the new version.
    k8s: role === 'loadbalancer' ? null : kubernetesPackages({ ...f.cluster, kubernetesVersion: installVersion(f.cluster) }, s),
    haproxy: haproxyContext(f.cluster, f.members),
    // A load balancer of a pair: keepalived holds the VIP with its peer (roles/keepalived.conf.njk).
    vrrp: role === 'loadbalancer' ? vrrpFor(f.cluster, f.members, f.machine) : null,
  };
}
