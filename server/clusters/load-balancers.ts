import { ipToInt, parseIPv4, type IPv4Range } from '../lib/ipv4.js';
import type { Cluster, Machine } from '../inventory/model.js';

/**
 * Facts about a cluster's shape that the API, the seeds, the orchestrator and the power service
 * all read: its load balancers (one, or a pair sharing a virtual IP), the endpoint kubeadm and
 * kubectl use, and whether an address may serve as the VIP. Pure functions over plain facts.
 */
export const API_SERVER_PORT = 6443;

const nameOf = (m: Pick<Machine, 'hostname' | 'mac'>): string => m.hostname ?? m.mac;
/** What the load-balancer rules read of a machine. */
export type Member = Pick<Machine, 'mac' | 'hostname' | 'role' | 'cluster' | 'ip'>;
const byName = (a: Member, b: Member): number => nameOf(a).localeCompare(nameOf(b)) || a.mac.localeCompare(b.mac);

/** The cluster's load balancers, in name order (the first is the preferred VRRP master). */
export function loadBalancersOf<M extends Member>(cluster: Pick<Cluster, 'name'>, machines: readonly M[]): M[] {
  return machines.filter((m) => m.cluster === cluster.name && m.role === 'loadbalancer').sort(byName);
}

/**
 * The endpoint joins and kubectl use: explicit, else the VIP of a load-balancer pair, else the
 * single load balancer's address — always on :6443.
 */
export function apiEndpoint(cluster: Pick<Cluster, 'name' | 'controlPlaneEndpoint' | 'vip'>, machines: readonly Member[]): string | null {
  if (cluster.controlPlaneEndpoint) return cluster.controlPlaneEndpoint;
  if (cluster.vip) return `${cluster.vip}:${API_SERVER_PORT}`;
  const lb = loadBalancersOf(cluster, machines).find((m) => m.ip);
  return lb?.ip ? `${lb.ip}:${API_SERVER_PORT}` : null;
}

/**
 * The load-balancer rule: one load balancer, or two sharing a VIP (keepalived moves the VIP to
 * the one that is up). Returns what is wrong, or null. Counts only what is there: a cluster
 * still being set up with no load balancer yet is not refused here.
 */
export function loadBalancerProblem(cluster: Pick<Cluster, 'name' | 'vip'>, machines: readonly Member[]): string | null {
  const lbs = loadBalancersOf(cluster, machines);
  if (lbs.length > 2) return `cluster ${cluster.name} has ${lbs.length} load balancers: at most two (a pair sharing a vip)`;
  if (lbs.length === 2 && !cluster.vip) return `cluster ${cluster.name} has two load balancers but no vip: set the cluster's vip (an unused address in the provisioning network) so they can share it`;
  if (lbs.length === 2) {
    const bare = lbs.filter((m) => !m.ip).map(nameOf);
    if (bare.length) return `load balancer(s) ${bare.join(', ')} of cluster ${cluster.name} have no ip: the pair's VRRP peers need fixed addresses`;
  }
  return null;
}

/** What the VIP check knows of the site. */
export interface VipFacts {
  /** The provisioning network (racksmith's address on it and its mask); null when unknown (DHCP off, no interface). */
  readonly network: { readonly address: string; readonly netmask: string } | null;
  /** The DHCP pool handed out in authoritative mode. */
  readonly pool: IPv4Range | null;
  /** Every machine of the inventory. */
  readonly machines: readonly Pick<Machine, 'mac' | 'ip' | 'hostname'>[];
  /** Every other cluster's VIP. */
  readonly otherVips: readonly { readonly cluster: string; readonly vip: string }[];
  /** The MAC holding a bound DHCP lease on the address, if any. */
  readonly leasedTo: string | null;
}

export interface VipProblem {
  readonly reason: string;
  /** The address is taken (a machine, another cluster, a lease): a conflict, not bad input. */
  readonly taken: boolean;
}

/** Why `vip` cannot be a cluster's virtual IP, or null when it can. */
export function vipProblem(vip: string, f: VipFacts): VipProblem | null {
  const bad = (reason: string): VipProblem => ({ reason, taken: false });
  const taken = (reason: string): VipProblem => ({ reason, taken: true });
  if (parseIPv4(vip) === null) return bad(`${vip} is not an IPv4 address`);
  const v = ipToInt(vip);
  if (f.network) {
    const mask = ipToInt(f.network.netmask);
    const net = (ipToInt(f.network.address) & mask) >>> 0;
    const broadcast = (net | (~mask >>> 0)) >>> 0;
    if (((v & mask) >>> 0) !== net) return bad(`${vip} is outside the provisioning network (${f.network.address} mask ${f.network.netmask}): both load balancers must be able to hold it`);
    if (v === net || v === broadcast) return bad(`${vip} is the provisioning network's ${v === net ? 'network' : 'broadcast'} address`);
    if (vip === f.network.address) return taken(`${vip} is racksmith's own address`);
  }
  if (f.pool && v >= ipToInt(f.pool.start) && v <= ipToInt(f.pool.end)) return bad(`${vip} is inside the DHCP pool ${f.pool.start}-${f.pool.end}: the server could lease it to a machine`);
  const owner = f.machines.find((m) => m.ip === vip);
  if (owner) return taken(`${vip} is machine ${nameOf(owner)}'s address`);
  const other = f.otherVips.find((o) => o.vip === vip);
  if (other) return taken(`${vip} is already the vip of cluster ${other.cluster}`);
  if (f.leasedTo) return taken(`${vip} is leased to ${f.leasedTo}`);
  return null;
}

/** Where the VIP check reads its facts; `main.ts` builds it from the settings and the store. */
export interface VipSources {
  readonly network: VipFacts['network'];
  readonly pool: IPv4Range | null;
  machines(): Promise<readonly Pick<Machine, 'mac' | 'ip' | 'hostname'>[]>;
  clusters(): Promise<readonly Pick<Cluster, 'name' | 'vip'>[]>;
  /** The MAC with a bound lease on the address. */
  leasedTo(ip: string): Promise<string | null>;
}

export function vipChecker(src: VipSources): (vip: string, cluster: string) => Promise<VipProblem | null> {
  return async (vip, cluster) => {
    const [machines, clusters, leasedTo] = await Promise.all([src.machines(), src.clusters(), src.leasedTo(vip)]);
    const otherVips = clusters.filter((c) => c.name !== cluster && c.vip).map((c) => ({ cluster: c.name, vip: c.vip as string }));
    return vipProblem(vip, { network: src.network, pool: src.pool, machines, otherVips, leasedTo });
  };
}

/**
 * Reimaging a load balancer takes it down for the whole reinstall. With a pair the other one
 * holds the VIP, so that is allowed while it is healthy (`joined`); reimaging the only load
 * balancer, or the last healthy one, takes the API away and needs `force`.
 */
export function loadBalancerReimageProblem(target: Pick<Machine, 'mac' | 'role' | 'cluster'>, machines: readonly Machine[]): string | null {
  if (target.role !== 'loadbalancer' || !target.cluster) return null;
  const lbs = machines.filter((m) => m.cluster === target.cluster && m.role === 'loadbalancer');
  const others = lbs.filter((m) => m.mac !== target.mac);
  if (others.length === 0) return `it is the only load balancer of cluster ${target.cluster}: the Kubernetes API is unreachable through the endpoint until it is reinstalled`;
  if (!others.some((m) => m.state === 'joined')) {
    return `it is the last healthy load balancer of cluster ${target.cluster} (${others.map((m) => `${nameOf(m)} is ${m.state}`).join(', ')}): the VIP has nowhere to go while it is reinstalled`;
  }
  return null;
}
