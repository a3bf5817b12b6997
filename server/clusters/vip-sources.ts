import { networkInterfaces } from 'node:os';
import type { Config } from '../config/settings.js';
import { parseRange } from '../lib/ipv4.js';
import type { Inventory } from '../inventory/store.js';
import type { VipFacts, VipSources } from './load-balancers.js';

/**
 * The provisioning network as racksmith sees it: its address and mask on the DHCP interface,
 * else on the interface holding the advertise address. Null when neither is known (the VIP is
 * then only checked against machines, clusters, the pool and the leases).
 */
export function provisioningNetwork(config: Pick<Config, 'dhcpInterface' | 'advertiseAddress' | 'dhcpNetmask'>): VipFacts['network'] {
  const all = networkInterfaces();
  const v4 = Object.entries(all).flatMap(([name, addrs]) => (addrs ?? []).filter((a) => a.family === 'IPv4' && !a.internal).map((a) => ({ name, ...a })));
  const hit = (config.dhcpInterface ? v4.find((a) => a.name === config.dhcpInterface) : undefined) ?? (config.advertiseAddress ? v4.find((a) => a.address === config.advertiseAddress) : undefined);
  if (!hit) return null;
  return { address: hit.address, netmask: config.dhcpNetmask ?? hit.netmask };
}

export function vipSources(inventory: Pick<Inventory, 'machines' | 'clusters' | 'leases'>, config: Pick<Config, 'dhcpInterface' | 'advertiseAddress' | 'dhcpNetmask' | 'dhcpRange' | 'dhcpMode'>): VipSources {
  return {
    network: provisioningNetwork(config),
    pool: config.dhcpMode === 'authoritative' && config.dhcpRange ? parseRange(config.dhcpRange) : null,
    machines: () => inventory.machines.planFacts(),
    clusters: () => inventory.clusters.list(),
    async leasedTo(ip) {
      const l = await inventory.leases.byIp(ip);
      return l?.state === 'bound' && Date.parse(l.expiresAt) > Date.now() ? l.mac : null;
    },
  };
}
