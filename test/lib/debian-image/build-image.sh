#!/bin/sh
# Builds the Debian 12 disk image that the image-deployment tests write onto a machine's disk:
# what a distribution's cloud image is, made here from Debian packages on the host (dpkg inside a
# TCG guest is far too slow). GPT like Debian's own cloud images — partition 14 BIOS boot,
# partition 15 the EFI system partition, partition 1 the root file system, last on the disk so
# that it can be grown — GRUB for BIOS (boot.img in the MBR, core.img in partition 14) and for
# UEFI (\EFI\BOOT\BOOTX64.EFI), systemd, cloud-init, openssh-server and the kernel. Built without
# loop devices or mounts: the file systems are written into the image file at their offsets
# (mkfs.ext4 -d, mkfs.fat --offset, mtools). The caller (index.ts) holds the cache's lock, builds
# into a temporary folder and renames it into the cache only when this succeeds.
#
# Usage: build-image.sh DEST MIRROR SECURITY_MIRROR INCLUDE EXTRA DOWNLOADS SIZE_MIB
#   INCLUDE   packages debootstrap installs (comma separated)
#   EXTRA     packages apt installs afterwards inside the root (space separated), once the
#             security suite is there (so only the current kernel lands): the kernel, cloud-init
#             and what is pre-baked so that the guest's own package work stays small
#   DEST/disk.img.zst  the image;  DEST/packages.txt  what it holds
set -eu
dest=$1 mirror=$2 security=$3 include=$4 extra=$5 downloads=$6 size_mib=$7
root=$dest/root
img=$dest/disk.img
mkdir -p "$root" "$downloads/debootstrap" "$downloads/apt/partial"
step() { echo "=== $(date -u +%H:%M:%S) $*"; }

step debootstrap
unshare --mount --propagation private \
  debootstrap --variant=minbase --cache-dir="$downloads/debootstrap" --include="$include" bookworm "$root" "$mirror"

# The image's own sources: Debian's archive by name, as a distribution image ships them. Sites
# reach it directly or through an apt proxy (racksmith's --apt-proxy puts one into cloud-init).
cat > "$root/etc/apt/sources.list" <<SOURCES
deb http://deb.debian.org/debian bookworm main
deb http://deb.debian.org/debian bookworm-updates main
deb http://deb.debian.org/debian-security bookworm-security main
SOURCES
cp /etc/resolv.conf "$root/etc/resolv.conf"

unshare --mount --pid --fork --propagation private sh -eu -c '
  root=$1 extra=$2 downloads=$3 mirror=$4 security=$5
  step() { echo "=== $(date -u +%H:%M:%S) $*"; }
  mount -t proc proc "$root/proc"
  mount -t sysfs sysfs "$root/sys"
  mount --rbind /dev "$root/dev"
  mkdir -p "$root/var/cache/racksmith-downloads"
  mount --bind "$downloads/apt" "$root/var/cache/racksmith-downloads"
  chroot "$root" chown _apt:root /var/cache/racksmith-downloads/partial
  export DEBIAN_FRONTEND=noninteractive LC_ALL=C PATH=/usr/sbin:/usr/bin:/sbin:/bin
  kept="-o Dir::Cache::Archives=/var/cache/racksmith-downloads/"
  # The build itself uses the mirror this machine uses (a local one on CI).
  mv "$root/etc/apt/sources.list" "$root/etc/apt/sources.list.image"
  printf "deb %s bookworm main\ndeb %s bookworm-updates main\ndeb %s bookworm-security main\n" "$mirror" "$mirror" "$security" > "$root/etc/apt/sources.list"
  step apt-get update
  chroot "$root" apt-get update
  step apt-get dist-upgrade
  chroot "$root" apt-get $kept -y dist-upgrade
  step apt-get install $extra
  # shellcheck disable=SC2086
  chroot "$root" apt-get $kept install -y --no-install-recommends $extra
  step locale-gen
  sed -i "s/^# *\(en_US.UTF-8 UTF-8\)/\1/" "$root/etc/locale.gen"
  chroot "$root" locale-gen
  chroot "$root" update-locale LANG=en_US.UTF-8
  mv "$root/etc/apt/sources.list.image" "$root/etc/apt/sources.list"
  umount "$root/var/cache/racksmith-downloads"
' sh "$root" "$extra" "$downloads" "$mirror" "$security"

step configure
rmdir "$root/var/cache/racksmith-downloads"
chroot "$root" apt-get clean
rm -rf "$root"/var/lib/apt/lists/* "$root/etc/resolv.conf"
rm -f "$root"/etc/ssh/ssh_host_*
: > "$root/etc/machine-id"
rm -f "$root/var/lib/dbus/machine-id"
echo debian > "$root/etc/hostname"
printf '127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n' > "$root/etc/hosts"
# The root partition is partition 1; the disk it lands on is the machine's business.
root_uuid=$(cat /proc/sys/kernel/random/uuid)
esp_id=$(od -An -N4 -tx4 /dev/urandom | tr -d ' ')
printf 'UUID=%s / ext4 errors=remount-ro 0 1\n' "$root_uuid" > "$root/etc/fstab"
# ifupdown sources what cloud-init renders; nothing else brings interfaces up.
mkdir -p "$root/etc/network/interfaces.d"
printf 'source /etc/network/interfaces.d/*\n\nauto lo\niface lo inet loopback\n' > "$root/etc/network/interfaces"

# GRUB: the host's GRUB 2.06 (Debian 12), its modules copied into /boot/grub like grub-install
# does, a configuration that boots the kernel Debian's kernel package linked at /vmlinuz.
mkdir -p "$root/boot/grub"
for target in i386-pc x86_64-efi; do
  mkdir -p "$root/boot/grub/$target"
  cp /usr/lib/grub/$target/*.mod /usr/lib/grub/$target/*.lst "$root/boot/grub/$target/"
done
cat > "$root/boot/grub/grub.cfg" <<CFG
set timeout=0
serial --unit=0 --speed=115200
terminal_input serial console
terminal_output serial console
search --no-floppy --fs-uuid --set=root $root_uuid
echo "Debian GNU/Linux 12: loading the kernel from the disk"
linux /vmlinuz root=UUID=$root_uuid ro console=tty0 console=ttyS0,115200
initrd /initrd.img
boot
CFG
printf 'search --no-floppy --fs-uuid --set=root %s\nset prefix=($root)/boot/grub\n' "$root_uuid" > "$dest/early.cfg"
modules="part_gpt part_msdos ext2 fat search search_fs_uuid normal configfile linux echo test serial terminal"
grub-mkimage -O i386-pc -o "$dest/core.img" -c "$dest/early.cfg" -p /boot/grub biosdisk $modules
grub-mkimage -O x86_64-efi -o "$dest/BOOTX64.EFI" -c "$dest/early.cfg" -p /boot/grub $modules

dpkg-query --admindir="$root/var/lib/dpkg" -W -f '${Package} ${Version}\n' > "$dest/packages.txt"

step disk image
# Sectors: 14 = BIOS boot 2048–8191, 15 = ESP 8192–262143 (124 MiB), 1 = root to the end.
rm -f "$img"
truncate -s "${size_mib}M" "$img"
sgdisk -n 14:2048:8191 -t 14:ef02 -c 14:bios \
       -n 15:8192:262143 -t 15:ef00 -c 15:esp \
       -n 1:262144:0 -t 1:8300 -c 1:root "$img" >/dev/null
root_end=$(sgdisk -i 1 "$img" | sed -n 's/^Last sector: \([0-9]*\).*/\1/p')
root_kib=$(( (root_end - 262144 + 1) / 2 ))
mkfs.ext4 -q -F -L root -U "$root_uuid" -O ^orphan_file,^metadata_csum_seed -d "$root" -E offset=$((262144 * 512)) "$img" "${root_kib}k"
mkfs.fat --offset=8192 -F 16 -n EFI -i "$esp_id" "$img" $(( (262144 - 8192) / 2 )) >/dev/null
mmd -i "$img@@$((8192 * 512))" ::/EFI ::/EFI/BOOT
mcopy -i "$img@@$((8192 * 512))" "$dest/BOOTX64.EFI" ::/EFI/BOOT/BOOTX64.EFI

# BIOS: boot.img in the MBR (its code only: the partition table stays), pointing at core.img in
# partition 14, and core.img's first block list pointing at the rest of itself — what
# grub-bios-setup does for an embedded core (grub-core/boot/i386/pc/boot.S, diskboot.S).
le64() { v=$1; i=0; while [ $i -lt 8 ]; do printf "\\$(printf %o $((v & 255)))"; v=$((v >> 8)); i=$((i + 1)); done; }
cp /usr/lib/grub/i386-pc/boot.img "$dest/boot.img"
le64 2048 | dd of="$dest/boot.img" bs=1 seek=$((0x5c)) conv=notrunc status=none
printf '\220\220' | dd of="$dest/boot.img" bs=1 seek=$((0x66)) conv=notrunc status=none
le64 2049 | dd of="$dest/core.img" bs=1 seek=500 conv=notrunc status=none
dd if="$dest/boot.img" of="$img" bs=1 count=$((0x1b8)) conv=notrunc status=none
dd if="$dest/core.img" of="$img" bs=512 seek=2048 conv=notrunc status=none

step compress
stat -c %s "$img" > "$dest/raw-size"
zstd -q -T0 -3 --rm "$img" -o "$img.zst"
rm -rf "$root" "$dest/core.img" "$dest/boot.img" "$dest/BOOTX64.EFI" "$dest/early.cfg"
echo "$root_uuid" > "$dest/root-uuid"
step done
