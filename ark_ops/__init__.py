"""Control-node side of ARK Ops: the lab, deploys, verification, reports.

Nothing here ships to hosts; `ark_runtime` is what runs there.
"""
