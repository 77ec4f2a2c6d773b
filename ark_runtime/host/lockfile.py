"""Reading a pip-compile lock file (`--generate-hashes` output): the one lock parser.

Shipped to hosts (heal checks the venv against runtime.lock) and reused by the control side
(ark_ops/deploy/lockfile.py adds `packaging`'s full requirement parsing on top). `packaging` is
not in the runtime closure, so this stays standard library: the lines a lock holds are
`name[extras]==version ; marker \\` followed by `--hash=algo:hex` lines and `# via` comments.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_NAME_NORM = re.compile(r"[-_.]+")


def canonical_name(name: str) -> str:
    """PEP 503 normalisation (what packaging.utils.canonicalize_name does)."""
    return _NAME_NORM.sub("-", name).lower()


@dataclass(frozen=True)
class LockEntry:
    spec: str  # the requirement as written, without hashes ("Foo[bar]==1.0 ; marker")
    hashes: tuple[str, ...]

    @property
    def name(self) -> str:
        return canonical_name(re.split(r"[\s\[=<>!~;@(]", self.spec, maxsplit=1)[0])

    @property
    def pinned_version(self) -> str | None:
        """The version of an `==` pin, None for anything else."""
        req = self.spec.split(";", 1)[0]
        _, sep, version = req.partition("==")
        return version.strip() if sep and "," not in version else None


def logical_lines(text: str) -> list[str]:
    """Backslash-continued lines joined, comments and blank lines dropped."""
    out: list[str] = []
    buf = ""
    for raw in text.splitlines():
        line = "" if raw.lstrip().startswith("#") else raw.split(" #", 1)[0].rstrip()
        if line.endswith("\\"):
            buf += line[:-1] + " "
            continue
        buf += line
        if buf.strip():
            out.append(buf.strip())
        buf = ""
    if buf.strip():
        out.append(buf.strip())
    return out


def lock_entries(text: str) -> list[LockEntry]:
    """One entry per requirement; pip options (`--index-url ...`) are skipped."""
    entries = []
    for line in logical_lines(text):
        if line.startswith("-"):
            continue
        parts = line.split()
        spec = " ".join(p for p in parts if not p.startswith("--hash="))
        hashes = tuple(p.split("=", 1)[1] for p in parts if p.startswith("--hash="))
        entries.append(LockEntry(spec, hashes))
    return entries


def parse_lock(text: str) -> dict[str, str]:
    """{canonical name: version} of every `==` pin."""
    pins = {}
    for entry in lock_entries(text):
        version = entry.pinned_version
        if version is not None:
            pins[entry.name] = version
    return pins
