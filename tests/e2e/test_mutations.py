"""Mutation evidence: each compliance check can go red, and only its own.

For each requirement the compliance suite covers, one mutation breaks exactly that
requirement on a deployed lab host (a unit's `Restart=` overridden, an env file made
0644, Redis accepting clients without a password, the logrotate config broken, an audit
record edited, the metrics exporter down ...). Three hosts (each with everything, each
its own Redis) take one mutation each per round; one `invoke verify` of the read-only
checks (a worker per host) then gives each host's set of requirements with a failing
check, which must be exactly its mutation's. The hosts are restored before the next
round, and a last run proves them green again, so no mutation leaks into the next (nor was
any host red from the start).

Where one change legitimately breaks two requirements, the mutation says so and why:
a recorded config file edited on the host is also config drift, which GOV_02's check
is there to catch.

Needs root and the lab tools; skipped otherwise.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import pytest

from ark_ops.deploy.run import deploy
from ark_ops.fleet.redis_cli import as_root_tools
from ark_ops.lab import lab
from ark_ops.lab.config import LabHost
from ark_ops.paths import REPO_ROOT
from ark_ops.verify.run import verify
from tests.support.lab_shell import lab_up, on

pytestmark = [
    pytest.mark.lab,
    pytest.mark.skipif(os.geteuid() != 0, reason="the lab needs root"),
    # The module's fixture (a deploy and six verify runs over three hosts) counts toward its
    # first test: 409 s in CI, over 900 s on a machine loaded by other jobs.
    pytest.mark.timeout(2400),
]

ENV = "/etc/ark/env"
AUDIT_LOG = "/var/log/ark/audit/audit.log"
AUDIT_HEAD = "/var/log/ark/audit/head.json"
BACKUP = "/root/mutation-backup"
# The Redis password stays on the host: the shell reads it from the root-only env file.
# infrastructure.env logs in as the root tools' Redis user (admin).
REDIS_CLI = as_root_tools(f"{ENV}/infrastructure.env") + '-p "${ARK_REDIS_PORT:-6379}" '


@dataclass(frozen=True)
class Mutation:
    name: str
    expected: frozenset[str]  # the requirements whose checks must go red, and no other
    breaks: str  # shell run on the host as root
    restores: str

    def __str__(self) -> str:
        return self.name


def _dropin(unit: str, body: str) -> str:
    d = f"/etc/systemd/system/{unit}.d"
    return (f"mkdir -p {d} && printf '[Service]\\n{body}\\n' > {d}/zz-mutation.conf "
            "&& systemctl daemon-reload")


def _undropin(unit: str) -> str:
    return (f"rm -f /etc/systemd/system/{unit}.d/zz-mutation.conf "
            f"&& rmdir --ignore-fail-on-non-empty /etc/systemd/system/{unit}.d "
            "&& systemctl daemon-reload")


def _saved(path: str) -> str:
    return f"mkdir -p {BACKUP} && cp -a {path} {BACKUP}/"


def _restored(path: str) -> str:
    return f"cp -a {BACKUP}/{Path(path).name} {path}"


MUTATIONS = [
    Mutation("api-restart-removed", frozenset({"INFRA_01"}),
             _dropin("ark-api.service", "Restart=no"), _undropin("ark-api.service")),
    Mutation("env-file-world-readable", frozenset({"SEC_01"}),
             f"chmod 0644 {ENV}/trading.env", f"chmod 0600 {ENV}/trading.env"),
    # `default` on with nopass lets anyone in with every right (each component keeps its own
    # user, so nothing else breaks); the restore reloads the ACL file: `default` off exactly
    # as the file has it (`ACL SETUSER default reset` leaves `sanitize-payload`, which the
    # file's rule has not, and SEC_01 stayed red). ACL LOAD drops the clients; they reconnect.
    Mutation("redis-without-password", frozenset({"SEC_01"}),
             REDIS_CLI + "ACL SETUSER default on nopass '~*' '&*' +@all",
             REDIS_CLI + "ACL LOAD"),
    Mutation("log-file-world-readable", frozenset({"LOG_01"}),
             "chmod 0644 /var/log/ark/kyle.log", "chmod 0640 /var/log/ark/kyle.log"),
    # /etc/logrotate.d/ark is a recorded config file: editing it is drift too (GOV_02).
    Mutation("logrotate-config-broken", frozenset({"LOG_01", "GOV_02"}),
             _saved("/etc/logrotate.d/ark")
             + " && echo 'bogus-directive {' >> /etc/logrotate.d/ark",
             _restored("/etc/logrotate.d/ark")),
    # Only the chain's integrity: the newest record's year is changed (19xx), which no
    # content check reads (an edited deploy result would rightly turn SEC_03 red too).
    # The head file (seq + hash of the newest record) is saved and restored with the log:
    # the log alone put back behind a head that moved on is a truncated chain, red for good.
    Mutation("audit-record-edited", frozenset({"GOV_01"}),
             _saved(AUDIT_LOG) + f" && cp -a {AUDIT_HEAD} {BACKUP}/"
             " && sed -E -i '$ s/(\"ts\": *\")20/\\119/' "
             f"{AUDIT_LOG} && ! cmp -s {AUDIT_LOG} {BACKUP}/audit.log",
             _restored(AUDIT_LOG) + " && " + _restored(AUDIT_HEAD)),
    Mutation("audit-log-readable-by-all", frozenset({"SEC_03"}),
             f"chmod 0644 {AUDIT_LOG}", f"chmod 0600 {AUDIT_LOG}"),
    Mutation("ark-user-can-log-in", frozenset({"DEPLOY_01"}),
             "usermod -s /bin/bash ark", "usermod -s /usr/sbin/nologin ark"),
    Mutation("venv-not-from-the-lock", frozenset({"DEPLOY_03"}),
             _saved("/opt/ark/venv/.ark-installed")
             + " && echo 0000 > /opt/ark/venv/.ark-installed",
             "cp -a /root/mutation-backup/.ark-installed /opt/ark/venv/.ark-installed"),
    # The ruleset is a recorded config file too: a broken one is also drift (GOV_02).
    Mutation("ruleset-breaks-its-schema", frozenset({"AGENT_04", "GOV_02"}),
             _saved("/etc/ark/HRM_RULESET.yaml")
             + " && printf 'rules: [null]\\n' >> /etc/ark/HRM_RULESET.yaml",
             _restored("/etc/ark/HRM_RULESET.yaml")),
    Mutation("config-drift", frozenset({"GOV_02"}),
             _saved("/etc/ark/HRM_RULESET.yaml")
             + " && echo '# edited by hand' >> /etc/ark/HRM_RULESET.yaml",
             _restored("/etc/ark/HRM_RULESET.yaml")),
    Mutation("heal-not-enabled", frozenset({"MEM_02", "REC_02"}),
             "systemctl disable --quiet ark-heal.service",
             "systemctl enable --quiet ark-heal.service"),
    Mutation("snapshot-timer-stopped", frozenset({"MEM_03"}),
             "systemctl stop ark-snapshot.timer", "systemctl start ark-snapshot.timer"),
    Mutation("metrics-target-down", frozenset({"LOG_03"}),
             "systemctl stop ark-metrics.service", "systemctl start ark-metrics.service"),
    # The HTTPS console's redirect moved off its port (a later EnvironmentFile= wins over the
    # role's): HTTPS itself still answers, so nothing but UI_01's redirect check goes red.
    Mutation("console-redirect-moved", frozenset({"UI_01"}),
             "install -m 0600 /dev/null /run/ark-mutation.env"
             " && echo ARK_API_REDIRECT_PORT=8109 > /run/ark-mutation.env && "
             + _dropin("ark-api.service", "EnvironmentFile=/run/ark-mutation.env")
             + " && systemctl restart ark-api.service",
             _undropin("ark-api.service")
             + " && rm -f /run/ark-mutation.env && systemctl restart ark-api.service"),
]


HOSTS = [LabHost(i) for i in (1, 2, 3)]


def red_by_host(junit: Path) -> dict[str, tuple[set[str], list[str]]]:
    """host -> (requirements with a failing or erroring check there, those checks' names)."""
    out: dict[str, tuple[set[str], list[str]]] = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        if case.find("failure") is None and case.find("error") is None:
            continue
        props = [(p.get("name"), p.get("value", "")) for p in case.iter("property")]
        host = next((v for k, v in props if k == "host"), "?")
        red, names = out.setdefault(host, (set(), []))
        names.append(case.get("name", "?"))
        red.update(v for k, v in props if k == "requirement")
    return out


def run_checks(tmp: Path, tag: str) -> dict[str, tuple[set[str], list[str]]]:
    reports = tmp / tag
    rc = verify(keyword="not disruptive", reports_dir=reports, log=lambda *_: None,
                echo=lambda *_: None)
    junit = reports / "compliance-latest.xml"
    assert junit.exists(), f"verify wrote no JUnit (exit {rc})"
    return red_by_host(junit)


def rounds(chosen: list[Mutation]) -> list[list[tuple[LabHost, Mutation]]]:
    return [list(zip(HOSTS, chosen[i:i + len(HOSTS)], strict=False))
            for i in range(0, len(chosen), len(HOSTS))]


def chosen_mutations(session) -> list[Mutation]:
    """The mutations this run selected (`-k` picks some), in the list's order."""
    picked = {item.callspec.params["mutation"].name for item in session.items
              if hasattr(item, "callspec") and "mutation" in item.callspec.params}
    return [m for m in MUTATIONS if m.name in picked]


@pytest.fixture(scope="module")
def outcomes(request, tmp_path_factory) -> dict[str, tuple[set[str], list[str]]]:
    """mutation name -> (red requirements on its host, failing checks), every round run."""
    chosen = chosen_mutations(request.session)
    lab_up(max(1, min(len(HOSTS), len(chosen))))
    try:
        result = deploy(echo=False)
        assert all(c["failed"] == 0 for c in result.recap.values()), result.recap
        tmp = tmp_path_factory.mktemp("mutations")
        # No verify run before the first round: a host that was red from the start stays red
        # in the last run, which test_every_mutation_was_restored holds to none (one verify
        # run, ~45 s, saved).
        found: dict[str, tuple[set[str], list[str]]] = {}
        for n, batch in enumerate(rounds(chosen)):
            for host, mutation in batch:
                broke = on(host, mutation.breaks)
                assert broke.returncode == 0, f"could not apply {mutation}: {broke.stderr}"
            try:
                red = run_checks(tmp, f"round-{n}")
            finally:
                for host, mutation in batch:
                    restored = on(host, mutation.restores)
                    assert restored.returncode == 0, f"could not restore {mutation}: " \
                                                     f"{restored.stderr}"
            for host, mutation in batch:
                found[mutation.name] = red.get(host.name, (set(), []))
        found["(after)"] = (set().union(*(r for r, _ in run_checks(tmp, "after").values())),
                            [])
        yield found
    finally:
        lab.down()


@pytest.mark.parametrize("mutation", MUTATIONS, ids=str)
def test_a_mutation_turns_exactly_its_requirement_red(outcomes, mutation):
    red, names = outcomes[mutation.name]
    assert red == mutation.expected, (
        f"{mutation}: expected exactly {sorted(mutation.expected)} red, got {sorted(red)} "
        f"from {names}")


def test_every_mutation_was_restored(outcomes):
    assert not outcomes["(after)"][0], (
        f"red after every mutation was restored (a mutation leaked, or the lab was never "
        f"green): {sorted(outcomes['(after)'][0])}")


def test_mutations_cover_every_requirement_with_a_compliance_check():
    """The evidence is only as wide as the list: name the requirements left without one."""
    covered = set().union(*(m.expected for m in MUTATIONS))
    checked = set()
    for path in (REPO_ROOT / "tests" / "compliance").glob("test_*.py"):
        text = path.read_text()
        checked |= {part.split('"')[1] for part in text.split("requirement(")[1:]
                    if part.startswith('"')}
    # No mutation exists for these; each reason is next to MISSING.
    assert checked - covered == MISSING, sorted(checked - covered)


# Requirements whose compliance check has no mutation here, and why:
#  INFRA_02  the lock refuses a second instance: breaking it means changing code, not a host
#  INFRA_03  the ports check passes while ARK holds its ports; the disruptive check
#            already starts a foreign holder and sees it named
#  AGENT_01, TEST_01  the trace check needs a fresh decision: stopping the pipeline stops
#            units too (INFRA_01); covered by the disruptive and e2e trace tests instead
#  INFRA_04  its only check is disruptive (it stops the host's agents), and the rounds here
#            run the read-only checks; the check goes red on a unit SIGKILLed at stop
MISSING = {"INFRA_02", "INFRA_03", "INFRA_04", "AGENT_01", "TEST_01"}
