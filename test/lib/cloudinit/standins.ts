import type { DebFile, DebSpec } from './debs.js';

/**
 * Stand-ins for the packages the test cannot take from the internet: kubelet/kubeadm/kubectl
 * (with cri-tools and kubernetes-cni, which kubeadm pulls in) and Docker's docker-ce,
 * docker-ce-cli and containerd.io. Each has the real package's name, version string and
 * package-to-package dependencies, installs its systemd units and configuration files where the
 * real one does (so the role config's edits of them are really exercised), and small scripts
 * in place of the programs: they answer `--version`-style questions the way the real programs
 * do, and refuse anything that would need a running cluster or daemon, saying so.
 */

export type KubernetesRepoStyle = 'legacy' | 'pkgs';

/** `1.18.6` → `1.18.6-00` (apt.kubernetes.io), `1.30.6` → `1.30.6-1.1` (pkgs.k8s.io). */
export function kubernetesDebVersion(version: string, style: KubernetesRepoStyle): string {
  if (!/^\d+\.\d+\.\d+$/.test(version)) throw new Error(`expected a Kubernetes version like 1.30.6, got ${version}`);
  return style === 'legacy' ? `${version}-00` : `${version}-1.1`;
}

export function kubernetesMinor(version: string): string {
  const m = /^(\d+)\.(\d+)\./.exec(version);
  if (!m) throw new Error(`expected a Kubernetes version like 1.30.6, got ${version}`);
  return `${m[1]}.${m[2]}`;
}

/** The next-but-one patch release: a newer package in the mirror, so an unpinned install shows. */
export function newerPatch(version: string): string {
  const [maj, min, patch] = version.split('.').map(Number);
  return `${maj}.${min}.${(patch ?? 0) + 2}`;
}

const sh = (body: string): string => `#!/bin/sh\n${body.trim()}\n`;

function refuse(program: string, what: string): string {
  return `echo "${program} stand-in (racksmith cloud-init test): '$*' ${what}" >&2\nexit 1`;
}

/** What debhelper's dh_installsystemd generates: enable the unit, start it only under systemd. */
function enableUnitPostinst(units: readonly string[], extra = ''): string {
  const lines = units.map(
    (u) => `  deb-systemd-helper unmask ${u} >/dev/null || true
  deb-systemd-helper enable ${u} >/dev/null || true`,
  );
  const starts = units.map((u) => `    deb-systemd-invoke start ${u} >/dev/null || true`);
  return sh(`
set -e
if [ "$1" = configure ]; then
${extra}${lines.join('\n')}
  if [ -d /run/systemd/system ]; then
    systemctl --system daemon-reload >/dev/null || true
${starts.join('\n')}
  fi
fi`);
}

const KUBELET_UNIT = `[Unit]
Description=kubelet: The Kubernetes Node Agent
Documentation=https://kubernetes.io/docs/
Wants=network-online.target
After=network-online.target

[Service]
ExecStart=/usr/bin/kubelet
Restart=always
StartLimitInterval=0
RestartSec=10

[Install]
WantedBy=multi-user.target
`;

const KUBEADM_DROPIN = `# Note: This dropin only works with kubeadm and kubelet v1.11+
[Service]
Environment="KUBELET_KUBECONFIG_ARGS=--bootstrap-kubeconfig=/etc/kubernetes/bootstrap-kubelet.conf --kubeconfig=/etc/kubernetes/kubelet.conf"
Environment="KUBELET_CONFIG_ARGS=--config=/var/lib/kubelet/config.yaml"
EnvironmentFile=-/var/lib/kubelet/kubeadm-flags.env
EnvironmentFile=-/etc/default/kubelet
ExecStart=
ExecStart=/usr/bin/kubelet $KUBELET_KUBECONFIG_ARGS $KUBELET_CONFIG_ARGS $KUBELET_KUBEADM_ARGS $KUBELET_EXTRA_ARGS
`;

/** kubelet, kubeadm, kubectl at one version, plus the cri-tools and kubernetes-cni they need. */
export function kubernetesPackages(version: string, style: KubernetesRepoStyle): DebSpec[] {
  const deb = kubernetesDebVersion(version, style);
  const minor = kubernetesMinor(version);
  const v = `v${version}`;
  // pkgs.k8s.io packages put units under /usr/lib, the legacy ones under /lib and /etc.
  const unitDir = style === 'legacy' ? '/lib/systemd/system' : '/usr/lib/systemd/system';
  const dropinDir = style === 'legacy' ? '/etc/systemd/system/kubelet.service.d' : '/usr/lib/systemd/system/kubelet.service.d';
  const cniVersion = style === 'legacy' ? '0.8.7-00' : '1.4.0-1.1';
  const criVersion = style === 'legacy' ? '1.13.0-01' : `${minor}.1-1.1`;
  const gitInfo = `&version.Info{Major:"${version.split('.')[0]}", Minor:"${version.split('.')[1]}", GitVersion:"${v}", GitCommit:"0000000000000000000000000000000000000000", GitTreeState:"clean", BuildDate:"2024-10-22T20:33:34Z", GoVersion:"go1.22.8", Compiler:"gc", Platform:"linux/amd64"}`;
  const cniPlugins: DebFile[] = ['bridge', 'host-local', 'loopback', 'portmap'].map((p) => ({
    path: `/opt/cni/bin/${p}`,
    content: sh(`echo '{"cniVersion":"1.0.0","supportedVersions":["0.3.0","0.3.1","0.4.0","1.0.0"]}'`),
    mode: 0o755,
  }));
  return [
    {
      name: 'kubernetes-cni',
      version: cniVersion,
      architecture: 'amd64',
      description: 'Binaries required to provision kubernetes container networking',
      files: cniPlugins,
    },
    {
      name: 'cri-tools',
      version: criVersion,
      architecture: 'amd64',
      description: 'Command-line utility for interacting with a container runtime',
      files: [{ path: '/usr/bin/crictl', content: sh(`case "$1" in --version|-v) echo "crictl version v${criVersion.split('-')[0]}"; exit 0;; esac\n${refuse('crictl', 'needs a running container runtime')}`), mode: 0o755 }],
    },
    {
      name: 'kubelet',
      version: deb,
      architecture: 'amd64',
      description: 'Kubernetes Node Agent',
      depends: ['iptables (>= 1.4.21)', `kubernetes-cni (>= ${style === 'legacy' ? '0.8.6' : '1.1.1'})`, 'iproute2', 'socat', 'util-linux', 'mount', 'ebtables', 'ethtool', 'conntrack'],
      files: [
        { path: '/usr/bin/kubelet', content: sh(`case "$1" in --version) echo "Kubernetes ${v}"; exit 0;; esac\n${refuse('kubelet', 'cannot run a node agent here')}`), mode: 0o755 },
        { path: `${unitDir}/kubelet.service`, content: KUBELET_UNIT },
      ],
      postinst: enableUnitPostinst(['kubelet.service']),
    },
    {
      name: 'kubectl',
      version: deb,
      architecture: 'amd64',
      description: 'Kubernetes Command Line Tool',
      files: [
        {
          path: '/usr/bin/kubectl',
          content: sh(`if [ "$1" = version ] && [ "$2" = --client ]; then echo "Client Version: ${v}"; exit 0; fi\n${refuse('kubectl', 'needs a cluster')}`),
          mode: 0o755,
        },
      ],
    },
    {
      name: 'kubeadm',
      version: deb,
      architecture: 'amd64',
      description: 'Kubernetes Cluster Bootstrapping Tool',
      depends: ['kubelet (>= 1.13.0)', 'kubectl (>= 1.13.0)', `kubernetes-cni (>= ${style === 'legacy' ? '0.8.6' : '1.1.1'})`, `cri-tools (>= ${style === 'legacy' ? '1.13.0' : '1.25.0'})`],
      files: [
        {
          path: '/usr/bin/kubeadm',
          content: sh(`
if [ "$1" = version ]; then
  if [ "$2" = -o ] && [ "$3" = short ]; then echo "${v}"; else echo 'kubeadm version: ${gitInfo}'; fi
  exit 0
fi
${refuse('kubeadm', 'is the orchestrator\'s job, not the role config\'s')}`),
          mode: 0o755,
        },
        { path: `${dropinDir}/10-kubeadm.conf`, content: KUBEADM_DROPIN },
      ],
      conffiles: style === 'legacy' ? [`${dropinDir}/10-kubeadm.conf`] : [],
    },
  ];
}

/** The configuration file Docker's containerd.io package ships: the CRI plugin is turned off. */
export const CONTAINERD_IO_PACKAGED_CONFIG = `#   Copyright 2018-2022 Docker Inc.

#   Licensed under the Apache License, Version 2.0 (the "License");
#   you may not use this file except in compliance with the License.
#   You may obtain a copy of the License at

#       http://www.apache.org/licenses/LICENSE-2.0

#   Unless required by applicable law or agreed to in writing, software
#   distributed under the License is distributed on an "AS IS" BASIS,
#   WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
#   See the License for the specific language governing permissions and
#   limitations under the License.

disabled_plugins = ["cri"]

#root = "/var/lib/containerd"
#state = "/run/containerd"
#subreaper = true
#oom_score = 0

#[grpc]
#  address = "/run/containerd/containerd.sock"
#  uid = 0
#  gid = 0

#[debug]
#  address = "/run/containerd/debug.sock"
#  uid = 0
#  gid = 0
#  level = "info"
`;

/**
 * The shape of `containerd config default` from containerd 1.6/1.7 (config version 2): the CRI
 * plugin enabled, and the runc runtime's `SystemdCgroup = false` — the line kubeadm guides sed to
 * `true`. Abridged to the sections a node's configuration touches, in the real order and layout.
 */
export const CONTAINERD_DEFAULT_CONFIG = `disabled_plugins = []
imports = []
oom_score = 0
plugin_dir = ""
required_plugins = []
root = "/var/lib/containerd"
state = "/run/containerd"
temp = ""
version = 2

[cgroup]
  path = ""

[debug]
  address = ""
  format = ""
  gid = 0
  level = ""
  uid = 0

[grpc]
  address = "/run/containerd/containerd.sock"
  gid = 0
  max_recv_message_size = 16777216
  max_send_message_size = 16777216
  tcp_address = ""
  tcp_tls_ca = ""
  tcp_tls_cert = ""
  tcp_tls_key = ""
  uid = 0

[metrics]
  address = ""
  grpc_histogram = false

[plugins]

  [plugins."io.containerd.gc.v1.scheduler"]
    deletion_threshold = 0
    mutation_threshold = 100
    pause_threshold = 0.02
    schedule_delay = "0s"
    startup_delay = "100ms"

  [plugins."io.containerd.grpc.v1.cri"]
    device_ownership_from_security_context = false
    disable_apparmor = false
    disable_cgroup = false
    disable_hugetlb_controller = true
    disable_proc_mount = false
    disable_tcp_service = true
    enable_selinux = false
    enable_tls_streaming = false
    max_concurrent_downloads = 3
    max_container_log_line_size = 16384
    restrict_oom_score_adj = false
    sandbox_image = "registry.k8s.io/pause:3.8"
    stream_server_address = "127.0.0.1"
    stream_server_port = "0"

    [plugins."io.containerd.grpc.v1.cri".cni]
      bin_dir = "/opt/cni/bin"
      conf_dir = "/etc/cni/net.d"
      conf_template = ""
      max_conf_num = 1

    [plugins."io.containerd.grpc.v1.cri".containerd]
      default_runtime_name = "runc"
      disable_snapshot_annotations = true
      discard_unpacked_layers = false
      no_pivot = false
      snapshotter = "overlayfs"

      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes]

        [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
          base_runtime_spec = ""
          cni_conf_dir = ""
          cni_max_conf_num = 0
          container_annotations = []
          pod_annotations = []
          privileged_without_host_devices = false
          runtime_engine = ""
          runtime_path = ""
          runtime_root = ""
          runtime_type = "io.containerd.runc.v2"

          [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
            BinaryName = ""
            CriuImagePath = ""
            CriuPath = ""
            CriuWorkPath = ""
            IoGid = 0
            IoUid = 0
            NoNewKeyring = false
            NoPivotRoot = false
            Root = ""
            ShimCgroup = ""
            SystemdCgroup = false

    [plugins."io.containerd.grpc.v1.cri".registry]
      config_path = ""

  [plugins."io.containerd.internal.v1.opt"]
    path = "/opt/containerd"

  [plugins."io.containerd.runtime.v2.task"]
    platforms = ["linux/amd64"]
    sched_core = false

  [plugins."io.containerd.snapshotter.v1.overlayfs"]
    root_path = ""
    upperdir_label = false

[timeouts]
  "io.containerd.timeout.bolt.open" = "0s"
  "io.containerd.timeout.shim.cleanup" = "5s"
  "io.containerd.timeout.shim.load" = "5s"
  "io.containerd.timeout.shim.shutdown" = "3s"
  "io.containerd.timeout.task.state" = "2s"

[ttrpc]
  address = ""
  gid = 0
  uid = 0
`;

const CONTAINERD_UNIT = `[Unit]
Description=containerd container runtime
Documentation=https://containerd.io
After=network.target local-fs.target

[Service]
ExecStartPre=-/sbin/modprobe overlay
ExecStart=/usr/bin/containerd
Type=notify
Delegate=yes
KillMode=process
Restart=always
RestartSec=5
LimitNPROC=infinity
LimitCORE=infinity
TasksMax=infinity
OOMScoreAdjust=-999

[Install]
WantedBy=multi-user.target
`;

const DOCKER_UNIT = `[Unit]
Description=Docker Application Container Engine
Documentation=https://docs.docker.com
After=network-online.target docker.socket firewalld.service containerd.service time-set.target
Wants=network-online.target containerd.service
Requires=docker.socket

[Service]
Type=notify
ExecStart=/usr/bin/dockerd -H fd:// --containerd=/run/containerd/containerd.sock
ExecReload=/bin/kill -s HUP $MAINPID
TimeoutStartSec=0
RestartSec=2
Restart=always
LimitNOFILE=infinity
LimitNPROC=infinity
LimitCORE=infinity
TasksMax=infinity
Delegate=yes
KillMode=process
OOMScoreAdjust=-500

[Install]
WantedBy=multi-user.target
`;

const DOCKER_SOCKET = `[Unit]
Description=Docker Socket for the API

[Socket]
ListenStream=/run/docker.sock
SocketMode=0660
SocketUser=root
SocketGroup=docker

[Install]
WantedBy=sockets.target
`;

export interface DockerRelease {
  /** e.g. `5:19.03.12~3-0~ubuntu-bionic` (old scheme) or `5:27.3.1-1~ubuntu.22.04~jammy`. */
  readonly engine: string;
  readonly containerd: string;
}

/** Docker CE's package versions as download.docker.com names them for an Ubuntu codename. */
export function dockerRelease(codename: string): DockerRelease {
  const numbers: Record<string, string> = { bionic: '18.04', focal: '20.04', jammy: '22.04', noble: '24.04' };
  if (codename === 'bionic') return { engine: '5:19.03.12~3-0~ubuntu-bionic', containerd: '1.2.13-2' };
  const n = numbers[codename];
  if (!n) throw new Error(`no Docker release for Ubuntu ${codename}`);
  return { engine: `5:27.3.1-1~ubuntu.${n}~${codename}`, containerd: '1.7.22-1' };
}

/**
 * A later Docker CE release download.docker.com also serves for the codename (the pinned one is
 * older): an install that forgot the pin would get this one.
 */
export function newerDockerRelease(codename: string): DockerRelease | null {
  return codename === 'bionic' ? { engine: '5:20.10.24~3-0~ubuntu-bionic', containerd: '1.6.20-1' } : null;
}

/** docker-ce, docker-ce-cli and containerd.io as download.docker.com serves them for `codename`. */
export function dockerPackages(codename: string, rel: DockerRelease = dockerRelease(codename)): DebSpec[] {
  const engineVersion = rel.engine.replace(/^\d+:/, '').replace(/[~-].*$/, '');
  const containerdVersion = rel.containerd.replace(/-.*$/, '');
  return [
    {
      name: 'containerd.io',
      version: rel.containerd,
      architecture: 'amd64',
      description: 'An open and reliable container runtime',
      // Docker's package carries its own runc and takes the place of the distribution's packages.
      provides: ['containerd', 'runc'],
      conflicts: ['containerd', 'runc'],
      replaces: ['containerd', 'runc'],
      files: [
        {
          path: '/usr/bin/containerd',
          content: sh(`
case "$1" in
  --version|-v) echo "containerd containerd.io ${containerdVersion} 0000000000000000000000000000000000000000"; exit 0;;
  config)
    if [ "$2" = default ]; then
      cat <<'TOML'
${CONTAINERD_DEFAULT_CONFIG.trimEnd()}
TOML
      exit 0
    fi;;
esac
${refuse('containerd', 'would start the daemon; there is no systemd in the test root')}`),
          mode: 0o755,
        },
        { path: '/usr/bin/ctr', content: sh(refuse('ctr', 'needs a running containerd')), mode: 0o755 },
        { path: '/usr/bin/runc', content: sh(`case "$1" in --version|-v) echo "runc version 1.1.14"; exit 0;; esac\n${refuse('runc', 'cannot run containers here')}`), mode: 0o755 },
        { path: '/etc/containerd/config.toml', content: CONTAINERD_IO_PACKAGED_CONFIG },
        { path: '/lib/systemd/system/containerd.service', content: CONTAINERD_UNIT },
      ],
      conffiles: ['/etc/containerd/config.toml'],
      postinst: enableUnitPostinst(['containerd.service']),
    },
    {
      name: 'docker-ce-cli',
      version: rel.engine,
      architecture: 'amd64',
      description: 'Docker CLI: the open-source application container engine',
      files: [
        {
          path: '/usr/bin/docker',
          content: sh(`
case "$1" in
  --version|-v) echo "Docker version ${engineVersion}, build 0000000"; exit 0;;
esac
echo "Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?" >&2
exit 1`),
          mode: 0o755,
        },
      ],
    },
    {
      name: 'docker-ce',
      version: rel.engine,
      architecture: 'amd64',
      description: 'Docker: the open-source application container engine',
      depends: ['containerd.io (>= 1.2.2-3)', 'docker-ce-cli', 'iptables', 'libseccomp2 (>= 2.3.0)'],
      files: [
        { path: '/usr/bin/dockerd', content: sh(`case "$1" in --version|-v) echo "Docker version ${engineVersion}, build 0000000"; exit 0;; esac\n${refuse('dockerd', 'would start the daemon; there is no systemd in the test root')}`), mode: 0o755 },
        { path: '/lib/systemd/system/docker.service', content: DOCKER_UNIT },
        { path: '/lib/systemd/system/docker.socket', content: DOCKER_SOCKET },
      ],
      postinst: enableUnitPostinst(['docker.socket', 'docker.service'], '  getent group docker >/dev/null || groupadd --system docker\n'),
    },
  ];
}
