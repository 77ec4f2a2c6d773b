"""invoke alerts.silence / alerts.list: silences and firing alerts through Debian's amtool on
the ark_monitoring hosts (LOG_03). amtool runs on the host over SSH, so the control node needs
no route to Alertmanager's port; every Alertmanager of the group gets the silence (they do
not gossip: the role turns the cluster port off)."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass

from ark_ops.errors import OpsError
from ark_ops.fleet.audit import audit_action
from ark_ops.fleet.ssh import HostOutcome, inventory_hosts, run_everywhere
from ark_ops.inventories import resolve_inventory
from ark_runtime.exitcodes import ExitCode

MONITORING_GROUP = "ark_monitoring"
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,100}")
_MATCHER = re.compile(r'([A-Za-z_][A-Za-z0-9_]{0,100})(=~|!~|!=|=)"?([^"\n\\]{0,200})"?')
_DURATION = re.compile(r"(\d{1,4}[smhdw]){1,4}")


class SilenceRefused(OpsError):
    """A silence's field is not usable; nothing was sent."""

    exit_code = ExitCode.USAGE


@dataclass(frozen=True)
class Silence:
    matchers: tuple[str, ...]  # amtool matchers: alertname="ArkAgentDown", host=~"ark-.*"
    duration: str
    comment: str
    author: str

    @classmethod
    def build(cls, alert: str, matchers: list[str], duration: str, comment: str,
              author: str) -> Silence:
        """Validated before anything is sent; the error names the field."""
        found = []
        if alert:
            if not _NAME.fullmatch(alert):
                raise SilenceRefused(f"--alert must be an alert name like ArkAgentDown, "
                                     f"got {alert!r:.60}")
            found.append(f'alertname="{alert}"')
        for m in matchers:
            parsed = _MATCHER.fullmatch(m.strip())
            if not parsed:
                raise SilenceRefused(f'--match must be label=value, label!=value, label=~regex '
                                     f'or label!~regex, got {m!r:.60}')
            label, op, value = parsed.groups()
            found.append(f'{label}{op}"{value}"')
        if not found:
            raise SilenceRefused("a silence needs --alert or at least one --match: "
                                 "an empty one would silence everything")
        if not _DURATION.fullmatch(duration):
            raise SilenceRefused(f"--duration must look like 30m, 2h or 1d12h, got "
                                 f"{duration!r:.40}")
        comment = comment.strip()
        if not comment or len(comment) > 500 or "\n" in comment:
            raise SilenceRefused("--comment is required: one line (up to 500 characters) "
                                 "saying why, for whoever is paged next")
        return cls(tuple(found), duration, comment, author)

    def amtool_argv(self, url: str) -> list[str]:
        return ["amtool", f"--alertmanager.url={url}", "silence", "add", "--output=simple",
                f"--author={self.author}", f"--comment={self.comment}",
                f"--duration={self.duration}", *self.matchers]


def _url(address: str, port: int) -> str:
    return f"http://[{address}]:{port}" if ":" in address else f"http://{address}:{port}"


def silence(spec: Silence, inventory: str | None = None, port: int = 9093,
            log=print) -> list[HostOutcome]:
    """Add the silence on every Alertmanager of the ark_monitoring group; its id per host.
    Audited (SEC_03) with its matchers, duration and reason."""
    with audit_action("alerts.silence", {"matchers": list(spec.matchers),
                                         "duration": spec.duration, "comment": spec.comment},
                      inventory) as rec:
        outcomes = _silence(spec, inventory, port, log)
        rec.outcomes(outcomes)
    return outcomes


def _silence(spec: Silence, inventory: str | None, port: int, log) -> list[HostOutcome]:
    inv = resolve_inventory(inventory, log, bring_up=False)
    hosts = inventory_hosts(inv, group=MONITORING_GROUP)

    def step(conn, host) -> str:
        res = conn.run(shlex.join(spec.amtool_argv(_url(host.address, port))), warn=True,
                       hide=True, timeout=60)
        if res.exited != 0:
            raise OpsError((res.stderr or res.stdout).strip()[-400:])
        return res.stdout.strip().splitlines()[-1]

    outcomes = run_everywhere(hosts, step)
    for o in outcomes:
        log(f"  {o.host:<16} " + (f"silence {o.value} for {spec.duration}: "
                                  f"{' '.join(spec.matchers)}" if o.ok else f"FAILED: {o.error}"))
    return outcomes


def firing(inventory: str | None = None, port: int = 9093, log=print) -> list[HostOutcome]:
    """What each Alertmanager holds now (amtool alert query), silenced ones marked."""
    inv = resolve_inventory(inventory, log, bring_up=False)

    def step(conn, host) -> str:
        argv = ["amtool", f"--alertmanager.url={_url(host.address, port)}", "alert", "query",
                "--silenced", "--inhibited", "--active", "--output=extended"]
        res = conn.run(shlex.join(argv), warn=True, hide=True, timeout=60)
        if res.exited != 0:
            raise OpsError((res.stderr or res.stdout).strip()[-400:])
        return res.stdout.rstrip()

    outcomes = run_everywhere(inventory_hosts(inv, group=MONITORING_GROUP), step)
    for o in outcomes:
        log(f"--- {o.host}\n{o.value if o.ok else 'FAILED: ' + str(o.error)}")
    return outcomes
