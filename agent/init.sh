#!/bin/busybox sh
# racksmith deploy agent: the /init of the initramfs `racksmith agent build` makes (the
# distribution's kernel, busybox and a few tools from Debian packages). It installs an operating
# system by writing an image, the way Tinkerbell's image2disk, MAAS/curtin and Ironic's agent do:
#
#   network (the NIC racksmith booted) → /seed/<token>/deploy.env → report the machine's disks and
#   NICs → pick the install disk (agent/disk-rule.sh) → stream the image onto it, SHA-256 checked
#   on the way → grow the root partition → the NoCloud seed pointer → /installed → reboot.
#
# Every step is a curtin-style event to /seed/<token>/events (start, then finish with SUCCESS or
# FAIL); a failure leaves the machine here, powered on, with the reason on its console and in
# racksmith — it never reboots into a half-written disk.
/bin/busybox mkdir -p /bin /sbin /usr/bin /usr/sbin
/bin/busybox --install -s /bin
export PATH=/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
mkdir -p /proc /sys /dev /tmp /run /mnt
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev 2>/dev/null
. /lib/racksmith/disk-rule.sh
AGENT_VERSION=$(cat /etc/racksmith-agent-version 2>/dev/null)

say() { echo "racksmith-agent: $*" > /dev/console; }
# After a failure the machine stays up, the reason on its console, until power is cycled.
hold() {
  say "$*"
  say "stopped; racksmith shows the reason. Power-cycle the machine to try again."
  while :; do sleep 3600; done
}

# JSON string contents: backslashes and quotes escaped, control characters dropped.
js() { printf '%s' "$1" | sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' | tr -d '\000-\037'; }

SEED="" MAC=""
for w in $(cat /proc/cmdline); do
  case "$w" in
    racksmith.seed=*) SEED=${w#racksmith.seed=} ;;
    racksmith.mac=*) MAC=$(echo "${w#racksmith.mac=}" | tr 'A-F-' 'a-f:') ;;
  esac
done
say "racksmith deploy agent ${AGENT_VERSION:-?} on $(uname -r)"
[ -n "$SEED" ] || hold "no racksmith.seed= on the kernel command line"

# Drivers: load the module of every device the kernel found, a few rounds (a bus driver brings
# up devices of its own: virtio_pci, then the virtio NIC and disks).
coldplug() {
  find /sys/devices -name modalias -type f 2>/dev/null | while read -r f; do cat "$f"; done | sort -u > /tmp/aliases
  # shellcheck disable=SC2046
  [ -s /tmp/aliases ] && modprobe -q -a -b $(cat /tmp/aliases) 2>/dev/null
}
for round in 1 2 3; do coldplug; sleep 1; done

# The NIC racksmith booted (its MAC on the command line), else the first with a link.
nic=""
i=0
while [ -z "$nic" ] && [ $i -lt 30 ]; do
  for n in /sys/class/net/*; do
    name=${n##*/}
    [ "$name" = lo ] && continue
    if [ -n "$MAC" ]; then
      [ "$(cat "$n/address")" = "$MAC" ] && nic=$name
    else
      nic=${nic:-$name}
    fi
  done
  [ -n "$nic" ] || { sleep 1; coldplug; }
  i=$((i + 1))
done
[ -n "$nic" ] || hold "no network interface ${MAC:+with MAC $MAC }came up (drivers: $(cut -d' ' -f1 /proc/modules | tr '\n' ' '))"
ip link set lo up
ip link set "$nic" up
timeout 60 udhcpc -i "$nic" -n -q -t 20 -T 2 -s /lib/racksmith/udhcpc.script >/dev/null 2>&1 || hold "no DHCP lease on $nic"
say "network: $nic $(ip -4 -o addr show "$nic" | awk '{print $4}')"

# busybox's wget -T is unreliable: every transfer is bounded by timeout instead.
fetch() { timeout "${3:-60}" wget -q -O "$2" "$1"; }
post() { timeout 30 wget -q -O /tmp/post.out --header "Content-Type: $2" --post-data "$3" "$1"; }

# event TYPE NAME RESULT DESCRIPTION [EXTRA JSON MEMBERS]
event() {
  body="{\"event_type\":\"$1\",\"origin\":\"racksmith-agent\",\"name\":\"racksmith-agent/$2\",\"result\":\"$3\",\"description\":\"$(js "$4")\"${5:+,$5}}"
  for try in 1 2 3; do
    post "${SEED}events" application/json "$body" && return 0
    sleep 2
  done
  say "could not report $2 to racksmith"
}
fail() {
  event finish "$1" FAIL "$2" "${3:-}"
  hold "$1 failed: $2"
}

event start deploy "" "deploy agent ${AGENT_VERSION:-?} started on $(uname -r), network $nic"

# What racksmith tells this machine to do: KEY=value lines, read (never run) here.
i=0
until fetch "${SEED}deploy.env" /tmp/deploy.env 600; do
  i=$((i + 1))
  [ $i -lt 10 ] || hold "cannot fetch ${SEED}deploy.env"
  sleep 5
done
while IFS= read -r line; do
  k=${line%%=*}
  v=${line#*=}
  case "$k" in
    IMAGE_URL|IMAGE_SHA256|IMAGE_FORMAT|IMAGE_SIZE|DISK_RULE|DISK_MIN_BYTES|INSTALL_DISK|INSTANCE_ID|HOSTNAME) eval "RS_$k=\$v" ;;
  esac
done < /tmp/deploy.env
[ -n "${RS_IMAGE_URL:-}" ] && [ -n "${RS_IMAGE_SHA256:-}" ] && [ -n "${RS_DISK_RULE:-}" ] || fail deploy "deploy.env is incomplete"

# ── inventory: the disks and NICs this machine has ─────────────────────────────────────────────
disks_json=$(rs_disk_scan /sys "$RS_DISK_MIN_BYTES" | awk -F '|' '
  function s(x) { gsub(/\\/, "\\\\", x); gsub(/"/, "\\\"", x); return "\"" x "\"" }
  { printf "%s{\"name\":%s,\"kind\":%s,\"sizeBytes\":%s,\"serial\":%s,\"model\":%s,\"removable\":%s,\"usb\":%s,\"rotational\":%s,\"wwid\":%s,\"excluded\":%s}",
      sep, s($1), s($2), $3 + 0, s($4), s($5), ($6 == 1 ? "true" : "false"), ($7 == 1 ? "true" : "false"), ($8 == 1 ? "true" : "false"), s($9), ($11 == "" ? "null" : s($11)); sep = "," }')
nics_json=""
for n in /sys/class/net/*; do
  name=${n##*/}
  [ "$name" = lo ] && continue
  drv=$(basename "$(readlink -f "$n/device/driver" 2>/dev/null)" 2>/dev/null)
  nics_json="$nics_json${nics_json:+,}{\"name\":\"$(js "$name")\",\"mac\":\"$(js "$(cat "$n/address")")\",\"driver\":\"$(js "$drv")\",\"carrier\":$( [ "$(cat "$n/carrier" 2>/dev/null)" = 1 ] && echo true || echo false)}"
done
event finish inventory SUCCESS "$(rs_disk_scan /sys "$RS_DISK_MIN_BYTES" | wc -l) disk(s), $(echo "$nics_json" | grep -o '"name"' | wc -l) NIC(s)" "\"inventory\":{\"disks\":[$disks_json],\"nics\":[$nics_json]}"

# ── the install disk ───────────────────────────────────────────────────────────────────────────
rs_pick_disk /sys "$RS_DISK_RULE" "$RS_DISK_MIN_BYTES" "${RS_INSTALL_DISK:-}" || fail disk "$RS_DISK_WHY"
disk=$RS_DISK
line=$(rs_disk_scan /sys 0 | awk -F '|' -v n="$disk" '$1 == n')
bytes=$(echo "$line" | cut -d '|' -f 3)
kind=$(echo "$line" | cut -d '|' -f 2)
serial=$(echo "$line" | cut -d '|' -f 4)
model=$(echo "$line" | cut -d '|' -f 5)
how=${RS_INSTALL_DISK:-rule $RS_DISK_RULE}
if [ -n "${RS_IMAGE_SIZE:-}" ] && [ "$RS_IMAGE_SIZE" -gt "$bytes" ]; then
  fail disk "the image ($(rs_human "$RS_IMAGE_SIZE")) does not fit on /dev/$disk ($(rs_human "$bytes"))"
fi
event finish disk SUCCESS "/dev/$disk: $kind, $(rs_human "$bytes")${model:+, $model}${serial:+, serial $serial} (by $how)" \
  "\"disk\":{\"name\":\"$disk\",\"path\":\"/dev/$disk\",\"kind\":\"$kind\",\"sizeBytes\":$bytes,\"serial\":\"$(js "$serial")\",\"model\":\"$(js "$model")\",\"chosenBy\":\"$(js "$how")\"}"
say "install disk /dev/$disk ($kind, $(rs_human "$bytes")) by $how"

# ── the image, streamed onto the disk, its SHA-256 taken on the way ────────────────────────────
case "$RS_IMAGE_FORMAT" in
  raw|gz|xz|zst) ;;
  *) fail image "unknown image format \"$RS_IMAGE_FORMAT\"" ;;
esac
# Old signatures go first, the way curtin wipes superblocks: the start and end of every old
# partition and of the disk. The image is then written sparse — zstd seeks over its runs of
# zeros instead of writing them — so a stale RAID, LVM or file-system label can only survive
# where the new layout has data of its own.
for p in /sys/block/"$disk"/"$disk"*; do
  [ -r "$p/partition" ] || continue
  ps=$(cat "$p/start") pz=$(cat "$p/size")
  dd if=/dev/zero of="/dev/$disk" bs=512 seek="$ps" count=2048 conv=notrunc 2>/dev/null
  [ "$pz" -gt 2048 ] && dd if=/dev/zero of="/dev/$disk" bs=512 seek=$((ps + pz - 2048)) count=2048 conv=notrunc 2>/dev/null
done
# The MBR, both GPT copies: also what goes when a write fails, so the firmware never boots a
# half-written or corrupt system.
wipe() {
  dd if=/dev/zero of="/dev/$disk" bs=1048576 count=2 conv=fsync 2>/dev/null
  dd if=/dev/zero of="/dev/$disk" bs=1048576 seek=$(( bytes / 1048576 - 2 )) count=2 conv=fsync 2>/dev/null
  blockdev --rereadpt "/dev/$disk" 2>/dev/null
}
wipe
event start image "" "writing $RS_IMAGE_URL ($RS_IMAGE_FORMAT) to /dev/$disk"
started=$(cut -d. -f1 /proc/uptime)
rm -f /tmp/hash.fifo && mkfifo /tmp/hash.fifo
sha256sum < /tmp/hash.fifo > /tmp/image.sha256 &
hasher=$!
set -o pipefail
# zstd reads zstd, gzip and xz; a raw image is copied as it comes.
if [ "$RS_IMAGE_FORMAT" = raw ]; then
  wget -q -O - "$RS_IMAGE_URL" 2>/tmp/wget.err | tee /tmp/hash.fifo | dd of="/dev/$disk" bs=4194304 2>/tmp/unpack.err
else
  wget -q -O - "$RS_IMAGE_URL" 2>/tmp/wget.err | tee /tmp/hash.fifo | zstd -d -f -q --sparse -o "/dev/$disk" 2>/tmp/unpack.err
fi
rc=$?
set +o pipefail
wait $hasher
got=$(cut -d ' ' -f 1 /tmp/image.sha256)
seconds=$(( $(cut -d. -f1 /proc/uptime) - started ))
if [ "$got" != "$RS_IMAGE_SHA256" ]; then
  wipe
  if [ $rc -ne 0 ]; then
    fail image "writing the image failed: $(cat /tmp/wget.err /tmp/unpack.err | tail -n 3 | tr '\n' ' ')" "\"sha256\":\"$got\""
  fi
  fail image "checksum mismatch: the image's SHA-256 is $got, racksmith expects $RS_IMAGE_SHA256; /dev/$disk was wiped" "\"sha256\":\"$got\",\"expected\":\"$RS_IMAGE_SHA256\""
fi
if [ $rc -ne 0 ]; then
  wipe
  fail image "writing the image to /dev/$disk failed: $(cat /tmp/unpack.err | tail -n 3 | tr '\n' ' ')"
fi
sync
event finish image SUCCESS "image written to /dev/$disk in ${seconds} s, SHA-256 $got verified" "\"sha256\":\"$got\",\"seconds\":$seconds"

# ── the root partition: the one that ends last on the disk, grown to the end ────────────────────
blockdev --rereadpt "/dev/$disk" || fail grow "the kernel cannot read the new partition table of /dev/$disk"
sleep 1
root="" rootstart=-1 rootnum=""
for p in /sys/block/"$disk"/"$disk"*; do
  [ -r "$p/partition" ] || continue
  s=$(cat "$p/start")
  if [ "$s" -gt "$rootstart" ]; then rootstart=$s root=${p##*/} rootnum=$(cat "$p/partition"); fi
done
[ -n "$root" ] || fail grow "the image has no partition table /dev/$disk can show"
magic=$(dd if="/dev/$root" bs=1 skip=1080 count=2 2>/dev/null | od -An -tx1 | tr -d ' \n')
if [ "$magic" = 53ef ]; then
  before=$(( $(cat "/sys/block/$disk/$root/size") * 512 ))
  # A GPT image on a bigger disk has its backup table in the middle: move it to the end first.
  sfdisk --relocate gpt-bak-std "/dev/$disk" >/dev/null 2>&1
  echo ', +' | sfdisk --no-reread --no-tell-kernel -q -N "$rootnum" "/dev/$disk" > /tmp/sfdisk.out 2>&1 || fail grow "sfdisk could not grow partition $rootnum of /dev/$disk: $(tail -n 2 /tmp/sfdisk.out | tr '\n' ' ')"
  blockdev --rereadpt "/dev/$disk"
  sleep 1
  e2fsck -f -p "/dev/$root" > /tmp/e2fsck.out 2>&1
  [ $? -lt 4 ] || fail grow "e2fsck found errors on /dev/$root: $(tail -n 2 /tmp/e2fsck.out | tr '\n' ' ')"
  resize2fs "/dev/$root" > /tmp/resize2fs.out 2>&1 || fail grow "resize2fs /dev/$root: $(tail -n 2 /tmp/resize2fs.out | tr '\n' ' ')"
  after=$(( $(cat "/sys/block/$disk/$root/size") * 512 ))
  event finish grow SUCCESS "root partition /dev/$root grown from $(rs_human "$before") to $(rs_human "$after")" "\"partition\":\"$root\",\"fromBytes\":$before,\"toBytes\":$after"
else
  fail grow "the last partition /dev/$root holds no ext4 file system: cannot write the seed"
fi

# ── the NoCloud seed pointer: the installed system's cloud-init fetches the role config itself ──
mount -t ext4 "/dev/$root" /mnt || fail seed "cannot mount /dev/$root"
[ -d /mnt/etc/cloud ] || { umount /mnt; fail seed "the image has no cloud-init (/etc/cloud is missing)"; }
# A clean first boot, as `cloud-init clean` leaves it.
rm -rf /mnt/var/lib/cloud/instance /mnt/var/lib/cloud/instances /mnt/var/lib/cloud/data /mnt/var/lib/cloud/sem
mkdir -p /mnt/var/lib/cloud/seed/nocloud-net /mnt/etc/cloud/cloud.cfg.d
# meta-data names the instance (so later boots keep it without asking) and where the rest is.
printf 'instance-id: %s\nlocal-hostname: %s\nseedfrom: %s\n' "$RS_INSTANCE_ID" "$RS_HOSTNAME" "$SEED" > /mnt/var/lib/cloud/seed/nocloud-net/meta-data
: > /mnt/var/lib/cloud/seed/nocloud-net/user-data
fetch "${SEED}cloud.cfg" /mnt/etc/cloud/cloud.cfg.d/99_racksmith.cfg || { umount /mnt; fail seed "cannot fetch ${SEED}cloud.cfg"; }
sync
umount /mnt || fail seed "cannot unmount /dev/$root"
event finish seed SUCCESS "NoCloud seed on /dev/$root: instance $RS_INSTANCE_ID from $SEED"

# ── UEFI: a boot entry for the installed system, right after the network ───────────────────────
# As curtin and Ironic's agent do: firmware does not always make an entry for a new disk by itself,
# and racksmith stays first (the network) so that a reimage needs no one at the console.
if [ -d /sys/firmware/efi ]; then
  [ -d /sys/firmware/efi/efivars ] && [ -n "$(ls /sys/firmware/efi/efivars 2>/dev/null)" ] || mount -t efivarfs efivarfs /sys/firmware/efi/efivars 2>/dev/null || fail boot-entry "cannot reach the UEFI variables (efivarfs)"
  esp="" espdev=""
  for p in /sys/block/"$disk"/"$disk"*; do
    [ -r "$p/partition" ] || continue
    n=$(cat "$p/partition")
    t=$(sfdisk --part-type "/dev/$disk" "$n" 2>/dev/null | tr 'a-f' 'A-F')
    [ "$t" = C12A7328-F81F-11D2-BA4B-00A0C93EC93B ] && esp=$n espdev=${p##*/}
  done
  [ -n "$esp" ] || fail boot-entry "the image has no EFI system partition: it cannot boot on this UEFI machine"
  mount -t vfat -o ro "/dev/$espdev" /mnt || fail boot-entry "cannot mount the EFI system partition /dev/$espdev"
  loader=""
  for l in EFI/debian/shimx64.efi EFI/ubuntu/shimx64.efi EFI/BOOT/BOOTX64.EFI; do
    [ -f "/mnt/$l" ] && { loader=$l; break; }
  done
  umount /mnt
  [ -n "$loader" ] || fail boot-entry "no boot loader on the EFI system partition (EFI/BOOT/BOOTX64.EFI)"
  ours() { efibootmgr | sed -n 's/^Boot\([0-9A-Fa-f]\{4\}\)\*\{0,1\} racksmith: .*/\1/p'; }
  for b in $(ours); do efibootmgr -q -b "$b" -B; done
  efibootmgr -q -c -d "/dev/$disk" -p "$esp" -L "racksmith: ${RS_HOSTNAME:-$disk}" -l "\\$(echo "$loader" | tr '/' '\\')" > /tmp/efibootmgr.out 2>&1 || fail boot-entry "efibootmgr could not add the entry: $(tail -n 2 /tmp/efibootmgr.out | tr '\n' ' ')"
  new=$(ours | head -n 1)
  current=$(efibootmgr | sed -n 's/^BootCurrent: //p')
  rest=$(efibootmgr | sed -n 's/^BootOrder: //p' | tr ',' '\n' | grep -v -i -e "^$current\$" -e "^$new\$" | tr '\n' ',' | sed 's/,$//')
  efibootmgr -q -o "${current:+$current,}$new${rest:+,$rest}" || fail boot-entry "efibootmgr could not set the boot order"
  # The reboot into the new system goes straight to it (BootNext, used once): its first boot does
  # not depend on how the network boot program leaves, which varies between iPXE builds and firmware.
  efibootmgr -q -n "$new" || fail boot-entry "efibootmgr could not set BootNext"
  event finish boot-entry SUCCESS "UEFI Boot$new: $loader on /dev/$espdev, after the network (Boot${current:-?}); order $(efibootmgr | sed -n 's/^BootOrder: //p'); next boot Boot$new"
fi

# ── done: the OS is on disk ────────────────────────────────────────────────────────────────────
post "${SEED}installed" application/x-www-form-urlencoded "source=racksmith-agent" || fail installed "racksmith did not take the /installed report"
event finish deploy SUCCESS "installed on /dev/$disk; rebooting into it"
say "installed on /dev/$disk; rebooting"
sync
reboot -f
