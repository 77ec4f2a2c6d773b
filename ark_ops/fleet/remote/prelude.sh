# Shared start of every script in ark_ops/fleet/remote (ark_ops.fleet.ssh.remote_script puts it
# first). The script runs as root on the host: logged in as root, or through sudo as the
# inventory's become settings say. POSIX sh only: panic needs nothing else.
ARK=/opt/ark/venv/bin/ark
ARK_STATE=/var/lib/ark
ARK_DR=$ARK_STATE/dr
# The host's infrastructure settings, exported for `ark` (never echoed: they hold secrets).
ark_env() {
  set -a
  . /etc/ark/env/infrastructure.env
  set +a
}
