"""What a heal check may ask of the run it is part of: where things are (the layout and the
directory table), whether it may change anything (dry run), and where its findings go.

The checks (dirs, config, venv, store) take a HealContext; `Healer` is one, plus the order of
the checks and the log. A check never imports `Healer`, so the run and its checks form no loop.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ark_runtime.host.layout import DirSpec, Layout


@dataclass
class Finding:
    check: str  # panic | dirs | config | venv | store | boot_state | snapshot_key
    target: str
    status: str  # ok | repaired | would_repair | failed
    detail: str
    data: dict[str, Any] = field(default_factory=dict)


class HealContext:
    def __init__(self, layout: Layout, *, dry_run: bool = False,
                 dirs: list[DirSpec] | None = None) -> None:
        self.layout = layout
        self.dry_run = dry_run
        self.dir_table = dirs if dirs is not None else layout.dirs()
        self.findings: list[Finding] = []

    def add(self, check: str, target: object, status: str, detail: str, **data: Any) -> Finding:
        f = Finding(check, str(target), status, detail, data)
        self.findings.append(f)
        return f

    def fix(self, check: str, target: object, detail: str, **data: Any) -> bool:
        """Record a repair; False in dry-run, where the caller must not change anything."""
        self.add(check, target, "would_repair" if self.dry_run else "repaired", detail, **data)
        return not self.dry_run

    @property
    def safe(self) -> bool:
        return not any(f.status == "failed" for f in self.findings)
