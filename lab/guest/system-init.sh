#!/bin/busybox sh
# The virtual rack's "installed system": what boots from the machine's disk once racksmith's
# iPXE script says "boot from local disk". It plays the installed Ubuntu's first boot:
# cloud-init reads the NoCloud seed the installer left on the data disk, creates the SSH user
# with racksmith's key, keeps a host key across reboots, starts the SSH server (dropbear), runs
# the role's setup (the load balancer starts haproxy with the configuration from its seed), and
# phones home once per instance with its host key. Programs (node, haproxy, dropbear, the
# kubeadm/kubectl stand-in) come from the system disk, an ISO 9660 image mounted on /media/system.
# Markers on the serial console: RACKSMITH-SYSTEM <step> ...
/bin/busybox mkdir -p /bin /sbin
/bin/busybox --install -s /bin
export PATH=/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin
mkdir -p /proc /sys /dev /tmp /run /var/log /var/lib /media/system /etc /root
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev 2>/dev/null
mkdir -p /dev/pts && mount -t devpts devpts /dev/pts 2>/dev/null
say() { echo "RACKSMITH-SYSTEM $*" > /dev/console; }
halt_here() { say "FAIL $*"; while true; do sleep 3600; done; }
# busybox 1.35's wget -T segfaults: bound every fetch with timeout instead.
post() { timeout 20 wget -q -O "$3" --header "Content-Type: $2" --post-data "$4" "$1"; }

for m in failover net_failover virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci virtio_net virtio_blk cdrom isofs; do
  [ -e "/lib/modules/$m.ko" ] && insmod "/lib/modules/$m.ko" 2>/dev/null
done
say "BOOTED $(cut -d' ' -f1 /proc/uptime)"

sysdisk=""
datadisk=""
i=0
while [ $i -lt 50 ]; do
  for b in /sys/block/vd*; do
    case "$(cat "$b/serial" 2>/dev/null)" in
      racksmith-system) sysdisk="/dev/${b##*/}" ;;
      racksmith-data) datadisk="/dev/${b##*/}" ;;
    esac
  done
  [ -n "$sysdisk" ] && [ -n "$datadisk" ] && break
  sleep 0.1; i=$((i + 1))
done
[ -n "$sysdisk" ] || halt_here "no system disk"
mount -t iso9660 -o ro "$sysdisk" /media/system || halt_here "cannot mount $sysdisk"
# The system disk holds /usr (Debian's merged-/usr layout): the dynamic loader and libraries.
ln -s /media/system/usr /usr
ln -s /usr/lib64 /lib64
mkdir -p /lib && ln -s /usr/lib/x86_64-linux-gnu /lib/x86_64-linux-gnu

# The seed the installer wrote, on the data disk (ext4), with what this system keeps there.
D=/var/lib/racksmith
mkdir -p $D
[ -n "$datadisk" ] || halt_here "no data disk"
mount -t ext4 "$datadisk" $D || halt_here "cannot mount $datadisk"
[ -s $D/seed/user-data ] || halt_here "not installed: no seed on $datadisk"
U=$D/seed/user-data
M=$D/seed/meta-data
unq() { sed -e 's/^"\(.*\)"$/\1/'; }
hostname=$(sed -n 's/^local-hostname: *//p' $M | unq)
iid=$(sed -n 's/^instance-id: *//p' $M | unq)
sshuser=$(awk '/^users:/ {on=1; next} on && /^  - name: / {sub(/^  - name: */, ""); print; exit} on && /^[^ ]/ {exit}' $U | unq)
sshkey=$(awk '/ssh_authorized_keys:/ {getline; sub(/^ *- */, ""); print; exit}' $U | unq)
phone=$(awk '/^phone_home:/ {on=1; next} on && /^  url: / {sub(/^  url: */, ""); print; exit} on && /^[^ ]/ {exit}' $U | unq)
# "# racksmith: <role> <host> of cluster <c> (Ubuntu <r>, Kubernetes <v>, <runtime>)."
role=$(sed -n 's/^# racksmith: \([a-z-]*\) .*/\1/p' $U | head -n 1)
k8s=$(sed -n 's/^# racksmith: .*Kubernetes \([0-9.]*\),.*/\1/p' $U | head -n 1)
[ -n "$hostname" ] && [ -n "$sshkey" ] && [ -n "$phone" ] && [ -n "$role" ] || halt_here "seed incomplete (host '$hostname', role '$role', key, phone-home URL)"
hostname "$hostname"
echo "$hostname" > /etc/hostname
say "SEED $role $hostname instance=$iid kubernetes=${k8s:-?}"

# Second serial port: the system log (haproxy logs there through syslog).
syslogd -O /dev/ttyS1 -S

ip link set lo up
i=0
while [ ! -e /sys/class/net/eth0 ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
ip link set eth0 up
timeout 30 udhcpc -i eth0 -n -q -t 10 -T 1 -s /udhcpc.script || halt_here "no DHCP lease"
ip=$(ip -4 -o addr show eth0 | awk '{print $4}' | cut -d/ -f1)
say "NET $ip"

# Users (cloud-init's users module): the SSH user with racksmith's key. The lab runs racksmith
# with RACKSMITH_SSH_USER=root (no sudo here); another user gets the key too.
printf 'root:x:0:0:root:/root:/bin/sh\n' > /etc/passwd
printf 'root:x:0:\n' > /etc/group
printf '/bin/sh\n' > /etc/shells
home=/root
if [ "$sshuser" != root ]; then
  home=/home/$sshuser
  echo "$sshuser:x:1000:1000:racksmith provisioning:$home:/bin/sh" >> /etc/passwd
  echo "$sshuser:x:1000:" >> /etc/group
fi
mkdir -p "$home/.ssh"
echo "$sshkey" > "$home/.ssh/authorized_keys"
chmod 700 "$home" "$home/.ssh"; chmod 600 "$home/.ssh/authorized_keys"
[ "$sshuser" = root ] || chown -R 1000:1000 "$home"

# The host key is generated on the first boot of an install and kept on the data disk; a
# reinstall (a new seed, no key) makes a new one.
if [ ! -s $D/hostkey ]; then
  dropbearkey -t ed25519 -f $D/hostkey >/dev/null 2>&1 || halt_here "dropbearkey"
  sync
fi
pub=$(dropbearkey -y -f $D/hostkey | grep '^ssh-ed25519 ' | awk '{print $1" "$2}')
dropbear -F -E -s -r $D/hostkey -p 22 -P /run/dropbear.pid >/var/log/dropbear.log 2>&1 &
say "SSH up (dropbear) as $sshuser"

# What the kubeadm/kubectl stand-in needs to know about this node.
mkdir -p /var/lib/standin /etc/kubernetes
cat > /etc/standin.env <<EOF
STANDIN_NODE=$hostname
STANDIN_NODE_IP=$ip
STANDIN_NODE_DIR=/var/lib/standin
STANDIN_VERSION=${k8s:-1.28.4}
EOF

# The role's setup (racksmith-role-setup): the load balancer installs the haproxy configuration
# from its seed and starts haproxy; Kubernetes nodes have their tools on the system disk.
if [ "$role" = loadbalancer ]; then
  mkdir -p /etc/haproxy
  awk '/path: \/etc\/racksmith\/haproxy.cfg/ {found=1} found && /content: \|/ {on=1; next} on && /^      / {sub(/^      /, ""); print; next} on && /^$/ {print ""; next} on {exit}' $U > /etc/haproxy/haproxy.cfg
  if haproxy -c -f /etc/haproxy/haproxy.cfg >/dev/null 2>&1; then
    systemctl restart haproxy && say "HAPROXY started with the seed's configuration"
  else
    say "HAPROXY seed configuration rejected: $(haproxy -c -f /etc/haproxy/haproxy.cfg 2>&1 | tail -n 1)"
  fi
  # A load balancer of a pair: keepalived and its check from the seed, the interface filled in
  # as the role's setup script does.
  if grep -q 'path: /etc/racksmith/keepalived.conf' $U; then
    mkdir -p /etc/keepalived
    [ -x /bin/bash ] || ln -sf /usr/bin/bash /bin/bash
    for f in /etc/racksmith/keepalived.conf /etc/keepalived/racksmith-check-haproxy.sh; do
      awk -v want="path: $f" 'index($0, want) {found=1} found && /content: \|/ {on=1; next} on && /^      / {sub(/^      /, ""); print; next} on && /^$/ {print ""; next} on {exit}' $U > /tmp/seed-file
      case $f in *.conf) mv /tmp/seed-file /etc/keepalived/keepalived.conf ;; *) mv /tmp/seed-file $f; chmod 0755 $f ;; esac
    done
    prefix=$(ip -4 -o addr show eth0 | awk '{print $4}' | cut -d/ -f2)
    sed -i -e "s/@LB_INTERFACE@/eth0/g" -e "s/@LB_PREFIX@/$prefix/g" /etc/keepalived/keepalived.conf
    if keepalived -t -f /etc/keepalived/keepalived.conf >/dev/null 2>&1; then
      systemctl restart keepalived && say "KEEPALIVED started with the seed's configuration"
    else
      say "KEEPALIVED seed configuration rejected: $(keepalived -t -f /etc/keepalived/keepalived.conf 2>&1 | tail -n 1)"
    fi
  fi
fi

# phone_home, once per instance (cloud-init's per-instance frequency).
if [ ! -e "$D/phoned-home-$iid" ]; then
  enc=$(echo "$pub" | sed -e 's/%/%25/g' -e 's/+/%2B/g' -e 's/\//%2F/g' -e 's/=/%3D/g' -e 's/ /+/g')
  n=0
  until post "$phone" application/x-www-form-urlencoded /tmp/phone.out "pub_key_rsa=N%2FA&pub_key_ecdsa=N%2FA&pub_key_ed25519=$enc&instance_id=$iid&hostname=$hostname&fqdn=$hostname"; do
    n=$((n + 1)); [ $n -ge 10 ] && halt_here "phone-home failed 10 times"
    sleep 3
  done
  : > "$D/phoned-home-$iid"
  sync
  say "PHONED-HOME $(cat /tmp/phone.out)"
fi
say "UP $(cut -d' ' -f1 /proc/uptime)"
while true; do sleep 3600; done
