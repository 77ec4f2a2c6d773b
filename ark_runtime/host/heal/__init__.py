"""REC_02 / MEM_02: the boot check `ark heal`, one module per check."""
