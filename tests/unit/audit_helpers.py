"""Build real audit chains (AuditLog.append + logrotate-style rotation) for the tests."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

from ark_runtime.host.audit.chain import LOG_NAME
from ark_runtime.host.audit.log import AuditLog


def rotate(audit_dir: Path, compress: bool = True) -> None:
    """What logrotate does with `create 0600 root root`, `compress` and `delaycompress`:
    shift .N to .N+1 (compressing from .2 on), move the live file to .1, create it empty."""
    numbered = sorted(
        (p for p in audit_dir.iterdir() if p.name.startswith(LOG_NAME + ".")),
        key=lambda p: int(p.name.split(".")[2]), reverse=True)
    for p in numbered:
        n = int(p.name.split(".")[2])
        target = audit_dir / f"{LOG_NAME}.{n + 1}"
        if compress and not p.name.endswith(".gz"):
            target = target.with_name(target.name + ".gz")
            target.write_bytes(gzip.compress(p.read_bytes()))
            p.unlink()
        else:
            if p.name.endswith(".gz"):
                target = target.with_name(target.name + ".gz")
            p.rename(target)
    live = audit_dir / LOG_NAME
    if live.exists():
        live.rename(audit_dir / f"{LOG_NAME}.1")
    fd = os.open(live, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.close(fd)


def build_chain(audit_dir: Path, sizes: list[int], compress: bool = True) -> AuditLog:
    """len(sizes) generations holding sizes[i] records each (the last one live)."""
    log = AuditLog(audit_dir)
    for i, n in enumerate(sizes):
        if i:
            rotate(audit_dir, compress)
        for j in range(n):
            log.append(action=f"test.action{j % 3}", result="ok", args={"i": i, "j": j},
                       who="tester", duration=0.01 * j)
    return log


def load(audit_dir: Path) -> dict[str, list[bytes]]:
    out = {}
    for p in sorted(audit_dir.iterdir()):
        if p.name.startswith(LOG_NAME):
            data = p.read_bytes()
            if p.name.endswith(".gz"):
                data = gzip.decompress(data)
            out[p.name] = [ln for ln in data.split(b"\n") if ln]
    return out


def store(audit_dir: Path, files: dict[str, list[bytes]]) -> None:
    for name, lines in files.items():
        data = b"".join(ln + b"\n" for ln in lines)
        if name.endswith(".gz"):
            data = gzip.compress(data)
        (audit_dir / name).write_bytes(data)
