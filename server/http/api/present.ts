import { macReported } from '../../inventory/bmc-facts.js';
import type { Cluster, InventoryEvent, Machine, PlanMachine } from '../../inventory/model.js';
import type { ClusterOut, EventOut, MachineOut } from './responses.js';
import { bootStall, loaderOfBootfile } from '../../boot/loaders.js';
import { checkTopology } from '../../clusters/topology.js';
import { apiEndpoint } from '../../clusters/load-balancers.js';

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
      port: m.bmc.port ?? (m.bmc.driver === 'redfish' ? null : 623),
      username: m.bmc.username,
      cipherSuite: m.bmc.cipherSuite,
      passwordSet: m.bmc.hasPassword,
      ...(m.bmc.driver === 'redfish' ? { systemId: m.bmc.systemId, verifyTls: m.bmc.verifyTls, tlsFingerprint: m.bmc.tlsFingerprint } : {}),
      solCapture: m.bmc.solCapture,
    },
    // What the BMC reported at its last status call; macReported false flags a sheet/rack mismatch.
    bmcFacts: m.bmcFacts && { ...m.bmcFacts, macReported: macReported(m, m.bmcFacts) },
    state: m.state,
    failure: m.state === 'failed' ? { from: m.failedFrom, step: m.failedStep, reason: m.failedReason } : null,
    lastStep: m.lastStep,
    arch: m.arch,
    firmware: m.firmware,
    vendorClass: m.vendorClass,
    uuid: m.uuid,
    // The operator's settings (null: the site default / not known) and what racksmith saw.
    bootLoader: m.bootLoader,
    secureBoot: m.secureBoot,
    secureBootSeen: m.secureBootSeen,
    boot: {
      lastLoader: loaderOfBootfile(m.bootfile),
      bootfile: m.bootfile,
      bootfileAt: m.bootfileAt,
      loaderAt: m.loaderAt,
      stuck: bootStall(m, Date.now()),
    },
    hostKeys: m.hostKeys.map((k) => k.type),
    installDisk: m.installDisk,
    installedDisk: m.installedDisk,
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
export function effectiveEndpoint(c: Cluster, machines: readonly PlanMachine[]): string | null {
  return apiEndpoint(c, machines);
}

export const DEFAULT_POD_SUBNET: Record<Cluster['cni'], string> = {
  flannel: '10.244.0.0/16',
  calico: '192.168.0.0/16',
  weave: '10.32.0.0/12',
};
export const DEFAULT_SERVICE_SUBNET = '10.96.0.0/12';

export function presentCluster(c: Cluster, machines: readonly PlanMachine[]): ClusterOut {
  return {
    name: c.name,
    os: c.os,
    ubuntuRelease: c.ubuntuRelease,
    installMethod: c.installMethod,
    installDiskRule: c.installDiskRule,
    imageUrl: c.imageUrl,
    imageSha256: c.imageSha256,
    kubernetesVersion: c.kubernetesVersion,
    containerRuntime: c.containerRuntime,
    cni: c.cni,
    podSubnet: c.podSubnet ?? DEFAULT_POD_SUBNET[c.cni],
    serviceSubnet: c.serviceSubnet ?? DEFAULT_SERVICE_SUBNET,
    controlPlaneEndpoint: effectiveEndpoint(c, machines),
    vip: c.vip ?? null,
    state: c.state,
    machineCount: machines.length,
    /** Allowed but worth knowing: an even number of control-plane nodes (server/clusters/topology.ts). */
    warnings: checkTopology(c, machines.filter((m) => m.cluster === c.name)).warnings,
    createdAt: c.createdAt,
    updatedAt: c.updatedAt,
    ...(c.upgrade ? { upgrade: c.upgrade } : {}),
  };
}

export function presentEvent(e: InventoryEvent): EventOut {
  return { id: e.id, at: e.at, mac: e.mac, cluster: e.cluster, type: e.type, source: e.source, message: e.message, data: e.data };
}
