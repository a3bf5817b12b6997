import { join } from 'node:path';
import type { Cluster, Cni, Machine } from '../inventory/model.js';
import { PACKAGE_ROOT } from '../lib/paths.js';
import type { Renderer } from '../render/templates.js';
import { API_SERVER_PORT, type Backend } from './plan.js';

/**
 * The kubeadm configuration for `kubeadm init` on the first control node, one template per
 * kubeadm config API (kubeadm-config.v1beta3/v1beta4 reference pages): v1beta2 for 1.18–1.21, v1beta3 for 1.22–1.30,
 * v1beta4 from 1.31 (where extraArgs became a list of name/value pairs). Templates are data in
 * `kubeadm-templates/`; this module only chooses one and builds its context.
 */
export const KUBEADM_TEMPLATES_DIR = join(PACKAGE_ROOT, 'kubeadm-templates');
/** The haproxy configuration shared with the load balancer's role seed. */
export const HAPROXY_TEMPLATE = 'roles/haproxy.cfg.njk';

export type KubeadmApi = 'v1beta2' | 'v1beta3' | 'v1beta4';

export class KubeadmVersionError extends Error {
  readonly code = 'ERR_KUBERNETES_VERSION';
  constructor(version: string) {
    super(`Kubernetes ${version} is not supported: racksmith drives kubeadm 1.18 and later`);
    this.name = 'KubeadmVersionError';
  }
}

export function kubernetesMinor(version: string): number {
  const m = /^v?1\.(\d+)(\.\d+)?$/.exec(version);
  return m ? Number(m[1]) : Number.NaN;
}

export function kubeadmApiVersion(version: string): KubeadmApi {
  const minor = kubernetesMinor(version);
  if (!(minor >= 18)) throw new KubeadmVersionError(version);
  if (minor <= 21) return 'v1beta2';
  if (minor <= 30) return 'v1beta3';
  return 'v1beta4';
}

/**
 * Where kubelet finds the runtime. Docker means dockershim (only up to 1.23; the API refuses
 * docker from 1.24). kubeadm ≥ 1.22 warns about a socket without the `unix://` scheme, while
 * the 1.18-era docs and configs use a bare path.
 */
export function criSocket(cluster: Pick<Cluster, 'containerRuntime' | 'kubernetesVersion'>): string {
  const path = cluster.containerRuntime === 'docker' ? '/var/run/dockershim.sock' : '/var/run/containerd/containerd.sock';
  return kubeadmApiVersion(cluster.kubernetesVersion) === 'v1beta2' ? path : `unix://${path}`;
}

export interface KubeadmConfigInput {
  readonly cluster: Cluster;
  readonly endpoint: string;
  /** The first control node. */
  readonly node: { readonly name: string; readonly ip: string };
  readonly loadBalancer: Pick<Machine, 'hostname' | 'ip'> | null;
  readonly bootstrapToken: string;
  readonly certificateKey: string;
  readonly podSubnet: string;
  readonly serviceSubnet: string;
  readonly imageRepository: string;
}

/** The API fills these in at creation; they are the CNIs' own defaults (flannel's net-conf.json, Calico's default IPPool, Weave's IPALLOC_RANGE). */
export const DEFAULT_POD_SUBNET: Readonly<Record<Cni, string>> = { flannel: '10.244.0.0/16', calico: '192.168.0.0/16', weave: '10.32.0.0/12' };
export const DEFAULT_SERVICE_SUBNET = '10.96.0.0/12';

/** The bootstrap token's lifetime; the plan refreshes it before a join when it is near its end. */
export const TOKEN_TTL = '24h0m0s';
export const TOKEN_TTL_MS = 24 * 3600_000;

export function kubeadmConfigContext(input: KubeadmConfigInput): Record<string, unknown> {
  const apiVersion = kubeadmApiVersion(input.cluster.kubernetesVersion);
  const endpointHost = input.endpoint.replace(/:\d+$/, '');
  const sans = [endpointHost, input.loadBalancer?.ip, input.loadBalancer?.hostname].filter((s): s is string => typeof s === 'string' && s !== '');
  return {
    apiVersion,
    clusterName: input.cluster.name,
    kubernetesVersion: `v${input.cluster.kubernetesVersion.replace(/^v/, '')}`,
    token: input.bootstrapToken,
    tokenTtl: TOKEN_TTL,
    certificateKey: input.certificateKey,
    advertiseAddress: input.node.ip,
    bindPort: API_SERVER_PORT,
    nodeName: input.node.name,
    criSocket: criSocket(input.cluster),
    controlPlaneEndpoint: input.endpoint,
    imageRepository: input.imageRepository,
    certSANs: [...new Set(sans)],
    podSubnet: input.podSubnet,
    serviceSubnet: input.serviceSubnet,
  };
}

export function renderKubeadmConfig(renderer: Renderer, input: KubeadmConfigInput): string {
  const context = kubeadmConfigContext(input);
  return renderer.render(`${String(context['apiVersion'])}.yaml.njk`, context);
}

export class HaproxyConfigError extends Error {
  readonly code = 'ERR_HAPROXY_BACKEND';
  constructor(message: string) {
    super(message);
    this.name = 'HaproxyConfigError';
  }
}

/**
 * haproxy's `server` line takes the name and address as bare words, so they are checked here
 * (names are RFC 1123 host names already; this refuses anything that could break the line).
 */
export function renderHaproxyConfig(renderer: Renderer, backends: readonly Backend[], frontendPort = API_SERVER_PORT): string {
  for (const b of backends) {
    if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/.test(b.name)) throw new HaproxyConfigError(`backend name "${b.name.slice(0, 40)}" cannot go on a haproxy server line`);
    if (!/^\d{1,3}(\.\d{1,3}){3}$/.test(b.address)) throw new HaproxyConfigError(`backend address "${b.address.slice(0, 40)}" is not an IPv4 address`);
    if (!Number.isInteger(b.port) || b.port < 1 || b.port > 65535) throw new HaproxyConfigError(`backend port ${b.port} is out of range`);
  }
  return renderer.render(HAPROXY_TEMPLATE, { frontendPort, backends });
}
