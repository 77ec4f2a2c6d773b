# REC_01 recover, run on a host as root by `invoke recover` (sh -c SCRIPT NAME WHO).
# Clears the panic through `ark heal`, which runs the cold-start checks first and
# refuses (non-zero) when it cannot make the host safe; then starts ARK.
set -eu
who=${1:-unknown}
if [ ! -x /opt/ark/venv/bin/ark ]; then
  echo "error: /opt/ark/venv/bin/ark is missing: redeploy this host (invoke deploy --limit ...)" >&2
  exit 3
fi
set -a
. /etc/ark/env/infrastructure.env
set +a
ARK_ACTOR="$who" ARK_CORRELATION_ID="${2:-}" /opt/ark/venv/bin/ark heal --clear-panic
systemctl reset-failed 'ark*' 2>/dev/null || true
systemctl start ark.target
systemctl start ark-snapshot.timer 2>/dev/null || true
echo "started ark.target"
