# Issue 22 §3: `invoke secrets.rotate` on one host (NAME KIND [FILE] WHO CORRELATION).
# session-secret / operators: FILE (uploaded into the SSH user's 0700 temp dir) holds the new
# value or accounts; installed in place, then ark-api restarted alone. snapshot-key: the host's
# key rotated, every snapshot that verified re-signed. Values are never echoed.
set -eu
kind=$1
file=$2
export ARK_ACTOR="${3:-unknown}" ARK_CORRELATION_ID="${4:-}"
ark_env
case "$kind" in
  session-secret)
    "$ARK" env set /etc/ark/env/api.env ARK_API_SECRET --value-file "$file" >/dev/null ;;
  operators)
    "$ARK" api replace-operators "$file" --dest /etc/ark/api/operators.json >/dev/null ;;
  snapshot-key)
    exec "$ARK" snapshot rotate-key ;;
  *)
    echo "rotate.sh: unknown kind $kind" >&2
    exit 64 ;;
esac
rm -f "$file"
# GOV_02: the rotation is a config version of its own, so the next no-change deploy records
# none (and `ark config history` shows when the secret changed; values are masked there).
"$ARK" config record --reason "secrets.rotate $kind" --who "$ARK_ACTOR" \
  --correlation-id "${ARK_CORRELATION_ID:-none}" >/dev/null \
  || echo "rotate.sh: the config version was not recorded" >&2
systemctl restart ark-api.service
echo "ark-api restarted"
