"""pytest plugin for `invoke verify`: a requirement × host table, JUnit properties,
and a Markdown report under reports/.

Loaded with `-p ark_ops.report`. Each test's requirement comes from its
`@pytest.mark.requirement("ID")` marker; a test without one is reported under
"(untagged)" so a missing tag is visible rather than silently dropped.
"""

from __future__ import annotations

import time
from collections import defaultdict
from pathlib import Path

import pytest

UNTAGGED = "(untagged)"


def requirement_ids(item) -> list[str]:
    ids = [m.args[0] for m in item.iter_markers("requirement") if m.args]
    return sorted(set(ids)) or [UNTAGGED]


def host_of(item) -> str:
    callspec = getattr(item, "callspec", None)
    host = callspec.params.get("_testinfra_host") if callspec else None
    if host is None:
        return "local"
    return getattr(host.backend, "host", None) or host.backend.get_hostname()


class RequirementReport:
    def __init__(self, markdown_path: Path | None):
        self.markdown_path = markdown_path
        # (requirement, host) -> list of (nodeid, outcome)
        self.results: dict[tuple[str, str], list[tuple[str, str]]] = defaultdict(list)
        self.meta: dict[str, tuple[list[str], str]] = {}

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_setup(self, item):
        reqs = requirement_ids(item)
        self.meta[item.nodeid] = (reqs, host_of(item))
        for req in reqs:
            item.user_properties.append(("requirement", req))
        item.user_properties.append(("host", host_of(item)))

    def pytest_runtest_logreport(self, report):
        if report.nodeid not in self.meta:
            return
        if report.when == "call" or (report.when == "setup" and report.outcome != "passed") or (
            report.when == "teardown" and report.outcome == "failed"
        ):
            outcome = report.outcome
            reqs, host = self.meta[report.nodeid]
            for req in reqs:
                self.results[(req, host)].append((report.nodeid, outcome))

    def cell(self, req: str, host: str) -> str:
        outcomes = [o for _, o in self.results.get((req, host), [])]
        if not outcomes:
            return "-"
        if "failed" in outcomes:
            return "FAIL"
        if all(o == "skipped" for o in outcomes):
            return "skip"
        return "pass"

    def table(self) -> tuple[list[str], list[str], list[list[str]]]:
        reqs = sorted({r for r, _ in self.results})
        hosts = sorted({h for _, h in self.results})
        rows = [[req] + [self.cell(req, h) for h in hosts] for req in reqs]
        return reqs, hosts, rows

    def pytest_terminal_summary(self, terminalreporter):
        reqs, hosts, rows = self.table()
        if not rows:
            return
        tr = terminalreporter
        tr.section("requirements × hosts")
        width = max(len(r) for r in reqs) + 2
        cols = [max(len(h), 4) + 2 for h in hosts]
        def line(first: str, cells: list[str]) -> str:
            return first.ljust(width) + "".join(
                v.ljust(c) for v, c in zip(cells, cols, strict=True)
            )

        tr.write_line(line("", hosts))
        for row in rows:
            tr.write_line(line(row[0], row[1:]))
        failures = [(nodeid, req, host) for (req, host), res in sorted(self.results.items())
                    for nodeid, o in res if o == "failed"]
        for nodeid, req, host in failures:
            tr.write_line(f"FAIL {req} on {host}: {nodeid}")
        if self.markdown_path:
            self.write_markdown(hosts, rows, failures)
            tr.write_line(f"report: {self.markdown_path}")

    def write_markdown(self, hosts, rows, failures) -> None:
        lines = [
            "# ARK compliance report",
            "",
            f"Generated {time.strftime('%Y-%m-%d %H:%M:%S %Z')} by `invoke verify`.",
            "",
            "| requirement | " + " | ".join(hosts) + " |",
            "|---|" + "---|" * len(hosts),
        ]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        if failures:
            lines += ["", "## Failures", ""]
            lines += [f"- **{req}** on `{host}`: `{nodeid}`" for nodeid, req, host in failures]
        lines += ["", "## Checks", ""]
        for (req, host), res in sorted(self.results.items()):
            for nodeid, outcome in res:
                lines.append(f"- {req} · {host} · {outcome} · `{nodeid}`")
        self.markdown_path.parent.mkdir(parents=True, exist_ok=True)
        self.markdown_path.write_text("\n".join(lines) + "\n")


def pytest_addoption(parser):
    parser.addoption("--requirements-report", default=None,
                     help="write the requirement × host table as Markdown to this path")


def pytest_configure(config):
    path = config.getoption("--requirements-report")
    config.pluginmanager.register(
        RequirementReport(Path(path) if path else None), "ark-requirement-report"
    )
