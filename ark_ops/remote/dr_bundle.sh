# REC_03: build a DR bundle on the host, run as root by `invoke dr-bundle`.
# Root reads /etc/ark (the env files are redacted into the bundle, never copied).
set -eu
set -a
. /etc/ark/env/infrastructure.env
set +a
mkdir -p /var/lib/ark/dr
exec /opt/ark/venv/bin/ark dr bundle --out /var/lib/ark/dr/ --json
