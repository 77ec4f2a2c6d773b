"""The wheelhouse hosts install from: no internet on the host, every file hash-checked.

It holds the ark_runtime wheel and exactly the wheels of its dependency closure,
taken from requirements.lock, plus `runtime.lock` listing them with their hashes.
"""

from __future__ import annotations

import hashlib
import importlib.metadata as md
import os
import platform
import subprocess
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name, parse_wheel_filename

from ark_ops.errors import OpsError
from ark_ops.inventories import REPO_ROOT
from ark_ops.lockfile import Pin, parse_lock

# The target hosts: Debian 12 (glibc 2.36), CPython 3.11, this machine's architecture.
TARGET_PYTHON = "3.11"
TARGET_MARKERS = {
    **default_environment(),
    "python_version": TARGET_PYTHON,
    "python_full_version": f"{TARGET_PYTHON}.2",
    "platform_system": "Linux",
    "sys_platform": "linux",
    "os_name": "posix",
    "implementation_name": "cpython",
    "platform_python_implementation": "CPython",
}


def build_runtime_wheel(out_dir: Path) -> Path:
    """Build ark_runtime reproducibly (hatchling fixes timestamps), so an unchanged
    tree gives a byte-identical wheel and a re-deploy changes nothing."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for old in out_dir.glob("ark_runtime-*.whl"):
        old.unlink()
    env = {**os.environ, "SOURCE_DATE_EPOCH": "1700000000"}
    proc = subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(out_dir),
         str(REPO_ROOT)],
        capture_output=True, text=True, env=env,
    )
    if proc.returncode != 0:
        raise OpsError("building the ark_runtime wheel failed:\n" + proc.stderr[-2000:])
    wheels = list(out_dir.glob("ark_runtime-*.whl"))
    if len(wheels) != 1:
        raise OpsError(f"expected one ark_runtime wheel in {out_dir}, found {len(wheels)}")
    return wheels[0]


def wheel_requirements(wheel: Path) -> list[Requirement]:
    with zipfile.ZipFile(wheel) as zf:
        meta_name = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        meta = Parser().parsestr(zf.read(meta_name).decode())
    return [Requirement(r) for r in meta.get_all("Requires-Dist") or []]


def _applies(req: Requirement, extras: frozenset[str] = frozenset()) -> bool:
    if req.marker is None:
        return True
    envs = [{**TARGET_MARKERS, "extra": e} for e in (extras or {""})]
    return any(req.marker.evaluate(env) for env in envs)


def dependency_closure(roots: list[Requirement], pins: dict[str, Pin]) -> list[Pin]:
    """Walk the requirements through the pinned versions' metadata.

    Metadata comes from the control venv, which ./ops installs from the same lock;
    a version mismatch means that venv is stale, and we say so."""
    todo = [(r, frozenset()) for r in roots if _applies(r)]
    seen: dict[str, Pin] = {}
    while todo:
        req, _ = todo.pop()
        name = canonicalize_name(req.name)
        if name in seen:
            continue
        pin = pins.get(name)
        if pin is None:
            raise OpsError(f"{req.name} is needed by ark_runtime but not in requirements.lock; "
                           "add it to requirements.in and run `invoke lock`")
        try:
            dist = md.distribution(name)
        except md.PackageNotFoundError:
            raise OpsError(f"{name} is not in the control venv: run ./ops again") from None
        if dist.version != pin.version:
            raise OpsError(f"control venv has {name} {dist.version} but the lock pins "
                           f"{pin.version}: run ./ops again to resync the venv")
        seen[name] = pin
        extras = frozenset(req.extras)
        for sub in dist.requires or []:
            sreq = Requirement(sub)
            if _applies(sreq, extras):
                todo.append((sreq, frozenset()))
    return sorted(seen.values(), key=lambda p: p.name)


def _sha256(path: Path) -> str:
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def wheels_present(out_dir: Path, closure: list[Pin]) -> bool:
    """True when `out_dir` already holds, for every pin, a wheel of its version whose
    sha256 the pin lists: then a re-deploy needs no download (and no index at all)."""
    on_disk: dict[str, list[tuple[str, Path]]] = {}
    for whl in out_dir.glob("*.whl"):
        name, ver, *_ = parse_wheel_filename(whl.name)
        on_disk.setdefault(canonicalize_name(name), []).append((str(ver), whl))
    return all(
        any(ver == pin.version and f"sha256:{_sha256(whl)}" in pin.hashes
            for ver, whl in on_disk.get(pin.name, []))
        for pin in closure
    )


def download(closure: list[Pin], out_dir: Path) -> None:
    """pip download the closure's wheels for the target hosts, hash-checked."""
    deps_lock = out_dir / "dependencies.lock"
    deps_lock.write_text("".join(p.render() for p in closure))
    machine = platform.machine()
    cmd = [
        sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
        "--no-deps", "--require-hashes", "--only-binary=:all:",
        "--python-version", TARGET_PYTHON, "--implementation", "cp",
        "--platform", f"manylinux_2_36_{machine}", "--platform", f"manylinux2014_{machine}",
        "--platform", f"linux_{machine}",
        "--dest", str(out_dir), "--requirement", str(deps_lock),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    deps_lock.unlink()
    if proc.returncode != 0:
        raise OpsError("downloading the runtime wheels failed (is PyPI reachable? is each pin "
                       "available as a wheel for the target?):\n" + proc.stderr[-2000:])


def build(lock: Path, out_dir: Path, log=print) -> Path:
    """Make `out_dir` hold the runtime wheels and runtime.lock; return runtime.lock."""
    pins = parse_lock(lock)
    wheel = build_runtime_wheel(out_dir)
    closure = dependency_closure(wheel_requirements(wheel), pins)
    if wheels_present(out_dir, closure):
        # pip download would only re-check the index for files we have (~1.5 s per deploy).
        log(f"wheelhouse: {len(closure)} pinned dependencies already present (hashes match)"
            f" + ark_runtime {wheel.name}")
    else:
        log(f"wheelhouse: {len(closure)} pinned dependencies + ark_runtime {wheel.name}")
        download(closure, out_dir)
    wanted = {p.name: p for p in closure}
    runtime_lock = out_dir / "runtime.lock"
    lines = ["# Generated by invoke deploy from requirements.lock: ark_runtime and its closure.\n"]
    lines += [p.render() for p in closure]
    version = parse_wheel_filename(wheel.name)[1]
    lines.append(f"ark-runtime=={version} \\\n    --hash=sha256:{_sha256(wheel)}\n")
    runtime_lock.write_text("".join(lines))
    # Keep exactly one wheel per pin: a stale wheel would make the copy to hosts non-idempotent.
    for whl in out_dir.glob("*.whl"):
        name, ver, *_ = parse_wheel_filename(whl.name)
        pin = wanted.get(canonicalize_name(name))
        if whl != wheel and (pin is None or str(ver) != pin.version):
            whl.unlink()
    return runtime_lock
