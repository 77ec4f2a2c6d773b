# `invoke decommission` (NAME WITH_REDIS WITH_MONITORING), after this host's DR bundle was
# fetched: stop ARK for good, then remove its units, files and users. Distro packages stay
# (Redis and Prometheus are stopped and disabled where ARK ran them). Prints what it removed,
# one `removed: ...` line each, and `left: ...` for anything still there (exit 1).
set -u
with_redis=${1:-no}
with_monitoring=${2:-no}
units=$(systemctl list-units --all --no-legend --plain 'ark*' 2>/dev/null | awk '{print $1}')
files=$(systemctl list-unit-files --no-legend --plain 'ark*' 2>/dev/null | awk '{print $1}')
for u in $units $files; do
  systemctl disable --now "$u" >/dev/null 2>&1 || systemctl stop "$u" >/dev/null 2>&1
done
[ -n "$units$files" ] && echo "removed: units $(echo $units $files | tr ' ' '\n' | sort -u | tr '\n' ' ')"
if [ "$with_redis" = yes ]; then
  systemctl disable --now redis-server.service >/dev/null 2>&1 && echo "removed: redis-server (stopped, disabled)"
fi
# Issue #20: a Sentinel ARK ran (its config names ARK's sets) stops with the host's ARK.
if grep -q '^sentinel monitor ark-' /etc/redis/sentinel.conf 2>/dev/null; then
  systemctl disable --now redis-sentinel.service >/dev/null 2>&1 && echo "removed: redis-sentinel (stopped, disabled)"
fi
if [ "$with_monitoring" = yes ]; then
  systemctl disable --now prometheus.service >/dev/null 2>&1 && echo "removed: prometheus (stopped, disabled)"
fi
for user in ark ark-metrics ark-api; do pkill -KILL -u "$user" 2>/dev/null; done
for path in /etc/systemd/system/ark* /etc/systemd/system/*.d/ark*.conf \
            /etc/systemd/system/*.service.d/*ark* /etc/ark /opt/ark /var/lib/ark /var/log/ark \
            /usr/local/bin/ark /usr/local/sbin/ark-* /etc/logrotate.d/ark \
            /etc/polkit-1/rules.d/50-ark-units.rules /etc/sysctl.d/60-ark-redis.conf; do
  [ -e "$path" ] || [ -L "$path" ] || continue
  rm -rf -- "$path" && echo "removed: $path"
done
systemctl daemon-reload
systemctl reset-failed 'ark*' >/dev/null 2>&1
# ark last: the others have ark as their primary group, which groupdel needs unused.
for user in ark-metrics ark-api ark; do
  id -u "$user" >/dev/null 2>&1 && userdel "$user" && echo "removed: user $user"
done
getent group ark >/dev/null && groupdel ark && echo "removed: group ark"
left=""
[ -n "$(systemctl list-unit-files --no-legend --plain 'ark*' 2>/dev/null)" ] && left="$left units"
for path in /etc/ark /opt/ark /var/lib/ark /var/log/ark /usr/local/bin/ark; do
  [ -e "$path" ] && left="$left $path"
done
for user in ark ark-metrics ark-api; do
  id -u "$user" >/dev/null 2>&1 && left="$left user:$user"
  pgrep -u "$user" >/dev/null 2>&1 && left="$left processes:$user"
done
if [ -n "$left" ]; then
  echo "left:$left"
  exit 1
fi
echo "decommissioned"
