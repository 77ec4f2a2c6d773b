# REC_01 panic for `invoke panic` (NAME WHO).
# Pure POSIX sh + systemctl: works when Redis is down or the venv is broken (it never
# calls ark_env or $ARK).
set -u
who=${1:-unknown}
state=$ARK_STATE
flag=$state/PANIC
now() { date +%s%N; }
t0=$(now)

# 1. The flag first, durably: every ARK unit has ConditionPathExists=!$flag, so from
#    here on nothing starts them again - not Restart=, not a timer, not a reboot.
mkdir -p "$state"
printf 'panic by %s at %s\n' "$who" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" > "$flag.tmp"
sync "$flag.tmp" 2>/dev/null || sync
mv -f "$flag.tmp" "$flag"
sync "$state" 2>/dev/null || sync

# 2. SIGKILL through systemd: every process of every ARK unit, at once.
listing=$(systemctl list-units --plain --no-legend \
          --state=active,activating,deactivating,reloading 'ark*.service' 2>/dev/null)
units=$(echo "$listing" | awk 'NF {print $1}')
if [ -n "$units" ]; then
  systemctl kill --signal=SIGKILL --kill-who=all $units 2>&1 | sed 's/^/warning: /'
fi
# Report units that had processes (a finished oneshot such as ark-heal has none).
echo "$listing" | awk 'NF && $4 != "exited" {print "killed " $1}'

# 3. Anything of user ark outside a unit (a manual run) goes too.
pkill -KILL -u ark 2>/dev/null && echo "note: killed leftover processes of user ark"

# 4. Done when no ARK process has been seen for three looks in a row (5 s at most).
#    Stop hooks that systemd starts after the kill (ExecStopPost, as user ark) are
#    killed too: they would only see the flag and exit.
i=0
quiet=0
while [ $i -lt 100 ] && [ $quiet -lt 3 ]; do
  if pgrep -u ark >/dev/null 2>&1; then
    pkill -KILL -u ark 2>/dev/null
    quiet=0
  else
    quiet=$((quiet + 1))
  fi
  sleep 0.05
  i=$((i + 1))
done
echo "remaining $(pgrep -u ark | wc -l)"
echo "elapsed_ms $(( ($(now) - t0) / 1000000 ))"
