"""CONF: the config history on a host, its rollback and `ark config`."""
