"""Rolling deploys (`invoke deploy --serial N`, issue 20 §3): run.py plans the batches and
rolls them, gate.py decides whether a batch may be followed by the next."""
