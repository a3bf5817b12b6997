# racksmith: the install disk, chosen by one rule. Sourced by the deploy agent (busybox sh), by
# the debian-installer's partman/early_command (d-i's busybox sh), and by the tests (dash) against
# a fake sysfs. POSIX sh only; no udev, no lsblk: everything comes from sysfs.
#
# The rule:
#   - an explicit choice (the machine's installDisk) wins: /dev/NAME, /dev/disk/by-id/NAME or
#     serial:SERIAL. It must name a whole disk of at least the minimum size.
#   - otherwise among the eligible disks — whole disks of at least the minimum size that are not
#     removable, not on USB and not read-only; NVMe, SATA/SAS, virtio and MMC all count — the
#     cluster's installDiskRule picks: `smallest` (the boot SSD beside big data disks), `largest`
#     or `first`.
#   - ties, and `first`, follow one order: NVMe, then SATA/SAS (sd*), then virtio, then the
#     rest; within a kind by kernel name (nvme0n1 before nvme1n1, sdb before sdaa).
#
# rs_disk_scan SYS MIN_BYTES prints one line per whole disk:
#   NAME|KIND|BYTES|SERIAL|MODEL|REMOVABLE|USB|ROTATIONAL|WWID|RANK|WHY_NOT
# (WHY_NOT empty when the disk is eligible). rs_pick_disk SYS RULE MIN_BYTES [WANT] sets
# RS_DISK to the chosen name and returns 0, or sets RS_DISK_WHY and returns 1.

rs_trim() {
  # Text from sysfs: NULs and bars out, runs of blanks to one, no blanks at either end.
  tr -d '\000|' | tr '\t\n' '  ' | sed -e 's/  */ /g' -e 's/^ //' -e 's/ $//'
}

rs_read() {
  [ -r "$1" ] && rs_trim < "$1"
}

rs_disk_kind() {
  # $1 sysfs root, $2 disk name
  case "$2" in
    nvme*) echo nvme; return ;;
    vd*) echo virtio; return ;;
    mmcblk*) echo mmc; return ;;
    xvd*) echo xen; return ;;
  esac
  case "$(readlink -f "$1/block/$2" 2>/dev/null)" in
    */usb*) echo usb; return ;;
  esac
  case "$2" in
    sd*)
      if [ "$(rs_read "$1/block/$2/device/vendor")" = ATA ]; then echo sata; else echo sas; fi ;;
    *) echo other ;;
  esac
}

rs_disk_serial() {
  s=$1/block/$2
  if [ -r "$s/serial" ]; then rs_read "$s/serial"; return; fi
  if [ -r "$s/device/serial" ]; then rs_read "$s/device/serial"; return; fi
  # SCSI/SATA: the unit serial number VPD page (0x80): a 4-byte header, then the serial.
  if [ -r "$s/device/vpd_pg80" ]; then tail -c +5 "$s/device/vpd_pg80" | rs_trim; return; fi
}

rs_disk_rank() {
  case "$1" in
    nvme) r=1 ;;
    sata|sas) r=2 ;;
    virtio) r=3 ;;
    *) r=4 ;;
  esac
  # Kind, then name length, then name: sdb before sdaa, as the kernel numbers them.
  printf '%s%03d%s' "$r" "${#2}" "$2"
}

rs_human() {
  # Bytes as decimal gigabytes with one digit, as disk vendors label them.
  awk -v b="$1" 'BEGIN { printf "%.1f GB", b / 1000000000 }'
}

rs_disk_scan() {
  sys=$1 min=$2
  for d in "$sys"/block/*; do
    [ -e "$d" ] || continue
    n=${d##*/}
    case "$n" in
      loop*|ram*|zram*|dm-*|md*|sr*|fd*|nbd*|mtdblock*|drbd*|rbd*|nullb*|pmem*) continue ;;
    esac
    kind=$(rs_disk_kind "$sys" "$n")
    sectors=$(rs_read "$d/size")
    bytes=$(( ${sectors:-0} * 512 ))
    serial=$(rs_disk_serial "$sys" "$n")
    model=$(rs_read "$d/device/model")
    removable=$(rs_read "$d/removable")
    ro=$(rs_read "$d/ro")
    rota=$(rs_read "$d/queue/rotational")
    wwid=$(rs_read "$d/wwid")
    [ -n "$wwid" ] || wwid=$(rs_read "$d/device/wwid")
    usb=0
    [ "$kind" = usb ] && usb=1
    why=""
    if [ "$bytes" -eq 0 ]; then why="no medium"
    elif [ "$usb" = 1 ]; then why="on USB"
    elif [ "${removable:-0}" = 1 ]; then why="removable"
    elif [ "${ro:-0}" = 1 ]; then why="read-only"
    elif [ "$bytes" -lt "$min" ]; then why="$(rs_human "$bytes"), smaller than $(rs_human "$min")"
    fi
    echo "$n|$kind|$bytes|$serial|$model|${removable:-0}|$usb|${rota:-0}|$wwid|$(rs_disk_rank "$kind" "$n")|$why"
  done | sort -t '|' -k 10,10
}

# The disk an explicit installDisk names, from the scan on stdin; empty when none does.
rs_disk_named() {
  want=$1 sys=$2
  case "$want" in
    serial:*)
      s=${want#serial:}
      awk -F '|' -v s="$s" '$4 == s { print $1; exit }'
      return ;;
    /dev/disk/by-id/*)
      id=${want#/dev/disk/by-id/}
      # Where udev runs (d-i), the link itself says.
      if [ -e "$want" ]; then
        t=$(readlink -f "$want")
        awk -F '|' -v n="${t#/dev/}" '$1 == n { print $1; exit }'
        return
      fi
      # Without udev: udev's names are <bus>-<ID_SERIAL>, ID_SERIAL ending in _<serial> (the
      # model before it), or wwn-0x<WWN>, nvme-eui.<EUI>.
      case "$id" in
        wwn-0x*)
          w=${id#wwn-0x}
          awk -F '|' -v w="$w" 'tolower($9) == "naa." tolower(w) || tolower($9) == "0x" tolower(w) { print $1; exit }' ;;
        nvme-eui.*)
          awk -F '|' -v w="${id#nvme-}" 'tolower($9) == tolower(w) { print $1; exit }' ;;
        *-*)
          bus=${id%%-*} rest=${id#*-}
          awk -F '|' -v bus="$bus" -v rest="$rest" '
            function kindok(k) {
              return (bus == "ata" && k == "sata") || (bus == "nvme" && k == "nvme") || (bus == "virtio" && k == "virtio") ||
                     (bus == "scsi" && (k == "sas" || k == "sata")) || (bus == "usb" && k == "usb") || (bus == "mmc" && k == "mmc")
            }
            $4 != "" && kindok($2) && (rest == $4 || substr(rest, length(rest) - length($4)) == "_" $4) { print $1; exit }' ;;
      esac
      return ;;
    /dev/*)
      awk -F '|' -v n="${want#/dev/}" '$1 == n { print $1; exit }'
      return ;;
  esac
}

rs_pick_disk() {
  sys=$1 rule=$2 min=$3 want=${4:-}
  RS_DISK="" RS_DISK_WHY=""
  scan=$(rs_disk_scan "$sys" "$min")
  if [ -z "$scan" ]; then
    RS_DISK_WHY="no disks at all"
    return 1
  fi
  if [ -n "$want" ]; then
    n=$(echo "$scan" | rs_disk_named "$want" "$sys")
    if [ -z "$n" ]; then
      RS_DISK_WHY="installDisk $want matches no disk here ($(echo "$scan" | awk -F '|' '{ printf "%s%s", sep, $1; sep = ", " }'))"
      return 1
    fi
    line=$(echo "$scan" | awk -F '|' -v n="$n" '$1 == n')
    bytes=$(echo "$line" | cut -d '|' -f 3)
    if [ "$bytes" -lt "$min" ]; then
      RS_DISK_WHY="installDisk $want is $n, $(rs_human "$bytes"), smaller than $(rs_human "$min")"
      return 1
    fi
    RS_DISK=$n
    return 0
  fi
  eligible=$(echo "$scan" | awk -F '|' '$11 == ""')
  if [ -z "$eligible" ]; then
    RS_DISK_WHY="no disk matched the rule $rule (at least $(rs_human "$min"), not removable, not USB): $(echo "$scan" | awk -F '|' '{ printf "%s%s %s", sep, $1, $11; sep = "; " }')"
    return 1
  fi
  case "$rule" in
    smallest) RS_DISK=$(echo "$eligible" | sort -t '|' -k 3,3n -k 10,10 | head -n 1 | cut -d '|' -f 1) ;;
    largest) RS_DISK=$(echo "$eligible" | sort -t '|' -k 3,3nr -k 10,10 | head -n 1 | cut -d '|' -f 1) ;;
    first) RS_DISK=$(echo "$eligible" | head -n 1 | cut -d '|' -f 1) ;;
    *) RS_DISK_WHY="unknown install disk rule \"$rule\""; return 1 ;;
  esac
  return 0
}
