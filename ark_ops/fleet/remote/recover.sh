# REC_01 recover for `invoke recover` (NAME WHO CORRELATION).
# Clears the panic through `ark heal`, which runs the cold-start checks first and
# refuses (non-zero) when it cannot make the host safe; then starts ARK.
set -eu
who=${1:-unknown}
if [ ! -x "$ARK" ]; then
  echo "error: $ARK is missing: redeploy this host (invoke deploy --limit ...)" >&2
  exit 3
fi
ark_env
ARK_ACTOR="$who" ARK_CORRELATION_ID="${2:-}" "$ARK" heal --clear-panic
systemctl reset-failed 'ark*' 2>/dev/null || true
systemctl start ark.target
systemctl start ark-snapshot.timer 2>/dev/null || true
echo "started ark.target"
