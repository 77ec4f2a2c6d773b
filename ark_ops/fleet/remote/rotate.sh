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
systemctl restart ark-api.service
echo "ark-api restarted"
