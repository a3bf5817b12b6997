import type { Cluster, Machine, Role, UbuntuRelease } from '../../server/inventory/model.js';
import type { Mac } from '../../server/lib/mac.js';
import type { SeedSettings } from '../../server/seeds/context.js';
import type { BootSettings } from '../../server/boot/script.js';
import type { InstallMethod, OsId } from '../../server/inventory/os.js';

/**
 * Fixed inputs for rendering every seed and script deterministically: one cluster per release
 * (the 18.04 one is the original 1.18 + Docker recipe), a load balancer, two control-plane nodes
 * and a worker, a fixed token, instance id and SSH key.
 */
export const TOKEN = 'tok3n-Abcdefghijklmnopqrstuv';
export const INSTANCE_ID = 'iid-525400770011-lz3k9x1a';
export const SSH_KEY = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB0r2nY9Vq2cC3HfQbC7x9kV5m7c6b0cWm1bWfQk0c5d racksmith';
export const BASE_URL = 'http://10.77.0.1:8080';

export const SEED_SETTINGS: SeedSettings = {
  baseUrl: BASE_URL,
  sshUser: 'racksmith',
  sshPublicKey: SSH_KEY,
  ubuntuMirror: 'http://archive.ubuntu.com/ubuntu',
  debianMirror: 'http://deb.debian.org/debian',
  aptProxy: null,
  installDiskMinGb: 8,
  kubernetesRepo: 'https://pkgs.k8s.io/core:/stable:',
  kubernetesLegacyRepo: 'https://apt.kubernetes.io/',
  kubernetesLegacyGpgUrl: 'https://packages.cloud.google.com/apt/doc/apt-key.gpg',
  dockerRepo: 'https://download.docker.com/linux/ubuntu',
  dockerGpgUrl: 'https://download.docker.com/linux/ubuntu/gpg',
};

export const BOOT_SETTINGS: BootSettings = {
  baseUrl: BASE_URL,
  waitSeconds: 30,
  waitAttempts: 20,
  chainTries: 5,
  retrySeconds: 5,
  kernelArgs: ['console=ttyS0,115200'],
};

const KUBE: Record<UbuntuRelease, [string, Cluster['containerRuntime']]> = {
  '18.04': ['1.18.6', 'docker'],
  '20.04': ['1.26.15', 'containerd'],
  '22.04': ['1.28.4', 'containerd'],
  '24.04': ['1.31.2', 'containerd'],
};

const AT = '2025-01-01T00:00:00.000Z';

export function fixtureCluster(release: UbuntuRelease): Cluster {
  const [kubernetesVersion, containerRuntime] = KUBE[release];
  return {
    name: `lab${release.replace('.', '')}`,
    ubuntuRelease: release,
    os: `ubuntu-${release}`,
    installMethod: release === '18.04' ? 'preseed' : 'autoinstall',
    installDiskRule: 'smallest',
    imageUrl: null,
    imageSha256: null,
    kubernetesVersion,
    containerRuntime,
    cni: release === '18.04' ? 'weave' : 'flannel',
    podSubnet: null,
    serviceSubnet: null,
    controlPlaneEndpoint: null,
    state: 'pending',
    createdAt: AT,
    updatedAt: AT,
  };
}

/** A cluster of any OS and install method (Kubernetes 1.28 with containerd, Flannel). */
export function fixtureClusterOs(os: OsId, installMethod: InstallMethod): Cluster {
  return {
    ...fixtureCluster('22.04'),
    name: `lab-${os.replace(/[^a-z0-9]/g, '')}-${installMethod}`,
    ubuntuRelease: os.startsWith('ubuntu-') ? (os.slice(7) as UbuntuRelease) : null,
    os,
    installMethod,
  };
}

export function fixtureMachine(cluster: string, mac: string, hostname: string, role: Role, ip: string | null, state: Machine['state'] = 'provisioning'): Machine {
  return {
    mac: mac as Mac,
    hostname,
    role,
    cluster,
    ip,
    rack: 'r1',
    unit: null,
    powerState: null,
    powerStateAt: null,
    bmc: null,
    bmcFacts: null,
    state,
    failedFrom: null,
    failedStep: null,
    failedReason: null,
    arch: 'x86_64',
    firmware: 'bios',
    vendorClass: null,
    uuid: null,
    lastStep: null,
    bootLoader: null,
    secureBoot: null,
    secureBootSeen: null,
    bootfile: null,
    bootfileAt: null,
    loaderAt: null,
    instanceId: INSTANCE_ID,
    hostKeys: [],
    firstSeen: AT,
    lastSeen: AT,
    installDisk: null,
    installedDisk: null,
    installStartedAt: null,
    stateChangedAt: AT,
    createdAt: AT,
    updatedAt: AT,
  };
}

export function fixtureMembers(cluster: string): Machine[] {
  return [
    fixtureMachine(cluster, '52:54:00:77:00:10', 'lb1', 'loadbalancer', '10.77.0.10'),
    fixtureMachine(cluster, '52:54:00:77:00:11', 'cp1', 'control-plane', '10.77.0.11'),
    fixtureMachine(cluster, '52:54:00:77:00:12', 'cp2', 'control-plane', '10.77.0.12'),
    fixtureMachine(cluster, '52:54:00:77:00:13', 'cp3', 'control-plane', null),
    fixtureMachine(cluster, '52:54:00:77:00:21', 'worker1', 'worker', '10.77.0.21'),
  ];
}

export const ROLE_HOST: Record<Role, string> = { loadbalancer: 'lb1', 'control-plane': 'cp1', worker: 'worker1' };
