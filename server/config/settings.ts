import { z } from 'zod';
import { parseIPv4, parseRange } from '../lib/ipv4.js';
import { isSecretKeyText } from '../lib/secrets.js';
import { BOOT_LOADERS } from '../inventory/model.js';
import { floatingManifest } from '../clusters/compatibility.js';

/**
 * Every setting racksmith reads, in one table: its YAML/flag name (kebab case), its environment
 * name, its default and what it means. Order: YAML file, then `RACKSMITH_*` environment, then
 * flags — later wins. `--help` and the README's table are generated from this list.
 */

const ipv4 = z.string().refine((s) => parseIPv4(s) !== null, 'expected an IPv4 address such as 10.77.0.1');
const integer = (min: number, max: number) =>
  z.preprocess(
    (v) => (typeof v === 'string' && /^\d+$/.test(v.trim()) ? Number(v) : v),
    z.number({ error: `expected an integer from ${min} to ${max}` }).int(`expected an integer from ${min} to ${max}`).min(min, `expected an integer from ${min} to ${max}`).max(max, `expected an integer from ${min} to ${max}`),
  );
const port = integer(0, 65535);
/** A fraction from 0 up to (not including) 1, e.g. 0.25. */
const fraction = z.preprocess(
  (v) => (typeof v === 'string' && /^\d*\.?\d+$/.test(v.trim()) ? Number(v) : v),
  z.number({ error: 'expected a fraction from 0 to below 1, such as 0.25' }).min(0, 'expected a fraction from 0 to below 1, such as 0.25').lt(1, 'expected a fraction from 0 to below 1, such as 0.25'),
);
const bool = z.preprocess((v) => {
  if (typeof v === 'boolean') return v;
  if (typeof v === 'string' && /^(1|true|yes|on)$/i.test(v)) return true;
  if (typeof v === 'string' && /^(0|false|no|off)$/i.test(v)) return false;
  return v;
}, z.boolean());
const url = z.string().refine((s) => /^https?:\/\/[^\s"'`$\\]+$/.test(s), 'expected an http:// or https:// URL without spaces or quotes');
/** A JSON object given in an environment variable, or a mapping from the YAML file. */
const jsonObject = <T extends z.ZodType>(schema: T) =>
  z.preprocess((v) => {
    if (typeof v !== 'string') return v;
    try {
      return JSON.parse(v) as unknown;
    } catch {
      return v;
    }
  }, schema);
/** A CNI manifest: pinned (`{version}` from the compatibility table, or a fixed file), never "latest". */
const manifestUrl = z.url().refine((s) => !floatingManifest(s), 'expected a pinned manifest URL ({version} or a fixed release), not "latest"');
const artifactName = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/, 'expected a plain file name');
/** Per-release overrides of the installer table in server/boot/releases.ts. */
const installerOverrides = z.partialRecord(
  z.enum(['18.04', '20.04', '22.04', '24.04', 'debian-12']),
  z
    .object({
      kernel: artifactName.optional(),
      initrd: artifactName.optional(),
      iso: artifactName.optional(),
      /** Where each file comes from: an http(s) URL, or `iso:<path>` for a file inside the release's ISO. */
      upstream: z.record(artifactName, z.union([url, z.string().regex(/^iso:[A-Za-z0-9._/-]+$/)])).optional(),
      /** Expected SHA-256 of a file (hex); a fetched file that differs is refused. */
      sha256: z.record(artifactName, z.string().regex(/^[0-9a-f]{64}$/)).optional(),
    })
    .strict(),
);
export type InstallerOverrides = z.output<typeof installerOverrides>;
/** Debian packages holding the signed shim and GRUB, each pinned by the SHA-256 `apt-cache show` prints. */
const signedBootDebs = z.array(z.object({ url, sha256: z.string().regex(/^[0-9a-f]{64}$/, 'expected the .deb\'s SHA-256 (64 hex digits)') }).strict()).max(16);

/** An OS image: an http(s) URL, or a file name in the artifacts directory's `images/` folder. */
export const imageSource = z.union([url, artifactName]);
const sha256Hex = z.string().regex(/^[0-9a-f]{64}$/, 'expected a SHA-256 as 64 lower-case hex digits');
/** Per-OS images for image deployment, merged over the built-in ones (server/images/catalog.ts). */
const imageOverrides = z.partialRecord(
  z.enum(['ubuntu-18.04', 'ubuntu-20.04', 'ubuntu-22.04', 'ubuntu-24.04', 'debian-12']),
  z.object({ url: imageSource, sha256: sha256Hex.optional() }).strict(),
);
export type ImageOverrides = z.output<typeof imageOverrides>;

const ipList = z.preprocess(
  (v) => (typeof v === 'string' ? v.split(',').map((s) => s.trim()).filter(Boolean) : v),
  z.array(ipv4),
);

const pathList = z.preprocess(
  (v) => (typeof v === 'string' ? v.split(',').map((s) => s.trim()).filter(Boolean) : v),
  z.array(z.string().startsWith('/', 'expected absolute paths')),
);

export const SETTINGS = {
  dataDir: { env: 'RACKSMITH_DATA_DIR', schema: z.string().min(1), default: './data', help: 'data directory: SQLite file, keys, artifacts cache' },
  databaseUrl: {
    env: 'RACKSMITH_DATABASE_URL',
    schema: z.string().regex(/^postgres(ql)?:\/\/\S+$/, 'expected a PostgreSQL URL such as postgres://racksmith:PASSWORD@db.example:5432/racksmith').optional(),
    default: undefined,
    help: 'PostgreSQL database shared by several racksmith instances (postgres://user:password@host:port/db); default: the embedded SQLite file in the data directory',
    secret: true,
  },
  instanceName: {
    env: 'RACKSMITH_INSTANCE_NAME',
    schema: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/, 'expected a name of letters, digits, dots, dashes or underscores').optional(),
    default: undefined,
    help: "this instance's name among those sharing a database (lock holder, events, connections); default: the host name",
  },
  advertiseAddress: { env: 'RACKSMITH_ADVERTISE_ADDRESS', schema: ipv4.optional(), default: undefined, help: 'address machines use to reach racksmith (DHCP replies, URLs); default: first non-loopback IPv4' },
  httpAddress: { env: 'RACKSMITH_HTTP_ADDRESS', schema: ipv4, default: '0.0.0.0', help: 'HTTP listen address' },
  httpPort: { env: 'RACKSMITH_HTTP_PORT', schema: port, default: 8080, help: 'HTTP listen port' },
  dhcpMode: { env: 'RACKSMITH_DHCP_MODE', schema: z.enum(['off', 'proxy', 'authoritative']), default: 'proxy', help: 'DHCP mode: off, proxy (beside a site DHCP server) or authoritative' },
  dhcpInterface: { env: 'RACKSMITH_DHCP_INTERFACE', schema: z.string().min(1).optional(), default: undefined, help: 'interface DHCP serves on; required when DHCP is proxy or authoritative (serve refuses to start without it)' },
  dhcpPort: { env: 'RACKSMITH_DHCP_PORT', schema: port, default: 67, help: 'DHCP listen port (tests may move it)' },
  dhcpProxyPort: { env: 'RACKSMITH_DHCP_PROXY_PORT', schema: port, default: 4011, help: 'PXE boot-server port for proxyDHCP; 0 turns it off' },
  dhcpRange: { env: 'RACKSMITH_DHCP_RANGE', schema: z.string().refine((s) => parseRange(s) !== null, 'expected a range such as 10.77.0.100-10.77.0.199').optional(), default: undefined, help: 'address pool for authoritative mode, e.g. 10.77.0.100-10.77.0.199' },
  dhcpNetmask: { env: 'RACKSMITH_DHCP_NETMASK', schema: ipv4.optional(), default: undefined, help: 'subnet mask handed out (default: from the interface)' },
  dhcpRouter: { env: 'RACKSMITH_DHCP_ROUTER', schema: ipv4.optional(), default: undefined, help: 'router handed out in authoritative mode' },
  dhcpDns: { env: 'RACKSMITH_DHCP_DNS', schema: ipList.optional(), default: undefined, help: 'DNS servers handed out, comma separated' },
  dhcpLeaseSeconds: { env: 'RACKSMITH_DHCP_LEASE_SECONDS', schema: integer(60, 31_536_000), default: 3600, help: 'lease time in authoritative mode' },
  dhcpCacheThreshold: {
    env: 'RACKSMITH_DHCP_CACHE_THRESHOLD',
    schema: fraction,
    default: 0.25,
    help: "a client's lease younger than this fraction of the lease time is ACKed again as it stands, with what is left of it, and not rewritten (as Kea's cache-threshold); 0 rewrites every ACK",
  },
  dhcpIgnoreUnknown: { env: 'RACKSMITH_DHCP_IGNORE_UNKNOWN', schema: bool, default: false, help: 'answer only MACs in the inventory (shared L2 segment with another provisioner)' },
  discoveryPerAddress: {
    env: 'RACKSMITH_DISCOVERY_PER_ADDRESS',
    schema: integer(0, 100_000),
    default: 8,
    help: 'unknown MACs one HTTP client address may add as discovered machines per hour (iPXE asking /boot.ipxe); past it they are answered but not recorded, and counted',
  },
  discoveryPerSegment: {
    env: 'RACKSMITH_DISCOVERY_PER_SEGMENT',
    schema: integer(0, 1_000_000),
    default: 1000,
    help: 'unknown PXE clients DHCP may add as discovered machines per hour on one segment (the served interface, or one relay); past it they are answered but not recorded, and counted',
  },
  efiBootfile: { env: 'RACKSMITH_EFI_BOOTFILE', schema: z.enum(['ipxe.efi', 'snponly.efi']), default: 'ipxe.efi', help: 'iPXE binary for x64 UEFI PXE clients' },
  bootLoader: { env: 'RACKSMITH_BOOT_LOADER', schema: z.enum(BOOT_LOADERS), default: 'ipxe', help: 'UEFI boot loader for machines without their own bootLoader: ipxe, shim-grub (signed shim → GRUB, for Secure Boot) or auto (shim-grub for machines marked secureBoot)' },
  signedBootDir: { env: 'RACKSMITH_SIGNED_BOOT_DIR', schema: z.string().min(1).optional(), default: undefined, help: 'folder with <arch>/shim*.efi and grub*.efi (x86_64, arm64) taken before the Debian package paths; see docs/boot-chain.md' },
  signedBootDebs: { env: 'RACKSMITH_SIGNED_BOOT_DEBS', schema: jsonObject(signedBootDebs).optional(), default: undefined, help: 'Debian packages (JSON/YAML list of {url, sha256}) the signed shim and GRUB are taken from, through the artifacts cache, when the host has no shim-signed/grub-efi-*-signed; see docs/boot-chain.md' },
  tftpPort: { env: 'RACKSMITH_TFTP_PORT', schema: port, default: 69, help: 'TFTP listen port; 0 turns TFTP off' },
  tftpRoot: { env: 'RACKSMITH_TFTP_ROOT', schema: z.string().min(1), default: '/usr/lib/ipxe', help: 'TFTP root for boot binaries (plus generated files)' },
  tftpMaxBlksize: { env: 'RACKSMITH_TFTP_MAX_BLKSIZE', schema: integer(512, 65464), default: 1468, help: 'largest TFTP block size granted (also capped by the interface MTU)' },
  tftpAddress: { env: 'RACKSMITH_TFTP_ADDRESS', schema: ipv4.optional(), default: undefined, help: "TFTP listen address (transfers answer from a new port on the same address); unset or 0.0.0.0: the DHCP interface's address, and serve refuses to start TFTP without one of them" },
  tftpMaxWindowsize: { env: 'RACKSMITH_TFTP_MAX_WINDOWSIZE', schema: integer(1, 65535), default: 64, help: 'largest RFC 7440 window granted, in blocks' },
  tftpMaxTransfers: { env: 'RACKSMITH_TFTP_MAX_TRANSFERS', schema: integer(1, 100_000), default: 256, help: 'transfers at once; requests beyond it wait for a slot (oldest first)' },
  tftpMaxClientTransfers: { env: 'RACKSMITH_TFTP_MAX_CLIENT_TRANSFERS', schema: integer(1, 100_000), default: 16, help: 'transfers at once from one client address' },
  tftpTimeoutMs: { env: 'RACKSMITH_TFTP_TIMEOUT_MS', schema: integer(10, 255_000), default: 1000, help: 'first retransmission timeout; later ones follow the measured round trip (a client timeout option wins)' },
  tftpRetries: { env: 'RACKSMITH_TFTP_RETRIES', schema: integer(1, 100), default: 10, help: 'retransmissions without progress before a transfer is abandoned' },
  tftpAllowLinks: { env: 'RACKSMITH_TFTP_ALLOW_LINKS', schema: pathList, default: '/boot/ipxe.efi,/boot/ipxe.lkrn', help: 'files outside the TFTP root that symlinks in it may point to (Debian links ipxe.efi into /boot), comma separated' },
  artifactsDir: { env: 'RACKSMITH_ARTIFACTS_DIR', schema: z.string().min(1).optional(), default: undefined, help: 'installer artifacts on local disk (default: <data dir>/artifacts)' },
  installers: { env: 'RACKSMITH_INSTALLERS', schema: jsonObject(installerOverrides).optional(), default: undefined, help: 'per-release installer artifact names and upstream URLs (JSON/YAML), merged over the built-in table; see docs/boot-chain.md' },
  artifactsFetchTimeoutSeconds: { env: 'RACKSMITH_ARTIFACTS_FETCH_TIMEOUT_SECONDS', schema: integer(1, 3600), default: 60, help: 'an upstream artifact download that stalls this long is abandoned' },
  preflightTimeoutSeconds: { env: 'RACKSMITH_PREFLIGHT_TIMEOUT_SECONDS', schema: integer(1, 600), default: 15, help: 'preflight: how long one upstream request (a Release file, a Packages index, a manifest) may take' },
  artifactsCacheDir: { env: 'RACKSMITH_ARTIFACTS_CACHE_DIR', schema: z.string().min(1).optional(), default: undefined, help: 'where artifacts fetched from their upstream are cached (default: <data dir>/artifacts); an artifacts front must be able to read it' },
  artifactsUrl: { env: 'RACKSMITH_ARTIFACTS_URL', schema: z.string().regex(/^https?:\/\/[A-Za-z0-9.-]+(:\d{1,5})?\/?$/, 'expected http://host[:port], e.g. http://10.77.0.1:8081').transform((s) => s.replace(/\/+$/, '')).optional(), default: undefined, help: 'base URL machines fetch installer artifacts from, e.g. an nginx front http://10.77.0.1:8081 (docs/artifacts.md); default: racksmith itself' },
  artifactWorkers: { env: 'RACKSMITH_ARTIFACT_WORKERS', schema: integer(0, 64), default: 2, help: "processes that send artifacts' bytes beside the main process (started on the first download); 0: the main process sends them" },
  artifactsNginxPort: { env: 'RACKSMITH_ARTIFACTS_NGINX_PORT', schema: integer(1, 65535).optional(), default: undefined, help: "run nginx as racksmith's own artifacts front on this port (docs/artifacts.md): racksmith writes its configuration, starts and supervises it, points machines' artifact URLs at it (unless artifacts-url names another) and answers it with X-Accel-Redirect; needs Debian's nginx-light" },
  nginxBinary: { env: 'RACKSMITH_NGINX_BINARY', schema: z.string().min(1), default: 'nginx', help: 'the nginx that artifacts-nginx-port runs: a name in PATH (or /usr/sbin) or a path' },
  artifactsFronts: { env: 'RACKSMITH_ARTIFACTS_FRONTS', schema: ipList.optional(), default: undefined, help: "addresses of artifacts fronts (nginx, docs/artifacts.md): their X-Real-IP names the machine asking for an artifact, and racksmith answers them with X-Accel-Redirect; comma separated" },
  ubuntuMirror: { env: 'RACKSMITH_UBUNTU_MIRROR', schema: url, default: 'http://archive.ubuntu.com/ubuntu', help: 'Ubuntu archive the installers and nodes use' },
  debianMirror: { env: 'RACKSMITH_DEBIAN_MIRROR', schema: url, default: 'http://deb.debian.org/debian', help: "Debian archive Debian's installer (d-i netboot files, packages) and Debian nodes use" },
  aptProxy: { env: 'RACKSMITH_APT_PROXY', schema: url.optional(), default: undefined, help: 'apt proxy put into every seed (d-i mirror/http/proxy, autoinstall proxy, cloud-init apt proxy), e.g. http://10.0.0.2:3142 for apt-cacher-ng' },
  eventRetentionDays: { env: 'RACKSMITH_EVENT_RETENTION_DAYS', schema: integer(0, 36_500), default: 90, help: 'events older than this many days are deleted (hourly); 0 keeps them for ever' },
  bootEventRetentionDays: { env: 'RACKSMITH_BOOT_EVENT_RETENTION_DAYS', schema: integer(0, 36_500), default: 7, help: 'boot traffic events (DHCP, TFTP, boot script, boot file, artifact and seed fetches) are deleted sooner, after this many days; 0: as event-retention-days' },
  installTimeoutMinutes: { env: 'RACKSMITH_INSTALL_TIMEOUT_MINUTES', schema: integer(1, 10_080), default: 60, help: 'install deadline: a machine provisioning (or installed without a phone-home) longer than this goes failed, with its last boot step and installer event' },
  installDiskMinGb: { env: 'RACKSMITH_INSTALL_DISK_MIN_GB', schema: integer(1, 1_000_000), default: 8, help: 'smallest disk (decimal GB) the install disk rule may pick' },
  images: { env: 'RACKSMITH_IMAGES', schema: jsonObject(imageOverrides).optional(), default: undefined, help: 'per-OS images for image deployment (JSON/YAML: {"debian-12": {"url": …, "sha256": …}}), merged over the built-in cloud images; see docs/install-methods.md' },
  agentKernelPackage: { env: 'RACKSMITH_AGENT_KERNEL_PACKAGE', schema: z.string().regex(/^linux-image-[a-z0-9.+-]+$/, 'expected a Debian kernel package such as linux-image-amd64'), default: 'linux-image-amd64', help: "Debian kernel package of the deploy agent (racksmith agent build)" },
  kubernetesRepo: { env: 'RACKSMITH_KUBERNETES_REPO', schema: url, default: 'https://pkgs.k8s.io/core:/stable:', help: 'pkgs.k8s.io base (Kubernetes >= 1.24): <base>/v1.MINOR/deb/ and its Release.key' },
  kubernetesLegacyRepo: { env: 'RACKSMITH_KUBERNETES_LEGACY_REPO', schema: url, default: 'https://apt.kubernetes.io/', help: 'legacy Kubernetes apt repository for < 1.24 (suite kubernetes-xenial; upstream is gone, point it at a mirror)' },
  kubernetesLegacyGpgUrl: { env: 'RACKSMITH_KUBERNETES_LEGACY_GPG_URL', schema: url, default: 'https://packages.cloud.google.com/apt/doc/apt-key.gpg', help: 'signing key of the legacy Kubernetes repository' },
  dockerRepo: { env: 'RACKSMITH_DOCKER_REPO', schema: url, default: 'https://download.docker.com/linux/ubuntu', help: 'Docker CE apt repository (Kubernetes < 1.24 with the docker runtime)' },
  dockerGpgUrl: { env: 'RACKSMITH_DOCKER_GPG_URL', schema: url, default: 'https://download.docker.com/linux/ubuntu/gpg', help: 'signing key of the Docker CE repository' },
  installerKernelArgs: { env: 'RACKSMITH_INSTALLER_KERNEL_ARGS', schema: z.string().regex(/^[A-Za-z0-9 ._,=:/@+-]*$/, 'expected plain kernel arguments (no quotes, ";" or "$")'), default: '', help: 'extra kernel arguments for every installer, e.g. console=ttyS0,115200' },
  bootWaitSeconds: { env: 'RACKSMITH_BOOT_WAIT_SECONDS', schema: integer(1, 3600), default: 30, help: 'how long a machine without a role waits before asking /boot.ipxe again' },
  bootWaitAttempts: { env: 'RACKSMITH_BOOT_WAIT_ATTEMPTS', schema: integer(1, 10_000), default: 20, help: 'how many times it asks before it reboots' },
  adminSshKeysFile: { env: 'RACKSMITH_ADMIN_SSH_KEYS_FILE', schema: z.string().min(1).optional(), default: undefined, help: "an authorized_keys file of the site admins' own SSH keys (plain keys), put on every node beside racksmith's" },
  sshUser: { env: 'RACKSMITH_SSH_USER', schema: z.string().regex(/^[a-z_][a-z0-9_-]{0,31}$/, 'expected a Unix user name'), default: 'racksmith', help: 'user racksmith logs in as over SSH on nodes' },
  ipmitool: { env: 'RACKSMITH_IPMITOOL', schema: z.string().min(1), default: 'ipmitool', help: 'the ipmitool binary the IPMI power driver runs' },
  powerTimeoutSeconds: { env: 'RACKSMITH_POWER_TIMEOUT_SECONDS', schema: integer(2, 600), default: 30, help: 'deadline for one BMC operation, every retry and cipher-suite fallback included' },
  powerRetries: { env: 'RACKSMITH_POWER_RETRIES', schema: integer(0, 10), default: 2, help: 'extra attempts after a BMC did not answer or was busy (backoff 0.5 s, doubling)' },
  powerMaxInFlight: { env: 'RACKSMITH_POWER_MAX_IN_FLIGHT', schema: integer(1, 256), default: 8, help: 'BMC commands in flight at once over all BMCs (one per BMC always)' },
  redfishSessionIdleSeconds: { env: 'RACKSMITH_REDFISH_SESSION_IDLE_SECONDS', schema: integer(30, 3600), default: 60, help: 'a Redfish session unused this long is deleted on the BMC (BMCs have few session slots)' },
  solCaptureRacks: { env: 'RACKSMITH_SOL_CAPTURE_RACKS', schema: z.string().max(4096).regex(/^[A-Za-z0-9_.,* -]*$/, 'rack names separated by commas, or *'), default: '', help: 'racks whose machines get their serial console captured over IPMI SOL while they install (comma-separated, * for all; a machine\'s bmc.solCapture wins)' },
  solRetrySeconds: { env: 'RACKSMITH_SOL_RETRY_SECONDS', schema: integer(1, 3600), default: 30, help: 'serial console capture: seconds before asking again for a SOL session someone else holds, or after a failure' },
  rackPowerConcurrency: { env: 'RACKSMITH_RACK_POWER_CONCURRENCY', schema: integer(1, 64), default: 4, help: 'rack power jobs: machines handled at once, unless the request says' },
  rackPowerDelaySeconds: { env: 'RACKSMITH_RACK_POWER_DELAY_SECONDS', schema: integer(0, 600), default: 2, help: 'rack power on/cycle/reset: seconds between two machines\' starts, unless the request says' },
  reimageRemovalTimeoutSeconds: { env: 'RACKSMITH_REIMAGE_REMOVAL_TIMEOUT_SECONDS', schema: integer(5, 86_400), default: 900, help: 'reimage: how long to wait for the orchestrator to remove the node from its cluster' },
  sshPort: { env: 'RACKSMITH_SSH_PORT', schema: integer(1, 65535), default: 22, help: 'SSH port of the nodes' },
  sshConnectTimeoutSeconds: { env: 'RACKSMITH_SSH_CONNECT_TIMEOUT_SECONDS', schema: integer(1, 600), default: 20, help: 'how long an SSH connection and handshake to a node may take' },
  orchestratorPollSeconds: { env: 'RACKSMITH_ORCHESTRATOR_POLL_SECONDS', schema: integer(1, 3600), default: 15, help: 'how often the orchestrator re-reads every cluster (besides reacting to inventory events at once)' },
  orchestratorStepTimeoutSeconds: { env: 'RACKSMITH_ORCHESTRATOR_STEP_TIMEOUT_SECONDS', schema: integer(5, 86_400), default: 900, help: 'longest a single step (kubeadm init, a join, a CNI apply) may run on a node' },
  orchestratorNodesReadyTimeoutSeconds: { env: 'RACKSMITH_ORCHESTRATOR_NODES_READY_TIMEOUT_SECONDS', schema: integer(1, 86_400), default: 600, help: 'how long to wait for every joined node to report Ready' },
  orchestratorAttempts: { env: 'RACKSMITH_ORCHESTRATOR_ATTEMPTS', schema: integer(1, 20), default: 3, help: 'tries per step for faults worth retrying (refused, reset, timeout, a failed join)' },
  orchestratorRetryDelayMs: { env: 'RACKSMITH_ORCHESTRATOR_RETRY_DELAY_MS', schema: integer(0, 600_000), default: 5000, help: 'first retry delay; doubles per attempt up to 60 s' },
  orchestratorDrainTimeoutSeconds: { env: 'RACKSMITH_ORCHESTRATOR_DRAIN_TIMEOUT_SECONDS', schema: integer(10, 86_400), default: 300, help: 'reimage: how long `kubectl drain` may take to move a node\'s pods away before its removal' },
  orchestratorWorkerConcurrency: { env: 'RACKSMITH_ORCHESTRATOR_WORKER_CONCURRENCY', schema: integer(1, 200), default: 5, help: 'workers joined in parallel' },
  orchestratorLockSeconds: { env: 'RACKSMITH_ORCHESTRATOR_LOCK_SECONDS', schema: integer(3, 3600), default: 15, help: 'lifetime of a cluster lock (renewed every third of it while driving); another instance takes the cluster over once it lapses' },
  orchestratorCertMarginMinutes: { env: 'RACKSMITH_ORCHESTRATOR_CERT_MARGIN_MINUTES', schema: integer(1, 110), default: 20, help: 'uploaded control-plane certificates expire after 2 h; they are uploaded again before a control join when older than 2 h minus this' },
  cniManifestWeave: { env: 'RACKSMITH_CNI_MANIFEST_WEAVE', schema: manifestUrl, default: 'https://github.com/weaveworks/weave/releases/download/{version}/weave-daemonset-k8s.yaml', help: "Weave Net manifest; {version} is the release pinned for the cluster's Kubernetes version (v2.8.1, the project's last; the 1.18 path)" },
  cniManifestFlannel: { env: 'RACKSMITH_CNI_MANIFEST_FLANNEL', schema: manifestUrl, default: 'https://github.com/flannel-io/flannel/releases/download/{version}/kube-flannel.yml', help: "Flannel manifest (kubectl apply -f); {version} is the release pinned for the cluster's Kubernetes version (docs/compatibility.md)" },
  cniManifestCalico: { env: 'RACKSMITH_CNI_MANIFEST_CALICO', schema: manifestUrl, default: 'https://raw.githubusercontent.com/projectcalico/calico/{version}/manifests/calico.yaml', help: "Calico manifest (kubectl apply -f); {version} is the release pinned for the cluster's Kubernetes version (docs/compatibility.md)" },
  etcdSnapshotsKept: { env: 'RACKSMITH_ETCD_SNAPSHOTS_KEPT', schema: integer(1, 1000), default: 5, help: 'etcd snapshots kept per cluster (<data>/clusters/<name>/etcd-<time>.db), taken before a control-plane node leaves and before an upgrade' },
  upgradeMaxUnavailable: { env: 'RACKSMITH_UPGRADE_MAX_UNAVAILABLE', schema: integer(1, 200), default: 1, help: 'rolling upgrade: workers reimaged at once unless the request says otherwise' },
  kubernetesImageRepository: { env: 'RACKSMITH_KUBERNETES_IMAGE_REPOSITORY', schema: z.string().min(1), default: 'registry.k8s.io', help: 'image repository in the kubeadm configuration (k8s.gcr.io is frozen; sites may mirror)' },
  adminToken: { env: 'RACKSMITH_ADMIN_TOKEN', schema: z.string().min(16, 'expected at least 16 characters').optional(), default: undefined, help: 'an admin API token accepted at start (bootstrap)', secret: true },
  metricsToken: { env: 'RACKSMITH_METRICS_TOKEN', schema: z.string().min(16, 'expected at least 16 characters').optional(), default: undefined, help: 'bearer token Prometheus must send for /metrics (default: /metrics is open)', secret: true },
  secretKey: { env: 'RACKSMITH_SECRET_KEY', schema: z.string().refine(isSecretKeyText, 'expected 64 hex characters or 32 bytes in base64').optional(), default: undefined, help: 'key that encrypts secrets at rest (64 hex chars); default: a key file in the data directory', secret: true },
  logLevel: { env: 'RACKSMITH_LOG_LEVEL', schema: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']), default: 'info', help: 'log level' },
} as const satisfies Record<string, SettingSpec>;

export interface SettingSpec {
  readonly env: string;
  readonly schema: z.ZodType;
  readonly default: unknown;
  readonly help: string;
  readonly secret?: boolean;
}

export type SettingName = keyof typeof SETTINGS;
export type Config = { -readonly [K in SettingName]: z.output<(typeof SETTINGS)[K]['schema']> };

export function kebab(name: string): string {
  return name.replace(/[A-Z]/g, (c) => '-' + c.toLowerCase());
}
