# REC_03: restore an uploaded DR bundle for `invoke dr-restore` (NAME BUNDLE WHO CORRELATION).
# ARK is stopped while its store is replaced, then started through the cold-start checks.
set -eu
bundle=$1
# The host's audit record of `ark dr restore` names the operator and the action id.
export ARK_ACTOR="${2:-unknown}" ARK_CORRELATION_ID="${3:-}"
ark_env
"$ARK" dr restore --dry-run "$bundle" >/dev/null
systemctl stop ark.target 'ark-agent@*.service' ark-api.service ark-snapshot.timer
# As root: it reads every log it compares against, and hands what it writes to the
# owner of the directory it lands in (ark).
"$ARK" dr restore "$bundle"
rm -f "$bundle"
systemctl restart ark-heal.service
systemctl start ark.target ark-snapshot.timer
echo "restored and started"
