import type { Cluster, InventoryEvent, Machine } from '../../inventory/model.js';
import type { ClusterOut, EventOut, MachineOut } from './responses.js';

/**
 * The user-facing JSON of inventory objects, kept apart from the model. Write-only fields (BMC
 * password, seed token) have no path out of here.
 */
export function presentMachine(m: Machine): MachineOut {
  return {
    mac: m.mac,
    hostname: m.hostname,
    role: m.role,
    cluster: m.cluster,
    ip: m.ip,
    rack: m.rack,
    unit: m.unit,
    bmc: m.bmc && {
      driver: m.bmc.driver,
      address: m.bmc.address,
      port: m.bmc.port ?? 623,
      username: m.bmc.username,
      cipherSuite: m.bmc.cipherSuite,
      passwordSet: m.bmc.hasPassword,
    },
    state: m.state,
    failure: m.state === 'failed' ? { from: m.failedFrom, step: m.failedStep, reason: m.failedReason } : null,
    lastStep: m.lastStep,
    arch: m.arch,
    firmware: m.firmware,
    vendorClass: m.vendorClass,
    uuid: m.uuid,
    hostKeys: m.hostKeys.map((k) => k.type),
    firstSeen: m.firstSeen,
    lastSeen: m.lastSeen,
    stateChangedAt: m.stateChangedAt,
    createdAt: m.createdAt,
    updatedAt: m.updatedAt,
    powerState: m.powerState,
    powerStateAt: m.powerStateAt,
  };
}

/** The endpoint workers and kubectl use: explicit, else the load balancer's address on :6443. */
export function effectiveEndpoint(c: Cluster, machines: readonly Machine[]): string | null {
  if (c.controlPlaneEndpoint) return c.controlPlaneEndpoint;
  const lb = machines.find((m) => m.cluster === c.name && m.role === 'loadbalancer' && m.ip);
  return lb?.ip ? `${lb.ip}:6443` : null;
}

export const DEFAULT_POD_SUBNET: Record<Cluster['cni'], string> = {
  flannel: '10.244.0.0/16',
  calico: '192.168.0.0/16',
  weave: '10.32.0.0/12',
};
export const DEFAULT_SERVICE_SUBNET = '10.96.0.0/12';

export function presentCluster(c: Cluster, machines: readonly Machine[]): ClusterOut {
  return {
    name: c.name,
    ubuntuRelease: c.ubuntuRelease,
    kubernetesVersion: c.kubernetesVersion,
    containerRuntime: c.containerRuntime,
    cni: c.cni,
    podSubnet: c.podSubnet ?? DEFAULT_POD_SUBNET[c.cni],
    serviceSubnet: c.serviceSubnet ?? DEFAULT_SERVICE_SUBNET,
    controlPlaneEndpoint: effectiveEndpoint(c, machines),
    state: c.state,
    machineCount: machines.length,
    createdAt: c.createdAt,
    updatedAt: c.updatedAt,
  };
}

export function presentEvent(e: InventoryEvent): EventOut {
  return { id: e.id, at: e.at, mac: e.mac, cluster: e.cluster, type: e.type, source: e.source, message: e.message, data: e.data };
}
