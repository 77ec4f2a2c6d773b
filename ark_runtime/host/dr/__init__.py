"""REC_03 on a host: the disaster-recovery bundle and `ark dr`."""
