# Issue 22 §3: `invoke secrets.rotate redis` on an ARK host (DIR WHO CORRELATION), between the
# Redis hosts' overlap and finish phases (remote/redis_rotate.sh), while both passwords log in.
# DIR (uploaded, the SSH user's 0700 temp dir) holds one file per Redis user this host has a
# unit for, named as the user, holding its new password; `admin` is the root tools' user in
# infrastructure.env. Each file is set in place (ark env set: the result is what the role
# renders, so the next deploy changes nothing), then only the unit that loads it restarts, one
# at a time; a unit that is not running takes the new password when it starts.
set -eu
dir=$1
export ARK_ACTOR="${2:-unknown}" ARK_CORRELATION_ID="${3:-}"
restarted=0
for file in "$dir"/*; do
  [ -f "$file" ] || continue
  user=${file##*/}
  if [ "$user" = admin ]; then
    "$ARK" env set /etc/ark/env/infrastructure.env ARK_REDIS_PASSWORD --value-file "$file" \
      >/dev/null
    rm -f "$file"
    continue
  fi
  "$ARK" env set "/etc/ark/env/redis/$user.env" ARK_REDIS_PASSWORD --value-file "$file" \
    >/dev/null
  rm -f "$file"
  case "$user" in
    api) unit=ark-api.service ;;
    exporter) unit=ark-metrics.service ;;
    *) unit="ark-agent@$user.service" ;;
  esac
  if systemctl is-active --quiet "$unit"; then
    systemctl restart "$unit"
    restarted=$((restarted + 1))
  fi
done
# GOV_02: the rotation is a config version of its own (values masked in config history).
"$ARK" config record --reason "secrets.rotate redis" --who "$ARK_ACTOR" \
  --correlation-id "${ARK_CORRELATION_ID:-none}" >/dev/null \
  || echo "redis_users_rotate.sh: the config version was not recorded" >&2
echo "$restarted unit(s) restarted with their new Redis password"
