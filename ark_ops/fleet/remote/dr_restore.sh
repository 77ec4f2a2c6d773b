# REC_03: restore an uploaded DR bundle for `invoke dr-restore` (NAME BUNDLE).
# ARK is stopped while its store is replaced, then started through the cold-start checks.
set -eu
bundle=$1
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
