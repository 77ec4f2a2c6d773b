"""MEM_03: snapshots of the memory store and `ark snapshot`."""
