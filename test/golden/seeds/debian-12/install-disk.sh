#!/bin/sh
# racksmith: the install disk of worker1 (52:54:00:77:00:21), for partman (partman/early_command):
# the same rule the deploy agent runs (smallest, installDisk serial:S5GXNF0R123456),
# over this machine's sysfs. The chosen disk becomes partman-auto/disk and GRUB's boot device.
# POST a JSON event to racksmith. d-i's busybox wget cannot POST, so the request is written by
# hand and sent with nc (HTTP/1.0: one request, the server closes).
rs_post() {
  rs_len=$(printf '%s' "$1" | wc -c)
  printf 'POST %s HTTP/1.0\r\nHost: %s:%s\r\nContent-Type: application/json\r\nContent-Length: %s\r\n\r\n%s' \
    '/seed/tok3n-Abcdefghijklmnopqrstuv/events' '10.77.0.1' '8080' "$rs_len" "$1" \
    | nc -w 10 '10.77.0.1' '8080' >/dev/null 2>&1
}
# JSON string contents: backslashes and quotes escaped, control characters dropped.
rs_js() { printf '%s' "$1" | sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' | tr -d '\000-\037'; }
# rs_event TYPE NAME RESULT DESCRIPTION [EXTRA JSON MEMBERS]
rs_event() {
  rs_post "{\"event_type\":\"$1\",\"origin\":\"debian-installer\",\"name\":\"$2\",\"result\":\"$3\",\"description\":\"$(rs_js "$4")\"${5:+,$5}}"
}

# (agent/disk-rule.sh, verbatim)


if ! rs_pick_disk /sys 'smallest' '8000000000' 'serial:S5GXNF0R123456'; then
  rs_event finish d-i/disk FAIL "$RS_DISK_WHY"
  echo "racksmith: $RS_DISK_WHY" >&2
  exit 1
fi
line=$(rs_disk_scan /sys 0 | awk -F '|' -v n="$RS_DISK" '$1 == n')
bytes=$(echo "$line" | cut -d '|' -f 3)
kind=$(echo "$line" | cut -d '|' -f 2)
serial=$(echo "$line" | cut -d '|' -f 4)
model=$(echo "$line" | cut -d '|' -f 5)
how='installDisk serial:S5GXNF0R123456'
debconf-set partman-auto/disk "/dev/$RS_DISK"
debconf-set grub-installer/bootdev "/dev/$RS_DISK"
rs_event finish d-i/disk SUCCESS "/dev/$RS_DISK: $kind, $(rs_human "$bytes")${model:+, $model}${serial:+, serial $serial} (by $how)" \
  "\"disk\":{\"name\":\"$RS_DISK\",\"path\":\"/dev/$RS_DISK\",\"kind\":\"$kind\",\"sizeBytes\":$bytes,\"serial\":\"$(rs_js "$serial")\",\"model\":\"$(rs_js "$model")\",\"chosenBy\":\"$(rs_js "$how")\"}"
