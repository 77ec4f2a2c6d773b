"""The lab: real systemd hosts on this machine (systemd-nspawn + network namespaces)."""
