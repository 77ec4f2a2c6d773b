"""`invoke deploy`: the hosts' platforms, the wheelhouse, the playbook run, its lock and the
baseline report."""
