import type { Cluster, Machine } from '../inventory/model.js';
import { API_SERVER_PORT, loadBalancersOf, type Member } from '../clusters/load-balancers.js';
import type { Renderer } from '../render/templates.js';

/**
 * A pair of load balancers sharing the API's virtual IP: the VRRP facts of each (who is the
 * preferred master, who its peer is), the keepalived configuration rendered from them, and the
 * health check keepalived runs against the local haproxy. Used by the orchestrator's
 * `lb-config` step and by the load balancer's role seed.
 */
export const KEEPALIVED_TEMPLATE = 'roles/keepalived.conf.njk';
export const KEEPALIVED_PATHS = {
  conf: '/etc/keepalived/keepalived.conf',
  check: '/etc/keepalived/racksmith-check-haproxy.sh',
} as const;

/**
 * The first load balancer by name wins the first election; with nopreempt it then keeps the VIP
 * until it fails. When both come up together, the election goes to whichever declares the master
 * down first, after three adverts and a skew of (256 − priority)/256 s (RFC 3768 §6.1): 200
 * against 100 is a 0.39 s head start (110 against 100 was 0.04 s, which a loaded host loses).
 */
const PRIORITY = { first: 200, second: 100 } as const;

export interface Vrrp {
  readonly vip: string;
  /** VRRP's virtual_router_id (1–255). With unicast peers it only has to differ within the pair's own adverts. */
  readonly routerId: number;
  readonly priority: number;
  /** This load balancer's own address (unicast_src_ip). */
  readonly self: string;
  readonly peers: readonly string[];
}

/** The VRRP facts of one load balancer of its cluster's pair; null when the cluster has no pair with a VIP. */
export function vrrpFor(cluster: Pick<Cluster, 'name' | 'vip'>, machines: readonly Member[], lb: Pick<Machine, 'mac'>): Vrrp | null {
  const lbs = loadBalancersOf(cluster, machines);
  if (!cluster.vip || lbs.length !== 2 || lbs.some((m) => !m.ip)) return null;
  const i = lbs.findIndex((m) => m.mac === lb.mac);
  if (i < 0) return null;
  const self = lbs[i] as Member;
  const peer = lbs[1 - i] as Member;
  return { vip: cluster.vip, routerId: routerIdOf(cluster.vip), priority: i === 0 ? PRIORITY.first : PRIORITY.second, self: self.ip as string, peers: [peer.ip as string] };
}

/** The VIP's last octet (1–254 for any usable host address), so pairs of one /24 never share an id. */
export function routerIdOf(vip: string): number {
  const last = Number(vip.split('.').at(-1));
  return Number.isInteger(last) && last >= 1 && last <= 255 ? last : 51;
}

export class KeepalivedConfigError extends Error {
  readonly code = 'ERR_KEEPALIVED_CONFIG';
  constructor(message: string) {
    super(message);
    this.name = 'KeepalivedConfigError';
  }
}

const IPV4 = /^\d{1,3}(\.\d{1,3}){3}$/;

export function renderKeepalivedConfig(renderer: Renderer, v: Vrrp, ctx: { readonly cluster: string; readonly hostname: string }): string {
  for (const a of [v.vip, v.self, ...v.peers]) if (!IPV4.test(a)) throw new KeepalivedConfigError(`"${a.slice(0, 40)}" is not an IPv4 address`);
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/.test(ctx.hostname)) throw new KeepalivedConfigError(`host name "${ctx.hostname.slice(0, 40)}" cannot be a keepalived router_id`);
  return renderer.render(KEEPALIVED_TEMPLATE, { ...v, cluster: ctx.cluster, hostname: ctx.hostname, frontendPort: API_SERVER_PORT, checkScript: KEEPALIVED_PATHS.check });
}

/**
 * keepalived's health check: the local haproxy accepts a TCP connection on the API port in this
 * network namespace (a process check would also see other namespaces' haproxy). When no control
 * node is up both checks still pass, so the VIP stays where it is. Three failures 2 s apart (a
 * refused connection fails at once) move the VIP; a slow machine's slow check does not.
 */
export const CHECK_SCRIPT = `#!/bin/bash
# racksmith: healthy while the local haproxy accepts connections on the Kubernetes API port.
exec timeout 4 bash -c '</dev/tcp/127.0.0.1/${API_SERVER_PORT}'
`;

/**
 * Shell lines that fill @LB_INTERFACE@ and @LB_PREFIX@ in a keepalived configuration with the
 * interface holding `address` and its prefix length, on the machine itself.
 */
export function fillInterfaceLines(file: string, address: string): string[] {
  if (!IPV4.test(address)) throw new KeepalivedConfigError(`"${address.slice(0, 40)}" is not an IPv4 address`);
  return [
    `lb_if=$(ip -o -4 addr show | awk -v ip='${address}' '{split($4, a, "/"); if (a[1] == ip) { print $2 " " a[2]; exit }}')`,
    `[ -n "$lb_if" ] || { echo "no interface holds ${address}: keepalived cannot announce the VIP" >&2; exit 1; }`,
    `sed -i -e "s/@LB_INTERFACE@/\${lb_if% *}/g" -e "s/@LB_PREFIX@/\${lb_if#* }/g" '${file}'`,
  ];
}
