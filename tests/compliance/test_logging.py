"""LOG_01: ARK's logs rotate without losing a line; the config is what the roles render."""

from __future__ import annotations

import re

import pytest

pytestmark = pytest.mark.requirement("LOG_01")

CONF = "/etc/logrotate.d/ark"
LOG_DIR = "/var/log/ark"


def blocks(text: str) -> dict[str, list[str]]:
    """{file name or pattern: its directives}, comments dropped; a block may name several
    files, one per line, before its `{`."""
    out: dict[str, list[str]] = {}
    names: list[str] = []
    current: list[str] | None = None
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if current is None:
            head, brace, _ = line.partition("{")
            names += head.split()
            if brace:
                current = []
                for name in names:
                    out[name] = current
                names = []
        elif line == "}":
            current = None
        else:
            current.append(line)
    return out


def test_config_file_has_the_intended_content_and_mode(host):
    f = host.file(CONF)
    assert f.exists and f.user == "root" and f.group == "root" and f.mode == 0o644
    conf = blocks(f.content_string)
    for agent in ("kyle", "joey", "kenny", "hrm"):
        ark = conf[f"{LOG_DIR}/{agent}.log"]
        for directive in ("daily", "maxsize 50M", "compress", "delaycompress",
                          "create 0640 ark ark", "su ark ark"):
            assert directive in ark, directive
        assert not any(d.startswith("copytruncate") for d in ark)
    assert "create 0640 root ark" in conf[f"{LOG_DIR}/heal.log"]
    audit = conf[f"{LOG_DIR}/audit/*.log"]
    for directive in ("weekly", "rotate 52", "compress", "create 0600 root root"):
        assert directive in audit, directive


def test_logrotate_debug_run_is_clean(host):
    out = host.run("logrotate -d --state /dev/null %s 2>&1", CONF)
    assert out.rc == 0, out.stdout
    assert not re.search(r"^error:|insecure|bad file mode", out.stdout, re.M), out.stdout


def test_logrotate_runs_hourly_so_maxsize_applies(host):
    props = host.service("logrotate.timer").systemd_properties
    assert "hourly" in props["TimersCalendar"] or "*:00:00" in props["TimersCalendar"]
    assert host.service("logrotate.timer").is_enabled


def test_log_files_belong_to_ark_with_mode_0640(host):
    # find, not ls: a host without agents (split topology) may have no agent log yet.
    for path in host.check_output("find %s -maxdepth 1 -name '*.log'", LOG_DIR).split():
        f = host.file(path)
        assert f.mode == 0o640, path
        if path.endswith("/heal.log"):  # `ark heal` runs as root and may create it
            assert f.user in ("ark", "root"), path
        else:
            assert (f.user, f.group) == ("ark", "ark"), path


@pytest.mark.runs_on("ark_agents")
def test_agents_journald_limit_is_above_the_pipeline_rate(host):
    props = host.service("ark-agent@kyle.service").systemd_properties
    assert int(props["LogRateLimitBurst"]) >= 100_000
    assert props["LogRateLimitIntervalUSec"] in ("30s", "30000000")


# Writers log numbered lines as user ark through ark_runtime.logjson (the agents' own
# WatchedFileHandler) into the agents' own files (what /etc/logrotate.d/ark rotates), next to
# the running agents, until a stop file appears; then print how many they wrote. About
# 5,000 lines/s each (twice a saturated agent's rate), so ten rotations stay cheap on disk.
WRITER = """
import logging, os, sys, time
from ark_runtime import logjson
logjson.setup(sys.argv[1])
log = logging.getLogger("ark.rotload")
n = 0
while not os.path.exists("/run/ark-rotload.stop"):
    log.info("rotation load", extra={"event": "rotload", "seq": n})
    n += 1
    if n % 100 == 0:
        time.sleep(0.02)
logjson.flush()
print(n)
"""
AGENTS = ("kyle", "joey", "kenny", "hrm")


@pytest.mark.disruptive
def test_forced_rotation_under_load_keeps_every_line(host):
    host.run("rm -f /run/ark-rotload.stop /run/rotload-*.count")
    before = {a: int(host.check_output(
        f"zcat -f {LOG_DIR}/{a}.log* | grep -c '\"event\":\"rotload\"' || true") or 0)
        for a in AGENTS}
    script = "\n".join(
        [f"(runuser -u ark -- env ARK_LOG_DIR={LOG_DIR} /opt/ark/venv/bin/python -c "
         f"\"$W\" {a} > /run/rotload-{a}.count) &" for a in AGENTS]
        + ["sleep 2",
           "for i in 1 2 3 4 5 6 7 8 9 10; do logrotate -f /etc/logrotate.d/ark || exit 9; "
           "sleep 0.5; done",
           "touch /run/ark-rotload.stop", "wait"])
    try:
        result = host.run("W=%s\n" + script, WRITER)
        assert result.rc == 0, result.stderr
        for a in AGENTS:
            written = int(host.check_output("cat /run/rotload-%s.count", a) or -1)
            generations = host.check_output("ls -1 %s/%s.log*", LOG_DIR, a).split()
            found = int(host.check_output(
                f"zcat -f {LOG_DIR}/{a}.log* | grep -c '\"event\":\"rotload\"'"))
            assert written > 1000, f"{a}: only {written} lines, not a load ({result.stderr})"
            assert len(generations) >= 10, generations
            assert found - before[a] == written, f"{a}: wrote {written}, found {found}"
    finally:
        host.run("rm -f /run/ark-rotload.stop /run/rotload-*.count")
