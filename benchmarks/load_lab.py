"""TEST_03 on the lab: `invoke load` at --rps against a freshly deployed lab host.

    flock /run/ark-lab.lock .venv/bin/python benchmarks/load_lab.py [--rps 500] [--duration 60s]

Brings one lab host up, deploys it with a throw-away operator account (its password only in
this process's environment, handed to locust the same way), runs the load with one locust
worker per CPU, prints the report (reports/load/<stamp>/) and takes the lab down again.
Run it under the lab lock: the lab is one shared resource.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ark_ops.deploy import run as deploy_mod  # noqa: E402
from ark_ops.lab import lab  # noqa: E402
from ark_ops.lab.config import LabPaths  # noqa: E402
from ark_ops.load.run import run_load  # noqa: E402
from ark_runtime.api.passwords import hash_password  # noqa: E402

HOST = "ark-lab-1"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rps", type=int, default=500)
    p.add_argument("--duration", default="60s")
    p.add_argument("--processes", type=int, help="locust workers (default: one per CPU)")
    p.add_argument("--keep-up", action="store_true",
                   help="leave the lab up for a next step in the same lock (it must take it down)")
    args = p.parse_args()
    password = secrets.token_urlsafe(16)
    group_vars = LabPaths.default().inventory / "group_vars" / "ark"
    statuses = lab.up(hosts=1)
    try:
        group_vars.mkdir(parents=True, exist_ok=True)
        (group_vars / "console.yml").write_text(yaml.safe_dump({"ark_runtime_api_operators": [
            {"name": "loadop", "role": "viewer", "password_hash": hash_password(password)}]}))
        deploy_mod.deploy(echo=False)
        address = next(s.address for s in statuses if s.name == HOST)
        os.environ.update(ARK_LOAD_USER="loadop", ARK_LOAD_PASSWORD=password)
        out = run_load(address, args.rps, args.duration, REPO / "reports" / "load",
                       machine=HOST, processes=args.processes)
        print((out / "report.md").read_text())
    finally:
        (group_vars / "console.yml").write_text("---\n{}\n")
        if not args.keep_up:
            lab.down()
    return 0


if __name__ == "__main__":
    sys.exit(main())
