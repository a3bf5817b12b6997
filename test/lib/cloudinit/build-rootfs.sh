#!/bin/sh
# Builds the Debian 12 root filesystem that the cloud-init test runs racksmith's role configs in,
# plus the Debian packages (haproxy and friends, with their dependencies that the root lacks) that
# the test's package mirror serves. The caller (test/lib/cloudinit/rootfs.ts) holds the locks,
# builds into a temporary folder and renames it into the cache only when this script succeeds.
#
# Usage: build-rootfs.sh DEST MIRROR SECURITY_MIRROR INCLUDE MIRROR_DEBS
#   DEST/root  the root filesystem;  DEST/debs  the downloaded .deb files
set -eu
dest=$1 mirror=$2 security=$3 include=$4 mirror_debs=$5
root=$dest/root
mkdir -p "$root" "$dest/debs"

# A private mount namespace: whatever debootstrap or a package script mounts inside the root
# (proc, sys, dev) disappears with the namespace, even if the build fails half way.
unshare --mount --propagation private \
  debootstrap --variant=minbase --include="$include" bookworm "$root" "$mirror"

cat > "$root/etc/apt/sources.list" <<SOURCES
deb $mirror bookworm main
deb $mirror bookworm-updates main
deb $security bookworm-security main
SOURCES
cp /etc/resolv.conf "$root/etc/resolv.conf"

# cloud-init is installed after debootstrap, by apt inside the root: debootstrap does not resolve
# virtual packages, and python3-cryptography (a cloud-init dependency) needs one.
unshare --mount --pid --fork --propagation private sh -eu -c '
  root=$1 mirror_debs=$2
  mount -t proc proc "$root/proc"
  mount -t sysfs sysfs "$root/sys"
  mount --rbind /dev "$root/dev"
  export DEBIAN_FRONTEND=noninteractive LC_ALL=C PATH=/usr/sbin:/usr/bin:/sbin:/bin
  chroot "$root" apt-get update
  chroot "$root" apt-get -y dist-upgrade
  chroot "$root" apt-get install -y cloud-init
  # An installed Ubuntu server has its locale generated and set by the installer. Without that,
  # the locale module of cloud-init runs the Debian locale-gen, which ignores its argument: fails.
  sed -i "s/^# *\(en_US.UTF-8 UTF-8\)/\1/" "$root/etc/locale.gen"
  chroot "$root" locale-gen
  chroot "$root" update-locale LANG=en_US.UTF-8
  chroot "$root" apt-get clean
  # shellcheck disable=SC2086
  chroot "$root" apt-get install -y --download-only $mirror_debs
' sh "$root" "$mirror_debs"

mv "$root"/var/cache/apt/archives/*.deb "$dest/debs/"
chroot "$root" apt-get clean
rm -rf "$root"/var/lib/apt/lists/* "$root/etc/resolv.conf"
# Every test run creates its own host keys and machine id, as a first boot does.
rm -f "$root"/etc/ssh/ssh_host_*
: > "$root/etc/machine-id"
rm -f "$root/var/lib/dbus/machine-id"
dpkg-query --admindir="$root/var/lib/dpkg" -W -f '${Package} ${Version}\n' > "$dest/packages.txt"
