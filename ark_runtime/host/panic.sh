# REC_01 panic (NAME WHO): the one host-side panic, for `invoke panic` (over SSH, as root,
# after ark_ops/remote/prelude.sh) and the console's /api/admin/panic (as the API's own
# user, ark_runtime/host/panic.py). Pure POSIX sh + systemctl: works when Redis is down or the
# venv is broken (it never calls ark_env or $ARK).
#   ARK_STATE        the state dir (the flag lives there)
#   ARK_USER         whose leftover processes are killed (default ark; never root)
#   ARK_PANIC_SPARE  one unit left running (the API answering the request), or empty
set -u
who=${1:-unknown}
state=$ARK_STATE
user=${ARK_USER:-ark}
spare=${ARK_PANIC_SPARE:-}
flag=$state/PANIC
now() { date +%s%N; }
t0=$(now)

# 1. The flag first, durably: every ARK unit has ConditionPathExists=!$flag (and those with
#    Restart= an ExecCondition= on it: systemd >= 254 does not re-check conditions on an
#    automatic restart), so from here on nothing starts them again - not Restart=, not a
#    timer, not a reboot.
mkdir -p "$state"
printf 'panic by %s at %s\n' "$who" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" > "$flag.tmp"
sync "$flag.tmp" 2>/dev/null || sync
mv -f "$flag.tmp" "$flag"
sync "$state" 2>/dev/null || sync

# 2. SIGKILL through systemd: every process of every ARK unit, at once. Not root's audit
#    ingester (SEC_03): it runs no ARK code path an operator stops, and the panic's own
#    audit records (the console's, after this) must still reach the chain.
listing=$(systemctl list-units --plain --no-legend \
          --state=active,activating,deactivating,reloading 'ark*.service' 2>/dev/null \
          | awk -v spare="$spare" 'NF && $1 != spare && $1 != "ark-audit-ingest.service"')
units=$(echo "$listing" | awk 'NF {print $1}')
if [ -n "$units" ]; then
  systemctl kill --signal=SIGKILL --kill-who=all $units 2>&1 | sed 's/^/warning: /'
fi
# Report units that had processes (a finished oneshot such as ark-heal has none).
echo "$listing" | awk 'NF && $4 != "exited" {print "killed " $1}'

# 3. Anything of the ARK user outside a unit (a manual run) goes too, except the spared
#    unit's processes (read afresh each time: the API's own children live there).
if [ "$user" = root ] || [ "$(id -u "$user" 2>/dev/null)" = 0 ]; then
  echo "warning: not killing the processes of root (ARK_USER=$user)"
  user=
fi
spare_cg=
[ -n "$spare" ] && spare_cg=$(systemctl show -p ControlGroup --value "$spare" 2>/dev/null)
# The user's live processes (a zombie is dead already: SIGKILL done, only its exit status
# waits for a parent to read it).
live() { ps -o pid= -o stat= -u "$user" 2>/dev/null | awk '$2 !~ /^Z/ {print $1}'; }
# Those outside the spared unit, one PID a line. This script's own helpers (the subshell, ps,
# awk) have exited by the time a caller reads the list, and are skipped there.
others() {
  [ -n "$user" ] || return 0
  for pid in $(live); do
    [ "$pid" = "$$" ] && continue
    if [ -n "$spare_cg" ] && grep -q ":$spare_cg\$" "/proc/$pid/cgroup" 2>/dev/null; then
      continue
    fi
    echo "$pid"
  done
}
# Sets $n: how many processes of the user were sent SIGKILL (no subshell: it would be one).
kill_leftovers() {
  n=0
  for pid in $(others); do
    kill -KILL "$pid" 2>/dev/null && n=$((n + 1))
  done
  return 0
}
kill_leftovers
[ "$n" -gt 0 ] && echo "note: killed leftover processes of user $user"

# 4. Done when no ARK process has been seen for three looks in a row (5 s at most).
#    Stop hooks that systemd starts after the kill (ExecStopPost, as the ARK user) are
#    killed too: they would only see the flag and exit.
i=0
quiet=0
while [ $i -lt 100 ] && [ $quiet -lt 3 ]; do
  kill_leftovers
  if [ "$n" -gt 0 ]; then
    quiet=0
  else
    quiet=$((quiet + 1))
  fi
  sleep 0.05
  i=$((i + 1))
done
remaining=0
for pid in $(others); do
  [ -d "/proc/$pid" ] && remaining=$((remaining + 1))
done
echo "remaining $remaining"
echo "elapsed_ms $(( ($(now) - t0) / 1000000 ))"
