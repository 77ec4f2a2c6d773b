"""The lab network: a bridge on the control node and one namespace + veth per host.

The bridge carries no route and forwarding stays off, so lab traffic never leaves
the namespaces we create.
"""

from __future__ import annotations

from pathlib import Path

from ark_ops.errors import OpsError
from ark_ops.lab.config import BRIDGE, HOST_PREFIX, SUBNET, LabHost, gateway_address
from ark_ops.proc import run


def _link_exists(name: str, netns: str | None = None) -> bool:
    cmd = ["ip"] + (["-n", netns] if netns else []) + ["link", "show", name]
    return run(cmd, check=False).returncode == 0


def ensure_bridge() -> None:
    if not _link_exists(BRIDGE):
        run(["ip", "link", "add", BRIDGE, "type", "bridge"])
    addr = f"{gateway_address()}/{SUBNET.prefixlen}"
    if addr not in run(["ip", "-o", "addr", "show", "dev", BRIDGE]).stdout:
        run(["ip", "addr", "add", addr, "dev", BRIDGE])
    run(["ip", "link", "set", BRIDGE, "up"])


def netns_exists(name: str) -> bool:
    return Path("/run/netns", name).exists()


def ensure_host_network(host: LabHost) -> None:
    if not netns_exists(host.netns):
        run(["ip", "netns", "add", host.netns])
    if not _link_exists("host0", host.netns):
        if _link_exists(host.veth):  # half-made pair from an interrupted run
            run(["ip", "link", "del", host.veth])
        run(["ip", "link", "add", host.veth, "type", "veth", "peer", "name", "host0",
             "netns", host.netns])
    run(["ip", "link", "set", host.veth, "master", BRIDGE, "up"])
    addr = f"{host.address}/{SUBNET.prefixlen}"
    if addr not in run(["ip", "-n", host.netns, "-o", "addr", "show", "dev", "host0"]).stdout:
        run(["ip", "-n", host.netns, "addr", "add", addr, "dev", "host0"])
    run(["ip", "-n", host.netns, "link", "set", "host0", "up"])
    run(["ip", "-n", host.netns, "link", "set", "lo", "up"])


def remove_host_network(host: LabHost) -> None:
    # Delete the veth first: that takes its peer host0 with it at once. Deleting the
    # namespace first also destroys the pair, but the kernel does it asynchronously, so
    # the veth can vanish between our check and our delete (CI hit exactly that).
    if _link_exists(host.veth):
        result = run(["ip", "link", "del", host.veth], check=False)
        if result.returncode != 0 and _link_exists(host.veth):
            raise OpsError(f"could not delete {host.veth}: {result.stderr.strip()}")
    if netns_exists(host.netns):
        run(["ip", "netns", "del", host.netns])


def remove_bridge() -> None:
    if _link_exists(BRIDGE):
        run(["ip", "link", "del", BRIDGE])


def lab_namespaces() -> list[str]:
    out = run(["ip", "netns", "list"], check=False).stdout
    return sorted(
        line.split()[0] for line in out.splitlines() if line.startswith(HOST_PREFIX)
    )


def lab_veths() -> list[str]:
    out = run(["ip", "-o", "link", "show"], check=False).stdout
    names = [line.split(":")[1].strip().split("@")[0] for line in out.splitlines()]
    return sorted(n for n in names if n.startswith("vl-" + HOST_PREFIX) or n == BRIDGE)
