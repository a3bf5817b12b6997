#!/bin/busybox sh
# racksmith test guest: plays the installer and cloud-init in one go.
# Reads the seed from the kernel command line (subiquity: ds=nocloud-net;s=URL/, d-i: url=URL/preseed.cfg),
# fetches and checks what an installer and cloud-init would fetch, reports /installed, phones home
# with a freshly generated SSH host key, then powers off. Every step prints a RACKSMITH-GUEST line
# on the serial console for the test to read.
# With a data disk (a virtio disk whose serial is racksmith-data, as the virtual rack gives each
# machine) it is only the installer: it writes the machine's NoCloud seed onto that disk (the
# installed system's cloud-init reads it from there), reports /installed and reboots.
/bin/busybox --install -s /bin
export PATH=/bin
mkdir -p /proc /sys /dev /tmp /run
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev 2>/dev/null
say() { echo "RACKSMITH-GUEST $*" > /dev/console; echo "RACKSMITH-GUEST $*"; }
die() { say "FAIL $*"; sync; poweroff -f; }
# busybox 1.35's wget -T segfaults: bound every fetch with timeout instead.
fetch() { timeout 20 wget -q -O "$2" "$1"; }
post() { timeout 20 wget -q -O "$3" --header "Content-Type: $2" --post-data "$4" "$1"; }

for m in failover net_failover virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci virtio_net virtio_blk; do
  [ -e "/lib/modules/$m.ko" ] && insmod "/lib/modules/$m.ko" 2>/dev/null
done
say "BOOTED $(cat /proc/cmdline)"

i=0
while [ ! -e /sys/class/net/eth0 ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
ip link set lo up
ip link set eth0 up
timeout 30 udhcpc -i eth0 -n -q -t 10 -T 1 -s /udhcpc.script || die "no DHCP lease"
say "NET $(ip -4 -o addr show eth0 | awk '{print $4}')"

cmdline=$(cat /proc/cmdline)
seed=""
mode=""
for w in $cmdline; do
  case "$w" in
    ds=nocloud-net\;s=*) seed="${w#ds=nocloud-net;s=}"; mode=subiquity ;;
    url=*/preseed.cfg) seed="${w#url=}"; seed="${seed%preseed.cfg}"; mode=debian-installer ;;
  esac
done
[ -n "$seed" ] || die "no seed URL on the command line"
say "SEED $mode $seed"

datadisk=""
for b in /sys/block/vd*; do
  [ "$(cat "$b/serial" 2>/dev/null)" = racksmith-data ] && datadisk="/dev/${b##*/}"
done

cd /tmp
if [ "$mode" = debian-installer ]; then
  fetch "${seed}preseed.cfg" preseed.cfg || die "preseed.cfg"
  grep -q '^d-i preseed/late_command string ' preseed.cfg || die "preseed has no late_command"
  grep -q '^cloud-init cloud-init/datasources multiselect NoCloud, None$' preseed.cfg || die "preseed datasources"
  if grep -v '^#' preseed.cfg | grep -v '^$' | grep -qv '^[a-z-]* [^ ]* [a-z]*'; then die "preseed line not in owner/question/type form"; fi
  say "PRESEED ok $(wc -l < preseed.cfg) lines"
fi
fetch "${seed}meta-data" meta-data || die "meta-data"
grep -q '^instance-id: ' meta-data || die "meta-data has no instance-id"
iid=$(sed -n 's/^instance-id: "*\([^"]*\)"*$/\1/p' meta-data)
fetch "${seed}user-data" user-data || die "user-data"
head -n 1 user-data | grep -q '^#cloud-config$' || die "user-data is not #cloud-config"
grep -q 'phone_home:' user-data || die "user-data has no phone_home"
if [ "$mode" = subiquity ]; then
  grep -q '^autoinstall:$' user-data || die "no autoinstall section"
  fetch "${seed}vendor-data" vendor-data || die "vendor-data"
  fetch "${seed}network-config" network-config || die "network-config"
fi
say "SEEDS ok instance=$iid"

if [ -n "$datadisk" ]; then
  # What curtin/d-i leave for the installed system's cloud-init: the role config (subiquity's
  # autoinstall.user-data, de-indented; d-i's user-data is the role config itself) and meta-data.
  # The disk is wiped first: a new install keeps nothing of the old system (its host key).
  mkdir -p /target
  mount -t ext4 "$datadisk" /target || die "cannot mount $datadisk"
  rm -rf /target/* 2>/dev/null
  mkdir -p /target/seed
  if [ "$mode" = subiquity ]; then
    awk '/^  user-data:/ {on=1; next} on && /^    / {sub(/^    /, ""); print; next} on && /^$/ {print ""; next} on {exit}' user-data > /target/seed/user-data
  else
    cp user-data /target/seed/user-data
  fi
  cp meta-data /target/seed/meta-data
  head -n 1 /target/seed/user-data | grep -q '^#cloud-config' || die "no role config in the seed"
  # What GRUB on the system disk looks for before it boots the installed system.
  echo "$iid" > /target/installed
  umount /target || die "cannot unmount $datadisk"
  sync
  say "WROTE $datadisk"
  post "${seed}installed" application/x-www-form-urlencoded installed.out "source=test-guest" || die "POST installed"
  say "INSTALLED $(cat installed.out)"
  say "REBOOT"
  sync
  reboot -f
fi

post "${seed}installed" application/x-www-form-urlencoded installed.out "source=test-guest" || die "POST installed"
say "INSTALLED $(cat installed.out)"

if [ -s /hostkey.pub ]; then
  # A guest without dropbearkey (the arm64 one) has a host key made for it by the test.
  pub=$(awk '{print $1" "$2}' /hostkey.pub)
else
  dropbearkey -t ed25519 -f /tmp/hostkey >/dev/null 2>&1 || die "dropbearkey"
  pub=$(dropbearkey -y -f /tmp/hostkey | grep '^ssh-ed25519 ' | awk '{print $1" "$2}')
fi
[ -n "$pub" ] || die "no public key"
enc=$(echo "$pub" | sed -e 's/%/%25/g' -e 's/+/%2B/g' -e 's/\//%2F/g' -e 's/=/%3D/g' -e 's/ /+/g')
post "${seed}phone-home" application/x-www-form-urlencoded phone.out "pub_key_rsa=N%2FA&pub_key_ecdsa=N%2FA&pub_key_ed25519=$enc&instance_id=$iid&hostname=$(hostname)&fqdn=$(hostname)" || die "POST phone-home"
say "PHONED-HOME $(cat phone.out)"

# Another machine's token, from the probe file the test appended: must be refused (403).
if [ -s /probe-url ]; then
  code=$(timeout 20 wget -S -O /dev/null "$(cat /probe-url)" 2>&1 | sed -n 's/^ *HTTP\/1\.[01] \([0-9]*\).*/\1/p' | tail -n 1)
  say "PROBE ${code:-none}"
fi
say "DONE"
sync
poweroff -f
