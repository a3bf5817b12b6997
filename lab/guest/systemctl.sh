#!/bin/sh
# systemctl for the virtual rack's installed system (no systemd there): haproxy is really
# started, reloaded (haproxy -sf: the old process finishes its connections) and checked; other
# units (kubelet, containerd) are the stand-in's business and always "fine".
verb=""; unit=""
for a in "$@"; do
  case "$a" in
    -*) ;;
    *) if [ -z "$verb" ]; then verb=$a; elif [ -z "$unit" ]; then unit=${a%.service}; fi ;;
  esac
done
CFG=/etc/haproxy/haproxy.cfg
PID=/run/haproxy.pid
running() { [ -s $PID ] && kill -0 "$(head -n 1 $PID)" 2>/dev/null; }
# keepalived (a load balancer of a pair) is really started and reloaded too.
if [ "$unit" = keepalived ]; then
  KPID=/run/keepalived.pid
  kr() { [ -s $KPID ] && kill -0 "$(head -n 1 $KPID)" 2>/dev/null; }
  case "$verb" in
    is-active) kr ;;
    start) kr || keepalived -f /etc/keepalived/keepalived.conf -p $KPID -r /run/keepalived-vrrp.pid -l ;;
    restart)
      if kr; then kill "$(head -n 1 $KPID)"; sleep 1; fi
      keepalived -f /etc/keepalived/keepalived.conf -p $KPID -r /run/keepalived-vrrp.pid -l ;;
    reload) if kr; then kill -HUP "$(head -n 1 $KPID)"; else keepalived -f /etc/keepalived/keepalived.conf -p $KPID -r /run/keepalived-vrrp.pid -l; fi ;;
    stop) if kr; then kill "$(head -n 1 $KPID)"; fi ;;
    enable|disable|daemon-reload) exit 0 ;;
    *) echo "Unknown command verb $verb." >&2; exit 1 ;;
  esac
  exit $?
fi
if [ "$unit" != haproxy ]; then
  case "$verb" in is-active) exit 3 ;; *) exit 0 ;; esac
fi
case "$verb" in
  is-active) running ;;
  start) running || haproxy -f $CFG -D -p $PID ;;
  restart)
    if running; then kill "$(head -n 1 $PID)"; sleep 0.5; fi
    haproxy -f $CFG -D -p $PID ;;
  reload)
    if running; then haproxy -f $CFG -D -p $PID -sf $(cat $PID); else haproxy -f $CFG -D -p $PID; fi ;;
  stop) if running; then kill "$(head -n 1 $PID)"; fi ;;
  enable|disable|daemon-reload) exit 0 ;;
  *) echo "Unknown command verb $verb." >&2; exit 1 ;;
esac
