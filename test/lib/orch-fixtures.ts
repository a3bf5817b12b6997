import type { Cluster, Machine, Role } from '../../server/inventory/model.js';
import type { MachineState } from '../../server/inventory/lifecycle.js';
import type { StepRecord } from '../../server/inventory/store.js';
import type { Mac } from '../../server/lib/mac.js';

/** Plain model objects for pure orchestration tests. */
export function cluster(over: Partial<Cluster> = {}): Cluster {
  return {
    name: 'lab',
    ubuntuRelease: '22.04',
    os: 'ubuntu-22.04',
    installMethod: 'autoinstall',
    installDiskRule: 'smallest',
    imageUrl: null,
    imageSha256: null,
    kubernetesVersion: '1.28.4',
    containerRuntime: 'containerd',
    cni: 'flannel',
    podSubnet: '10.244.0.0/16',
    serviceSubnet: '10.96.0.0/12',
    controlPlaneEndpoint: null,
    state: 'pending',
    createdAt: '2026-01-01T00:00:00.000Z',
    updatedAt: '2026-01-01T00:00:00.000Z',
    ...over,
  };
}

let macCounter = 0;
export function macOf(n: number): Mac {
  return `52:54:00:00:00:${n.toString(16).padStart(2, '0')}` as Mac;
}

export function machine(hostname: string, role: Role, state: MachineState, over: Partial<Machine> = {}): Machine {
  const n = over.ip ? Number(over.ip.split('.').at(-1)) : ++macCounter + 100;
  return {
    mac: macOf(n),
    hostname,
    role,
    cluster: 'lab',
    ip: `10.0.0.${n}`,
    rack: null,
    unit: null,
    powerState: null,
    powerStateAt: null,
    bmc: null,
    bmcFacts: null,
    state,
    failedFrom: null,
    failedStep: null,
    failedReason: null,
    arch: null,
    firmware: null,
    vendorClass: null,
    uuid: null,
    lastStep: null,
    bootLoader: null,
    secureBoot: null,
    secureBootSeen: null,
    bootfile: null,
    bootfileAt: null,
    loaderAt: null,
    instanceId: null,
    hostKeys: [],
    firstSeen: null,
    lastSeen: null,
    installDisk: null,
    installedDisk: null,
    installStartedAt: null,
    stateChangedAt: '2026-01-01T00:00:00.000Z',
    createdAt: '2026-01-01T00:00:00.000Z',
    updatedAt: '2026-01-01T00:00:00.000Z',
    ...over,
  };
}

let seq = 0;
export function step(id: string, kind: string, mac: Mac | null, state: StepRecord['state'], data: Record<string, unknown> = {}, over: Partial<StepRecord> = {}): StepRecord {
  return {
    cluster: 'lab',
    id,
    kind,
    mac,
    state,
    attempts: 1,
    startedAt: '2026-01-01T00:00:00.000Z',
    endedAt: state === 'running' ? null : '2026-01-01T00:00:01.000Z',
    output: [],
    error: state === 'failed' ? 'exited 1' : null,
    data,
    seq: ++seq,
    ...over,
  };
}
