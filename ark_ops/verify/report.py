"""pytest plugin for `invoke verify`: a requirement × host table, JUnit properties,
and a Markdown report under reports/, with every known secret masked.

Loaded with `-p ark_ops.verify.report`. Each test's requirement comes from its
`@pytest.mark.requirement("ID")` marker; a test without one is reported under
"(untagged)" so a missing tag is visible rather than silently dropped. Every id of the
catalogue (docs/requirements.yaml) gets a row with its title: one without a check in this
run is shown as "not covered" rather than left out.
"""

from __future__ import annotations

import time
from collections import defaultdict
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from ark_ops.paths import REPO_ROOT
from ark_ops.redact import Redactor, env_file_secrets, inventory_secrets
from ark_ops.verify.evidence import EvidenceRecorder

UNTAGGED = "(untagged)"
NOT_COVERED = "not covered"
# What a skipped check means for its requirement, from the start of its skip reason
# (tests/compliance/conftest.py writes them): a check that does not apply to this host
# (another group's, another host's share of the agents) leaves the verdict alone; one that
# would disturb the host, or any other skip, leaves the requirement not proven here.
NOT_HERE = "not here: "
DISRUPTIVE = "disruptive: "
# Verdicts of one requirement on one host.
PASS, FAIL, NOT_APPLICABLE, NO_CHECK = "pass", "FAIL", "n/a", "-"
NOT_PROVEN = "not proven here"
CATALOGUE = REPO_ROOT / "docs" / "requirements.yaml"
ENV_DIR = "/etc/ark/env"


def catalogue_titles(path: Path = CATALOGUE) -> dict[str, str]:
    """id -> title for every requirement of the catalogue."""
    entries = (yaml.safe_load(path.read_text()) or {}).get("requirements") or {}
    return {rid: str(entry.get("title", "")) for rid, entry in entries.items()}


def requirement_ids(item) -> list[str]:
    ids = [m.args[0] for m in item.iter_markers("requirement") if m.args]
    return sorted(set(ids)) or [UNTAGGED]


def testinfra_host(item):
    callspec = getattr(item, "callspec", None)
    return callspec.params.get("_testinfra_host") if callspec else None


def host_of(item) -> str:
    host = testinfra_host(item)
    if host is None:
        return "local"
    return getattr(host.backend, "host", None) or host.backend.get_hostname()


def skip_kind(reason: str) -> str:
    """"n/a", "disruptive" or "other" for a skip reason (as pytest or JUnit gives it)."""
    reason = reason.removeprefix("Skipped: ").strip()
    if reason.startswith(NOT_HERE):
        return "n/a"
    return "disruptive" if reason.startswith(DISRUPTIVE) else "other"


def not_proven(disruptive: int, other: int) -> str:
    """"not proven here (2 disruptive checks skipped)" and its variants."""
    def checks(n: int, kind: str = "") -> str:
        return f"{n} {kind}check{'' if n == 1 else 's'}"

    if other == 0:
        why = checks(disruptive, "disruptive ")
    elif disruptive == 0:
        why = checks(other)
    else:
        why = f"{disruptive} disruptive + {checks(other, 'other ')}"
    return f"{NOT_PROVEN} ({why} skipped)"


def verdict(outcomes: list[tuple[str, str]]) -> str:
    """One requirement on one host from its checks' (outcome, skip reason): "pass" only
    when every check that applies here ran and passed; FAIL when any failed; "n/a" when none
    applies here; otherwise "not proven here (N disruptive checks skipped)"."""
    if not outcomes:
        return NO_CHECK
    if any(o in ("failed", "error") for o, _ in outcomes):
        return FAIL
    kinds = [skip_kind(r) if o == "skipped" else None for o, r in outcomes]
    applicable = [k for k in kinds if k != "n/a"]
    if not applicable:
        return NOT_APPLICABLE
    skipped = [k for k in applicable if k is not None]
    if not skipped:
        return PASS
    disruptive = skipped.count("disruptive")
    return not_proven(disruptive, len(skipped) - disruptive)


class MaskedRepr:
    """A failure's text with its secrets masked. Keeps the crash line (path, line,
    message) that the short summary and JUnit's message attribute read; loses colour."""

    def __init__(self, text: str, original, redact):
        self.text = text
        crash = getattr(original, "reprcrash", None)
        self.reprcrash = None if crash is None else SimpleNamespace(
            path=crash.path, lineno=crash.lineno, message=redact(crash.message))

    def toterminal(self, tw) -> None:
        for line in self.text.splitlines():
            tw.line(line)

    def __str__(self) -> str:
        return self.text


class SecretMasking:
    """Masks every secret known from the inventory and the hosts' env files in what the
    run writes: each test report (before the terminal and JUnit see it), the Markdown,
    and a last pass over the JUnit file once it is written."""

    def __init__(self, config):
        self.config = config
        self.redact = Redactor()
        self.unread: list[str] = []
        inventory = getattr(config.option, "ansible_inventory", None)
        if inventory:
            self.redact.add(inventory_secrets(Path(inventory)))

    def pytest_collection_finish(self, session):
        # Before any test runs, so no report is written without these values.
        hosts = {}
        for item in session.items:
            host = testinfra_host(item)
            if host is not None:
                hosts.setdefault(host_of(item), host)
        for name, host in sorted(hosts.items()):
            try:
                self.redact.add(self.host_env_secrets(host))
            except Exception:  # noqa: BLE001 - an unreachable host must not stop the run
                self.unread.append(name)

    @staticmethod
    def host_env_secrets(host) -> list[str]:
        try:  # hosts from an Ansible inventory may move the env files
            env_dir = host.ansible.get_variables().get("ark_runtime_env_dir", ENV_DIR)
        except Exception:  # noqa: BLE001 - not an Ansible host: the default place
            env_dir = ENV_DIR
        # The output is parsed here and never logged; the command holds no secret. The units'
        # own Redis users (issue 19 §3) are under redis/ (absent before that release).
        result = host.run("cat %s/*.env && { cat %s/redis/*.env 2>/dev/null || true; }",
                          env_dir, env_dir)
        if result.rc != 0:
            raise OSError(f"cannot read {env_dir}/*.env")  # reported as unread, no value
        return env_file_secrets(result.stdout)

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item, call):
        report = yield
        self.mask_report(report)
        return report

    @pytest.hookimpl(wrapper=True)
    def pytest_make_collect_report(self, collector):
        report = yield
        self.mask_report(report)
        return report

    def mask_report(self, report) -> None:
        if not self.redact:
            return
        longrepr = report.longrepr
        if isinstance(longrepr, tuple) and len(longrepr) == 3:  # a skip: (path, line, reason)
            report.longrepr = (longrepr[0], longrepr[1], self.redact(str(longrepr[2])))
        elif longrepr is not None:
            text = str(longrepr)
            if self.redact(text) != text:
                report.longrepr = MaskedRepr(self.redact(text), longrepr, self.redact)
        report.sections = [(title, self.redact(body)) for title, body in report.sections]
        if hasattr(report, "user_properties"):  # test reports only, not collection ones
            report.user_properties = [(k, self.redact(v) if isinstance(v, str) else v)
                                      for k, v in report.user_properties]

    @pytest.hookimpl(wrapper=True)
    def pytest_sessionfinish(self, session):
        result = yield  # junitxml has written its file by now
        xml = getattr(self.config.option, "xmlpath", None)
        if xml and Path(xml).is_file() and self.redact:
            text = Path(xml).read_text()
            if self.redact(text) != text:
                Path(xml).write_text(self.redact(text))
        return result

    def pytest_terminal_summary(self, terminalreporter):
        if self.unread:
            terminalreporter.write_line(
                "could not read the env files on " + ", ".join(self.unread)
                + ": only the inventory's secrets were masked for them")


class RequirementReport:
    def __init__(self, markdown_path: Path | None, redact=None, titles=None):
        self.markdown_path = markdown_path
        self.redact = redact or Redactor()
        self.titles = catalogue_titles() if titles is None else titles
        # (requirement, host) -> list of (nodeid, outcome, skip reason)
        self.results: dict[tuple[str, str], list[tuple[str, str, str]]] = defaultdict(list)
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
            # Under pytest-xdist the setup ran in a worker: its report carries what it noted.
            props = getattr(report, "user_properties", None) or []
            hosts = [v for k, v in props if k == "host"]
            if not hosts:
                return
            self.meta[report.nodeid] = ([v for k, v in props if k == "requirement"], hosts[0])
        if report.when == "call" or (report.when == "setup" and report.outcome != "passed") or (
            report.when == "teardown" and report.outcome == "failed"
        ):
            outcome = report.outcome
            longrepr = report.longrepr
            reason = str(longrepr[2]) if outcome == "skipped" and isinstance(longrepr, tuple) \
                else ""
            reqs, host = self.meta[report.nodeid]
            for req in reqs:
                self.results[(req, host)].append((report.nodeid, outcome, reason))

    def cell(self, req: str, host: str) -> str:
        return verdict([(o, r) for _, o, r in self.results.get((req, host), [])])

    def title(self, req: str) -> str:
        if req == UNTAGGED:
            return "checks without a requirement marker"
        return self.titles.get(req, "(not in docs/requirements.yaml)")

    def table(self) -> tuple[list[str], list[str], list[list[str]]]:
        """Rows: requirement, one cell per host, title. Every catalogue id has a row; one
        with no check in this run reads "not covered" in every host's column."""
        checked = {r for r, _ in self.results}
        reqs = sorted(checked | set(self.titles))
        hosts = sorted({h for _, h in self.results}) or ["(no host)"]
        rows = []
        for req in reqs:
            cells = [self.cell(req, h) for h in hosts] if req in checked \
                else [NOT_COVERED] * len(hosts)
            rows.append([req, *cells, self.title(req)])
        return reqs, hosts, rows

    def failures(self) -> list[tuple[str, str, str]]:
        return [(nodeid, req, host) for (req, host), res in sorted(self.results.items())
                for nodeid, o, _ in res if o == "failed"]

    def pytest_terminal_summary(self, terminalreporter):
        if not self.results:
            return
        reqs, hosts, rows = self.table()
        tr = terminalreporter
        tr.section("requirements × hosts")
        width = max(len(r) for r in reqs) + 2
        cols = [max(len(h), *(len(row[1 + i]) for row in rows)) + 2
                for i, h in enumerate(hosts)]

        def line(cells: list[str]) -> str:
            first, *middle, last = cells
            return self.redact(first.ljust(width) + "".join(
                v.ljust(c) for v, c in zip(middle, cols, strict=True)) + last)

        tr.write_line(line(["", *hosts, "title"]))
        for row in rows:
            tr.write_line(line(row))
        uncovered = [r for r in rows if r[1] == NOT_COVERED]
        tr.write_line(f"{len(uncovered)} of {len(rows)} requirements have no check in this run")
        unproven = [r[0] for r in rows if any(c.startswith(NOT_PROVEN) for c in r[1:-1])]
        if unproven:
            tr.write_line(f"not proven here (checks skipped): {', '.join(unproven)}")
        for nodeid, req, host in self.failures():
            tr.write_line(self.redact(f"FAIL {req} on {host}: {nodeid}"))
        if self.markdown_path:
            self.write_markdown(hosts, rows)
            tr.write_line(f"report: {self.markdown_path}")

    def write_markdown(self, hosts, rows) -> None:
        lines = [
            "# ARK compliance report",
            "",
            f"Generated {time.strftime('%Y-%m-%d %H:%M:%S %Z')} by `invoke verify`.",
            "",
            "| requirement | " + " | ".join(hosts) + " | title |",
            "|---|" + "---|" * len(hosts) + "---|",
        ]
        lines += ["| " + " | ".join(row) + " |" for row in rows]
        failures = self.failures()
        if failures:
            lines += ["", "## Failures", ""]
            lines += [f"- **{req}** on `{host}`: `{nodeid}`" for nodeid, req, host in failures]
        lines += ["", "## Checks", ""]
        for (req, host), res in sorted(self.results.items()):
            for nodeid, outcome, reason in res:
                why = f" ({reason.removeprefix('Skipped: ')})" if reason else ""
                lines.append(f"- {req} · {host} · {outcome}{why} · `{nodeid}`")
        self.markdown_path.parent.mkdir(parents=True, exist_ok=True)
        self.markdown_path.write_text(self.redact("\n".join(lines) + "\n"))


def pytest_addoption(parser):
    parser.addoption("--requirements-report", default=None,
                     help="write the requirement × host table as Markdown to this path")


def pytest_configure(config):
    masking = SecretMasking(config)
    config.pluginmanager.register(masking, "ark-secret-masking")
    path = config.getoption("--requirements-report")
    config.pluginmanager.register(
        RequirementReport(Path(path) if path else None, masking.redact),
        "ark-requirement-report",
    )
    config.pluginmanager.register(EvidenceRecorder(), "ark-evidence")
