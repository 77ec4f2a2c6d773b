"""LOG_01: forced rotations under load lose no line.

The real logrotate binary rotates a temp log dir with the config rendered from the real
template (roles/ark_runtime/templates/logrotate/ark.j2) while every agent's logger (logjson.setup, a
WatchedFileHandler) and a heal-style writer (O_APPEND per write) write as fast as they can.
Afterwards every generation (plain and .gz) is read back: each writer's sequence numbers
must all be there, exactly once.
"""

from __future__ import annotations

import grp
import gzip
import json
import os
import pwd
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import jinja2
import pytest

from ark_runtime.trace import expand_hops

REPO = Path(__file__).resolve().parents[2]
ROLE_TEMPLATES = REPO / "roles" / "ark_runtime" / "templates"
LOGROTATE = shutil.which("logrotate") or "/usr/sbin/logrotate"
AGENTS = ("kyle", "joey", "kenny", "hrm")
ROTATIONS = 10

pytestmark = pytest.mark.skipif(not Path(LOGROTATE).exists(),
                                reason="logrotate is not installed (./ops installs it)")

# A writer: log numbered lines until SIGTERM, then print how many were written.
AGENT_WRITER = """
import logging, signal, sys
from pathlib import Path
from ark_runtime import logjson
stop = []
signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
logjson.setup(sys.argv[1], directory=Path(sys.argv[2]))
log = logging.getLogger("ark.load")
n = 0
while not stop:
    log.info("load line", extra={"event": "load", "seq": n})
    n += 1
logjson.flush()
print(n)
"""

# The way `ark heal` writes heal.log: open with O_APPEND, write, close.
HEAL_WRITER = """
import json, os, signal, sys, time
stop = []
signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
path = sys.argv[2] + "/heal.log"
n = 0
while not stop:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
    try:
        os.write(fd, (json.dumps({"event": "heal", "seq": n}) + "\\n").encode())
    finally:
        os.close(fd)
    n += 1
    time.sleep(0.005)  # heal writes one run at a time (once per boot in production)
print(n)
"""


def render_config(log_dir: Path, keep: int = 14) -> str:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(ROLE_TEMPLATES / "logrotate"),
                             undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    user = pwd.getpwuid(os.getuid()).pw_name
    # heal.log's block names root as owner; a non-root run creates files as itself.
    return env.get_template("ark.j2").render(
        ansible_managed="rendered by a test", ark_runtime_log_dir=str(log_dir),
        ark_runtime_user=pwd.getpwuid(os.getuid()).pw_name,
        ark_runtime_group=grp.getgrgid(os.getgid()).gr_name, ark_runtime_logrotate_keep=keep,
        ark_runtime_logrotate_names=list(AGENTS)).replace("create 0640 root ",
                                                          f"create 0640 {user} ")


def read_generations(log_dir: Path, name: str) -> list[int]:
    seqs: list[int] = []
    for path in sorted(log_dir.glob(f"{name}.log*")):
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rt", encoding="utf-8") as fh:
            for text in fh:
                seqs.append(json.loads(text)["seq"])
    return seqs


# A writer that reopens in the microseconds between logrotate's rename and its create
# makes the file itself; logrotate then moves that file to NAME-DATE.backup and creates
# its own. Nothing is lost (the writer finishes its line there, then reopens the new file;
# the counts below include .backup files), so only that message is tolerated.
_BACKUP = re.compile(r"^error: destination \S+ already exists, renaming to \S+\.backup$")


def rotate(conf: Path, state: Path) -> None:
    proc = subprocess.run([LOGROTATE, "-f", "--state", str(state), str(conf)],
                          capture_output=True, text=True, timeout=60)
    problems = [ln for ln in proc.stderr.splitlines() if ln and not _BACKUP.match(ln)]
    assert proc.returncode == 0 and not problems, proc.stderr


@pytest.mark.requirement("LOG_01")
def test_forced_rotations_under_load_lose_no_line(tmp_path: Path) -> None:
    log_dir = tmp_path / "log"
    log_dir.mkdir(mode=0o750)
    (log_dir / "audit").mkdir(mode=0o700)
    conf, state = tmp_path / "ark.conf", tmp_path / "logrotate.state"
    conf.write_text(render_config(log_dir))
    conf.chmod(0o644)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    writers = {name: subprocess.Popen([sys.executable, "-c", AGENT_WRITER, name, str(log_dir)],
                                      stdout=subprocess.PIPE, text=True, env=env)
               for name in AGENTS}
    writers["heal"] = subprocess.Popen([sys.executable, "-c", HEAL_WRITER, "heal", str(log_dir)],
                                       stdout=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.monotonic() + 20
        while not all((log_dir / f"{n}.log").exists() for n in writers):
            assert time.monotonic() < deadline, "writers did not start"
            time.sleep(0.05)
        for _ in range(ROTATIONS):
            time.sleep(0.3)
            rotate(conf, state)
        time.sleep(0.3)
    finally:
        for proc in writers.values():
            proc.send_signal(signal.SIGTERM)
    written = {name: int(proc.communicate(timeout=30)[0]) for name, proc in writers.items()}
    for name, count in written.items():
        generations = list(log_dir.glob(f"{name}.log*"))
        # 10 rotations -> the live file plus 10 generations (all but the newest compressed),
        # and any .backup of the race described above.
        numbered = [p for p in generations if not p.name.endswith(".backup")]
        assert len(numbered) == ROTATIONS + 1, sorted(p.name for p in generations)
        assert sum(p.suffix == ".gz" for p in numbered) == ROTATIONS - 1
        seqs = read_generations(log_dir, name)
        assert count > (300 if name == "heal" else 1000), f"{name}: only {count} lines"
        assert len(seqs) == count, f"{name}: wrote {count}, found {len(seqs)}"
        assert sorted(seqs) == list(range(count)), f"{name}: a line is missing or doubled"
    print(f"lines written = lines found after {ROTATIONS} forced rotations: {written}")


@pytest.mark.requirement("LOG_01")
def test_rotation_creates_files_with_the_intended_mode(tmp_path: Path) -> None:
    log_dir = tmp_path / "log"
    log_dir.mkdir(mode=0o750)
    (log_dir / "kyle.log").write_text('{"seq": 0}\n')
    conf, state = tmp_path / "ark.conf", tmp_path / "state"
    conf.write_text(render_config(log_dir))
    rotate(conf, state)
    assert (log_dir / "kyle.log.1").read_text() == '{"seq": 0}\n'  # delaycompress
    assert (log_dir / "kyle.log").stat().st_mode & 0o777 == 0o640
    assert (log_dir / "kyle.log").stat().st_size == 0


def count_events(log_dir: Path, agent: str, event: str) -> int:
    n = 0
    for path in log_dir.glob(f"{agent}.log*"):
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rt", encoding="utf-8") as fh:
            # batch lines (one per commit, listing every message's hop) count per hop,
            # as `ark trace` reads them
            n += sum(1 for text in fh for hop in expand_hops(json.loads(text))
                     if hop.get("event") == event)
    return n


@pytest.mark.requirement("LOG_01")
def test_real_agents_lose_no_line_across_forced_rotations(lab, r, tmp_path: Path) -> None:
    """The four agents as real processes on real Redis, a paced feed, ten rotations while
    they work; each agent's per-message lines are then checked against what the bus says
    happened (bars fed, plans decided)."""
    from conftest import wait_for
    from helpers import decisions

    for name in ("hrm", "kenny", "joey"):
        lab.start(name)
    symbols, bars = ["AAPL", "MSFT", "NVDA"], 500
    lab.start("kyle", ARK_FEED="synthetic", ARK_FEED_SYMBOLS=",".join(symbols),
              ARK_FEED_SEED="3", ARK_FEED_BARS=str(bars), ARK_FEED_RATE="400")
    log_dir = Path(lab.host_dirs("host1")["ARK_LOG_DIR"])
    conf, state = tmp_path / "ark.conf", tmp_path / "state"
    conf.write_text(render_config(log_dir))
    for _ in range(ROTATIONS):
        time.sleep(0.3)
        rotate(conf, state)
    total = len(symbols) * bars
    wait_for(lambda: r.xlen("ark:stream:joey") >= total, 60, what="every bar fed")
    wait_for(lambda: all(g["pending"] == 0 and (g.get("lag") or 0) == 0
                         for s in ("joey", "kenny", "hrm")
                         for g in r.xinfo_groups(f"ark:stream:{s}")), 60, what="drained")
    for agent in lab.procs:
        assert lab.stop(agent) == 0
    assert len(list(log_dir.glob("kyle.log*"))) > 5, "the rotations did not happen under load"
    assert count_events(log_dir, "kyle", "emitted") == total
    assert count_events(log_dir, "joey", "received") == total
    plans = len(decisions(r))
    assert plans > 0
    assert count_events(log_dir, "kenny", "emitted") == plans
    assert count_events(log_dir, "hrm", "received") == plans
    assert count_events(log_dir, "hrm", "decided") == plans
