#!/bin/sh
# racksmith: debian-installer progress reporter for worker1 (52:54:00:77:00:21), started in the
# background by preseed/early_command. It follows d-i's syslog and posts each installer step
# main-menu starts ("Menu item 'netcfg' selected") and each step that fails ("Configuring
# 'netcfg' failed with error code 1") to racksmith as curtin-style events. Its parent closed
# every inherited descriptor: d-i waits on them otherwise.
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

rs_event start d-i/preseed "" "preseed loaded; early_command ran"
done_lines=0
i=0
# Bounded: at most a day of polling, every 2 s.
while [ $i -lt 43200 ]; do
  i=$((i + 1))
  sleep 2
  [ -r /var/log/syslog ] || continue
  total=$(wc -l < /var/log/syslog)
  [ "$total" -gt "$done_lines" ] || continue
  tail -n +$((done_lines + 1)) /var/log/syslog | head -n $((total - done_lines)) > /tmp/rs-reporter.new
  done_lines=$total
  while IFS= read -r line; do
    case "$line" in
      *"Menu item '"*"' selected"*)
        item=${line#*Menu item \'}
        item=${item%%\'*}
        rs_event start "d-i/$item" "" "" ;;
      *"Configuring '"*"' failed with error code"*)
        item=${line#*Configuring \'}
        item=${item%%\'*}
        rs_event finish "d-i/$item" FAIL "${line#*: }" ;;
    esac
  done < /tmp/rs-reporter.new
done
