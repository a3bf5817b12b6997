
export const MAIN_HELP = `racksmith — bare-metal provisioning: PXE (DHCP, TFTP, iPXE), Ubuntu seeds, HA kubeadm over SSH

Usage: racksmith <command> [options]

Commands:
  serve                      start every enabled service (DHCP, TFTP, HTTP, orchestrator)
  token create               print a new API token (--role admin|operator|viewer [--name NAME])
  token list|revoke          the API tokens in the data directory's store; revoke one by id or name
  machines list|add|set|rm|import|events
                             the machine inventory and a machine's history, through a running server's API
  machines power|reimage     a machine's power through its BMC; reimage it
  machines identify|console  its locator LED; its captured serial console (IPMI SOL)
  rack power                 power a whole rack, a few machines at a time, with live progress
  watch [--cluster C] [--rack R] [--json]
                             the machines live: state, boot step, time in state
  clusters list|create|show|delete|retry|kubeconfig|upgrade
                             clusters, through a running server's API
  clusters preflight NAME    check every upstream the cluster's machines will use (before power-on)
  artifacts prefetch CLUSTER cache the installer artifacts the cluster's machines will ask for
  agent build                build racksmith's deploy agent (image deployment) from Debian packages
  completion bash|zsh        shell completion for commands, flags and their values
  settings [--markdown]      every setting with its flag, environment name and default
  version                    print the version

Run "racksmith <command> --help" for a command's options.
Client commands talk to --url (RACKSMITH_URL, default http://127.0.0.1:8080) with the API token
from --token-file FILE or RACKSMITH_TOKEN, else they ask for it on a terminal (--token TOKEN also
works, but anything on a command line is visible to every user in ps); add --json for
machine-readable output (errors too: {"error": {...}} on stderr, same exit codes). BMC passwords likewise: --bmc-password-file FILE, RACKSMITH_BMC_PASSWORD,
a prompt, or --bmc-password.
`;

export const TOKEN_HELP = `Usage: racksmith token create|list|revoke
  racksmith token create --role admin|operator|viewer [--name NAME] [--data-dir DIR | --config FILE]
  racksmith token list [--json] [--data-dir DIR | --config FILE]
  racksmith token revoke ID|NAME [--json] [--data-dir DIR | --config FILE]

create makes an API token in the data directory's store and prints it once (only its hash is
kept); list shows the tokens that work (id, name, role, created); revoke ends one at once, by its
id (or the first 8 characters of it) or its name. All work whether or not the server is running. Roles: viewer reads; operator also powers machines,
reimages them and retries clusters; admin also changes the inventory and reads kubeconfigs.
`;

export const MACHINES_HELP = `Usage:
  racksmith machines list [--cluster C] [--role R] [--state S] [--rack R]   (an unknown rack or cluster is an error)
  racksmith machines add --mac MAC --hostname H --role loadbalancer|control-plane|worker --cluster C
                         [--ip IP] [--rack R] [--unit U] [--install-disk DISK] [--bmc-address A --bmc-username U]
                         [--bmc-port N] [--bmc-cipher-suite 17|3|…] [--sol-capture]
                         [--bmc-driver redfish --bmc-address https://HOST[:PORT] [--bmc-system-id ID]
                          [--bmc-tls-fingerprint SHA256 | --bmc-no-verify-tls]]
                         [--boot-loader ipxe|shim-grub|auto] [--secure-boot on|off|unknown]
  racksmith machines set MAC [--hostname H] [--role R] [--cluster C] [--ip IP|none] [--rack R|none] [--unit U|none]
                         [--install-disk DISK|none]
                         [--bmc-address A] [--bmc-username U] [--bmc-port N|default]
                         [--bmc-cipher-suite N|default] [--sol-capture on|off|default]
                         [--bmc-driver ipmi|redfish] [--bmc-system-id ID|default]
                         [--bmc-tls-fingerprint SHA256|default] [--bmc-verify-tls on|off]
                         (BMC fields not given keep their values; --sol-capture default: the rack's setting)
                         [--boot-loader ipxe|shim-grub|auto|default] [--secure-boot on|off|unknown]
  racksmith machines rm MAC [--force]   a node leaves its cluster first (drain, etcd, LBs); --force when it no longer answers
  racksmith machines import FILE.csv [--update]
      header: mac,hostname,role,cluster,ip,rack,bmc_address,bmc_username,bmc_password
              (optional: unit, bmc_port, bmc_cipher_suite, boot_loader, secure_boot; columns in any
              order; commas, semicolons, tabs or pipes). --update: machines already known by MAC
              are updated from the sheet (empty cells keep their values) instead of refused.
  racksmith machines events MAC [--type T] [--limit N]
      the machine's history, newest N (default 100): state changes, boot steps, power, orchestration
  racksmith machines power MAC --action on|off|cycle|reset|status
  racksmith machines reimage MAC [--force] [--no-wait] [--timeout SECONDS]
  racksmith machines identify MAC [--off] [--seconds N]
  racksmith machines console MAC [--follow] [--detach | --attach]

--install-disk: the disk to install on — /dev/NAME, /dev/disk/by-id/NAME or serial:SERIAL;
without it the cluster's --install-disk-rule picks one.

The BMC password comes from --bmc-password-file FILE (its first line) or RACKSMITH_BMC_PASSWORD,
else add asks for it on a terminal; --bmc-password P works too but is visible in ps. set changes
the password only when one of these is given.

Common: --url URL (RACKSMITH_URL) --json; the API token from --token-file FILE or RACKSMITH_TOKEN
(or asked for on a terminal; --token TOKEN works too, but a flag is visible to every user in ps)
`;

export const CLUSTERS_HELP = `Usage:
  racksmith clusters list
  racksmith clusters create --name N --os ubuntu-18.04|ubuntu-20.04|ubuntu-22.04|ubuntu-24.04|debian-12
                            --kubernetes-version V --container-runtime docker|containerd --cni weave|flannel|calico
                            [--install-method preseed|autoinstall|image] [--install-disk-rule smallest|largest|first]
                            [--image-url URL|FILE [--image-sha256 HEX]]
                            [--pod-subnet CIDR] [--service-subnet CIDR] [--control-plane-endpoint HOST:PORT]
                            [--vip IP]   (two load balancers share it; the endpoint is then IP:6443)
      (--ubuntu-release 18.04|20.04|22.04|24.04 is the older form of --os)
      The versions must go together (docs/compatibility.md): e.g. Kubernetes 1.18 on 18.04/20.04
      with docker or containerd, 1.25+ on 22.04/24.04 and Debian 12 with containerd; weave up to 1.23.
  racksmith clusters show NAME           machines, orchestration steps with their durations, what it waits for
  racksmith clusters preflight NAME      (operator) check every upstream its machines will use; exit 1 on a failure
  racksmith clusters delete NAME         (admin) a cluster without machines
  racksmith clusters retry NAME          (operator) retry what failed in the cluster's bootstrap
  racksmith clusters kubeconfig NAME     (admin) print the admin kubeconfig once init has run
  racksmith clusters upgrade NAME --kubernetes-version V [--max-unavailable N] [--force] [--wait [--timeout S]]
                                         (admin) rolling upgrade by reimage, one minor at a time
  racksmith clusters upgrade NAME --pause|--resume|--abort   (operator)

Common: --url URL (RACKSMITH_URL) --json; the API token from --token-file FILE or RACKSMITH_TOKEN
(or asked for on a terminal; --token TOKEN works too, but a flag is visible to every user in ps)
`;

export const AGENT_HELP = `Usage: racksmith agent build [--data-dir DIR | --config FILE] [--agent-kernel-package PKG]

Builds the deploy agent that installs machines by image (installMethod "image"): the Debian
kernel package (default linux-image-amd64, downloaded with apt-get, not installed) and an
initramfs made of busybox-static, sfdisk, e2fsprogs, zstd and efibootmgr from this host's Debian packages
and the agent's scripts. Cached under <data dir>/agent/ by its inputs: run it again and it
costs nothing unless a package or the agent changed. racksmith serve builds it on the first
machine's request otherwise; run this before a rack powers on. A site can also put its own
vmlinuz and initrd.img in <artifacts dir>/agent/.
`;

export const WATCH_HELP = `Usage: racksmith watch [--cluster C] [--rack R] [--json] [--url URL] [--token-file FILE | --token TOKEN]

Shows the machines of a cluster or rack (default: all) live, from the server's event stream:
rack, host, MAC, role, state, current boot step, time in that state and the last event.
On a terminal the table is redrawn in place; piped, it prints one line per machine at start,
then one line per event:
  <time>  <rack>  <host>  <mac>  <state>  <event type>: <message>
With --json, one JSON object per line: {"type":"machine",…} for each machine at start, then
{"type":"event","event":{…},"machine":{…}} per event. An unknown rack or cluster is an error.
It reconnects by itself after a disconnect and resumes without losing events. Ctrl-C stops it.
Any token role may watch (viewer is enough). The token comes from --token-file FILE or
RACKSMITH_TOKEN, else it is asked for on a terminal (--token TOKEN works but is visible in ps).
`;
