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
from collections.abc import Callable
from email.parser import Parser
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name, parse_wheel_filename

from ark_ops.deploy.lockfile import Pin, parse_lock
from ark_ops.deploy.platforms import WheelPlatform, required_platforms
from ark_ops.errors import OpsError
from ark_ops.paths import REPO_ROOT

# Without facts (tests, a single-platform fleet): Debian 12's CPython 3.11 on this machine's
# architecture. `invoke deploy` passes the pairs it found on the hosts (ark_ops.deploy.platforms).
TARGET_PYTHON = "3.11"
DEFAULT_PLATFORM = WheelPlatform(TARGET_PYTHON, platform.machine())
DEBIAN_PATCH = {"3.11": 2, "3.13": 5}  # Debian 12: 3.11.2; Debian 13: 3.13.5


def target_markers(target: WheelPlatform = DEFAULT_PLATFORM) -> dict[str, str]:
    """PEP 508 marker values on a Debian host with that Python and architecture."""
    return {
        **default_environment(),
        "python_version": target.python,
        # Debian 12 ships 3.11.2 (markers such as async-timeout's compare the patch level).
        "python_full_version": f"{target.python}.{DEBIAN_PATCH.get(target.python, 0)}",
        "platform_machine": target.arch,
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


def _applies(req: Requirement, markers: dict[str, str],
             extras: frozenset[str] = frozenset()) -> bool:
    if req.marker is None:
        return True
    envs = [{**markers, "extra": e} for e in (extras or {""})]
    return any(req.marker.evaluate(env) for env in envs)


def dependency_closure(roots: list[Requirement], pins: dict[str, Pin],
                       targets: list[WheelPlatform] | None = None) -> list[Pin]:
    """The pins every target platform needs (their union).

    Metadata comes from the control venv, which ./ops installs from the same lock;
    a version mismatch means that venv is stale, and we say so."""
    seen: dict[str, Pin] = {}
    for target in targets or [DEFAULT_PLATFORM]:
        for pin in _closure_for(roots, pins, target_markers(target)):
            seen[pin.name] = pin
    return sorted(seen.values(), key=lambda p: p.name)


def _closure_for(roots: list[Requirement], pins: dict[str, Pin],
                 markers: dict[str, str]) -> list[Pin]:
    """Walk the requirements through the pinned versions' metadata, for one platform."""
    todo = [(r, frozenset()) for r in roots if _applies(r, markers)]
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
            if _applies(sreq, markers, extras):
                todo.append((sreq, frozenset()))
    return list(seen.values())


def _sha256(path: Path) -> str:
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def _fits(tags, target: WheelPlatform) -> bool:
    """A wheel's tags install on the target: pure Python, or built for its arch and Python."""
    cp = "cp" + target.python.replace(".", "")
    return any((tag.platform == "any" or tag.platform.endswith(target.arch))
               and (tag.interpreter.startswith("py") or tag.interpreter == cp
                    or tag.abi == "abi3") for tag in tags)


def wheels_present(out_dir: Path, closure: list[Pin], target: WheelPlatform) -> bool:
    """True when `out_dir` already holds, for every pin, a wheel of its version for the
    target whose sha256 the pin lists: then that target needs no download (nor index)."""
    on_disk: dict[str, list[tuple[str, Path]]] = {}
    for whl in out_dir.glob("*.whl"):
        name, ver, _build, tags = parse_wheel_filename(whl.name)
        if _fits(tags, target):
            on_disk.setdefault(canonicalize_name(name), []).append((str(ver), whl))
    return all(
        any(ver == pin.version and f"sha256:{_sha256(whl)}" in pin.hashes
            for ver, whl in on_disk.get(pin.name, []))
        for pin in closure
    )


def pip_download_command(target: WheelPlatform, deps_lock: Path, out_dir: Path) -> list[str]:
    """pip fetches the hash-checked wheels one target platform installs (glibc 2.36: Debian 12)."""
    arch = target.arch
    return [
        sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
        "--no-deps", "--require-hashes", "--only-binary=:all:",
        "--python-version", target.python, "--implementation", "cp",
        "--platform", f"manylinux_2_36_{arch}", "--platform", f"manylinux2014_{arch}",
        "--platform", f"linux_{arch}",
        "--dest", str(out_dir), "--requirement", str(deps_lock),
    ]


def download(target: WheelPlatform, closure: list[Pin], deps_lock: Path, out_dir: Path) -> None:
    """pip download one target's closure into out_dir, hash-checked."""
    deps_lock.write_text("".join(p.render() for p in closure))
    proc = subprocess.run(pip_download_command(target, deps_lock, out_dir),
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise OpsError(f"downloading the runtime wheels for {target} failed (is PyPI "
                       "reachable? is each pin available as a wheel for it?):\n"
                       + proc.stderr[-2000:])


Targets = list[WheelPlatform] | Callable[[], list[WheelPlatform] | None] | None


def _resolve(targets: Targets) -> list[WheelPlatform]:
    found = targets() if callable(targets) else targets
    return required_platforms({str(t): t for t in found or [DEFAULT_PLATFORM]})


def build(lock: Path, out_dir: Path, log=print, targets: Targets = None) -> Path:
    """Make `out_dir` hold the runtime wheels for every target platform and runtime.lock;
    return runtime.lock. An unsupported target is refused before pip runs: a list before
    anything is built; a callable (the hosts' facts, still being gathered while the local
    wheel builds) once the wheel is built."""
    if not callable(targets):
        targets = _resolve(targets)
    pins = parse_lock(lock)
    wheel = build_runtime_wheel(out_dir)
    targets = _resolve(targets)
    roots = wheel_requirements(wheel)
    closure = dependency_closure(roots, pins, targets)
    log(f"wheelhouse: {len(closure)} pinned dependencies + ark_runtime {wheel.name} for "
        + ", ".join(map(str, targets)))
    deps_lock = out_dir / "dependencies.lock"
    for target in targets:
        # Each platform downloads its own closure. runtime.lock (no markers) lists the union:
        # tests/unit/test_baseline_wheelhouse.py checks the closures are the same today.
        own = dependency_closure(roots, pins, [target])
        if wheels_present(out_dir, own, target):
            log(f"wheelhouse: {target}: every pinned wheel already present (hashes match)")
            continue  # pip download would only re-check the index (~1.5 s per deploy)
        download(target, own, deps_lock, out_dir)
    wanted = {p.name: p for p in closure}
    runtime_lock = out_dir / "runtime.lock"
    lines = ["# Generated by invoke deploy from requirements.lock: ark_runtime and its closure.\n"]
    lines += [p.render() for p in closure]
    version = parse_wheel_filename(wheel.name)[1]
    lines.append(f"ark-runtime=={version} \\\n    --hash=sha256:{_sha256(wheel)}\n")
    runtime_lock.write_text("".join(lines))
    deps_lock.unlink(missing_ok=True)
    # Keep only the pinned version of each (one wheel per target platform): a stale wheel
    # would make the copy to hosts non-idempotent.
    for whl in out_dir.glob("*.whl"):
        name, ver, *_ = parse_wheel_filename(whl.name)
        pin = wanted.get(canonicalize_name(name))
        if whl != wheel and (pin is None or str(ver) != pin.version):
            whl.unlink()
    return runtime_lock
