#!/bin/sh
# Builds the Debian 12 root filesystem that the cloud-init test runs racksmith's role configs in,
# plus the Debian packages (haproxy and friends, with their dependencies that the root lacks) that
# the test's package mirror serves. The caller (test/lib/cloudinit/rootfs.ts) holds the cache's
# lock, builds into a temporary folder and renames it into the cache only when this succeeds.
#
# Usage: build-rootfs.sh DEST MIRROR SECURITY_MIRROR INCLUDE MIRROR_DEBS DOWNLOADS
#   DEST/root  the root filesystem;  DEST/debs  the downloaded .deb files
#   DOWNLOADS  a folder kept between builds: the .deb files debootstrap and apt fetched, so a
#              build that was killed half way (a suite time limit) or a new cache key does not
#              download them again. debootstrap and apt check each file against the signed
#              indexes before they use it.
set -eu
dest=$1 mirror=$2 security=$3 include=$4 mirror_debs=$5 downloads=$6
root=$dest/root
mkdir -p "$root" "$dest/debs" "$downloads/debootstrap" "$downloads/apt/partial"
step() { echo "=== $(date -u +%H:%M:%S) $*"; }

# A private mount namespace: whatever debootstrap or a package script mounts inside the root
# (proc, sys, dev) disappears with the namespace, even if the build fails half way.
step debootstrap
unshare --mount --propagation private \
  debootstrap --variant=minbase --cache-dir="$downloads/debootstrap" --include="$include" bookworm "$root" "$mirror"

cat > "$root/etc/apt/sources.list" <<SOURCES
deb $mirror bookworm main
deb $mirror bookworm-updates main
deb $security bookworm-security main
SOURCES
cp /etc/resolv.conf "$root/etc/resolv.conf"

# cloud-init is installed after debootstrap, by apt inside the root: debootstrap does not resolve
# virtual packages, and python3-cryptography (a cloud-init dependency) needs one.
unshare --mount --pid --fork --propagation private sh -eu -c '
  root=$1 mirror_debs=$2 downloads=$3
  step() { echo "=== $(date -u +%H:%M:%S) $*"; }
  mount -t proc proc "$root/proc"
  mount -t sysfs sysfs "$root/sys"
  mount --rbind /dev "$root/dev"
  mkdir -p "$root/var/cache/racksmith-downloads"
  mount --bind "$downloads/apt" "$root/var/cache/racksmith-downloads"
  # apt downloads as its _apt user (uid of the root filesystem).
  chroot "$root" chown _apt:root /var/cache/racksmith-downloads/partial
  export DEBIAN_FRONTEND=noninteractive LC_ALL=C PATH=/usr/sbin:/usr/bin:/sbin:/bin
  kept="-o Dir::Cache::Archives=/var/cache/racksmith-downloads/"
  step apt-get update
  chroot "$root" apt-get update
  step apt-get dist-upgrade
  chroot "$root" apt-get $kept -y dist-upgrade
  step apt-get install cloud-init
  chroot "$root" apt-get $kept install -y cloud-init
  # An installed Ubuntu server has its locale generated and set by the installer. Without that,
  # the locale module of cloud-init runs the Debian locale-gen, which ignores its argument: fails.
  step locale-gen
  sed -i "s/^# *\(en_US.UTF-8 UTF-8\)/\1/" "$root/etc/locale.gen"
  chroot "$root" locale-gen
  chroot "$root" update-locale LANG=en_US.UTF-8
  # The mirror packages go to the (empty) archive folder inside the root, so exactly they move out.
  step apt-get download the mirror packages
  chroot "$root" apt-get clean
  # shellcheck disable=SC2086
  chroot "$root" apt-get install -y --download-only $mirror_debs
  umount "$root/var/cache/racksmith-downloads"
' sh "$root" "$mirror_debs" "$downloads"

step finish
mv "$root"/var/cache/apt/archives/*.deb "$dest/debs/"
rmdir "$root/var/cache/racksmith-downloads"
chroot "$root" apt-get clean
rm -rf "$root"/var/lib/apt/lists/* "$root/etc/resolv.conf"
# Every test run creates its own host keys and machine id, as a first boot does.
rm -f "$root"/etc/ssh/ssh_host_*
: > "$root/etc/machine-id"
rm -f "$root/var/lib/dbus/machine-id"
dpkg-query --admindir="$root/var/lib/dpkg" -W -f '${Package} ${Version}\n' > "$dest/packages.txt"
step done
