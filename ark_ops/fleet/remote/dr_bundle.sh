# REC_03: build a DR bundle on the host for `invoke dr-bundle` (NAME HANDOVER OWNER WHO
# CORRELATION: the host's audit record of `ark dr bundle` names the operator and action id).
# Root reads /etc/ark (the env files are redacted into the bundle, never copied). The bundle
# is then moved into HANDOVER, a directory the SSH user made, and given to OWNER (that user),
# who fetches it over SFTP without needing root.
set -eu
handover=$1
owner=$2
who=${3:-unknown}
correlation=${4:-}
ark_env
mkdir -p "$ARK_DR"
info=$(ARK_ACTOR="$who" ARK_CORRELATION_ID="$correlation" "$ARK" dr bundle --out "$ARK_DR/" --json | tail -n 1)
bundle=$(printf '%s' "$info" | sed -n 's/.*"path": *"\([^"]*\)".*/\1/p')
[ -f "$bundle" ] || { echo "error: ark dr bundle reported no file: $info" >&2; exit 1; }
mv -f -- "$bundle" "$handover/"
chown -- "$owner" "$handover/${bundle##*/}"
chmod 0600 -- "$handover/${bundle##*/}"
echo "$info"
