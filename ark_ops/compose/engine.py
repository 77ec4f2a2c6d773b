"""DEPLOY_02: the Docker engine side of the compose stack (needs root and docker.io).

* `Engine` uses a running dockerd, or starts one that leaves the machine's network alone:
  `--iptables=false` (dockerd would set the FORWARD policy to DROP, and with br_netfilter
  loaded that drops the lab bridge's traffic), `--ip-forward=false` (the lab keeps
  forwarding off), no default bridge. The stack's networks are plain bridges, which is all
  six containers on one host need. It stops what it started and puts back any netfilter
  setting that changed meanwhile.
* No registry is reachable: the base image is the lab's debootstrap root (`docker import`),
  and Python packages come from the hash-checked wheelhouse.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

from ark_ops.compose.files import COMPOSE_FILE, DOCKER_COMPOSE, PROJECT, ComposeError
from ark_ops.deploy import wheelhouse
from ark_ops.lab.config import LabPaths
from ark_ops.lab.image import ensure_base_image, image_key
from ark_ops.paths import REPO_ROOT

DOCKER = "/usr/bin/docker"  # Debian's client; /usr/local/bin/docker may be another one
DOCKERD = "/usr/sbin/dockerd"
IMAGE = "ark-runtime:local"
BASE_REPO = "ark-base"
WORK = REPO_ROOT / "build" / "compose"
DOCKERD_FLAGS = ("--iptables=false", "--ip6tables=false", "--ip-forward=false",
                 "--ip-masq=false", "--bridge=none", "--userland-proxy-path=/usr/sbin/docker-proxy")
# dockerd finds containerd, runc and docker-proxy on PATH: Debian puts some in sbin.
DOCKERD_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
IP_FORWARD = Path("/proc/sys/net/ipv4/ip_forward")
BRIDGE_NF = Path("/proc/sys/net/bridge/bridge-nf-call-iptables")


def run(argv: list[str], what: str, timeout: float = 600, **kw) -> subprocess.CompletedProcess:
    kw.setdefault("stdin", subprocess.DEVNULL)
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, **kw)
    if proc.returncode != 0:
        raise ComposeError(f"{what} failed (exit {proc.returncode}): "
                           f"{(proc.stderr or proc.stdout).strip()[-1500:]}")
    return proc


def netfilter_state() -> dict[str, str | None]:
    """What dockerd could change that the lab's bridge depends on."""
    forward = None
    try:
        rules = subprocess.run(["iptables", "-S", "FORWARD"], capture_output=True, text=True,
                               timeout=30).stdout.splitlines()
        forward = next((r.split()[2] for r in rules if r.startswith("-P FORWARD")), None)
    except FileNotFoundError:
        pass
    return {
        "forward_policy": forward,
        "ip_forward": IP_FORWARD.read_text().strip(),
        "bridge_nf_call_iptables": BRIDGE_NF.read_text().strip() if BRIDGE_NF.exists() else None,
    }


def restore_netfilter(before: dict[str, str | None]) -> list[str]:
    """Put back what changed since `before`; return what was put back."""
    now, fixed = netfilter_state(), []
    if before["forward_policy"] and now["forward_policy"] != before["forward_policy"]:
        subprocess.run(["iptables", "-P", "FORWARD", before["forward_policy"]], check=True)
        fixed.append(f"FORWARD policy {now['forward_policy']} -> {before['forward_policy']}")
    if now["ip_forward"] != before["ip_forward"]:
        IP_FORWARD.write_text(f"{before['ip_forward']}\n")
        fixed.append(f"ip_forward {now['ip_forward']} -> {before['ip_forward']}")
    if before["bridge_nf_call_iptables"] is not None and BRIDGE_NF.exists() and \
            now["bridge_nf_call_iptables"] != before["bridge_nf_call_iptables"]:
        BRIDGE_NF.write_text(f"{before['bridge_nf_call_iptables']}\n")
        fixed.append("bridge-nf-call-iptables restored")
    return fixed


def engine_answers() -> bool:
    return subprocess.run([DOCKER, "info"], capture_output=True, timeout=30,
                          stdin=subprocess.DEVNULL).returncode == 0


STATE_FILE = WORK / "dockerd.json"  # a dockerd `invoke compose.up` started and left running


class Engine:
    """A dockerd for the duration of a `with` block: the running one, or one started here
    (then stopped on exit, and any netfilter change undone). With keep=True a dockerd started
    here is left running for the stack and recorded, so `stop_kept_engine` can stop it."""

    def __init__(self, log=print, keep: bool = False) -> None:
        self.log, self.keep = log, keep
        self.proc: subprocess.Popen | None = None
        self.before: dict[str, str | None] = {}
        self.restored: list[str] = []

    @property
    def started(self) -> bool:
        return self.proc is not None

    def __enter__(self) -> Engine:
        for tool in (DOCKER, DOCKERD, DOCKER_COMPOSE):
            if not Path(tool).exists():
                raise ComposeError(f"{tool} is missing: apt-get install docker.io docker-compose")
        if engine_answers():
            return self
        if os.geteuid() != 0:
            raise ComposeError("dockerd is not running and only root can start it")
        self.before = netfilter_state()
        WORK.mkdir(parents=True, exist_ok=True)
        self.log("starting dockerd (no iptables, no forwarding: the lab bridge is left alone)")
        with open(WORK / "dockerd.log", "ab") as out:
            self.proc = subprocess.Popen([DOCKERD, *DOCKERD_FLAGS], stdout=out, stderr=out,
                                         stdin=subprocess.DEVNULL, start_new_session=True,
                                         env={**os.environ, "PATH": DOCKERD_PATH})
        deadline = time.monotonic() + 60
        while not engine_answers():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise ComposeError(f"dockerd did not come up; see {WORK / 'dockerd.log'}")
            time.sleep(0.5)
        return self

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.proc = None
        self.restored = restore_netfilter(self.before)

    def __exit__(self, *exc: object) -> None:
        if self.keep and self.proc is not None and exc[0] is None:
            STATE_FILE.write_text(json.dumps({"pid": self.proc.pid, "before": self.before}))
            return
        self.stop()


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except (OSError, IndexError):
        return False


def stop_kept_engine(log=print) -> list[str]:
    """Stop the dockerd `invoke compose.up` started (if any) and undo netfilter changes."""
    if not STATE_FILE.exists():
        return []
    state = json.loads(STATE_FILE.read_text())
    pid = int(state["pid"])
    try:
        exe = os.readlink(f"/proc/{pid}/exe")
    except OSError:
        exe = ""
    if Path(exe).name == "dockerd":  # a recycled pid is left alone
        log(f"stopping the dockerd compose.up started (pid {pid})")
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 60
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.5)
    STATE_FILE.unlink()
    return restore_netfilter(state["before"])


def base_tag() -> str:
    return f"{BASE_REPO}:{image_key()}"


def import_base_image(log=print) -> str:
    """The lab's debootstrap root as a Docker image, imported once per image key."""
    tag = base_tag()
    if subprocess.run([DOCKER, "image", "inspect", tag], capture_output=True).returncode == 0:
        return tag
    root = ensure_base_image(LabPaths.default().cache, log=log)
    log(f"importing {root.name} as {tag} (once per base image)…")
    tar = subprocess.Popen(["tar", "-C", str(root), "--numeric-owner", "-cf", "-", "."],
                           stdout=subprocess.PIPE)
    try:
        run([DOCKER, "import", "-", tag], "docker import", stdin=tar.stdout)
    finally:
        tar.stdout.close()
        if tar.wait() != 0:
            raise ComposeError(f"tar of {root} failed (exit {tar.returncode})")
    return tag


def build_image(log=print) -> str:
    """Base image, wheelhouse, then the ARK image (`docker build`, no network needed)."""
    base = import_base_image(log=log)
    out = REPO_ROOT / "build" / "wheelhouse"
    wheelhouse.build(REPO_ROOT / "requirements.lock", out, log=log)
    log(f"building {IMAGE} from {base}…")
    run([DOCKER, "build", "--network", "none", "--build-arg", f"BASE_IMAGE={base}",
         "-t", IMAGE, str(REPO_ROOT)], "docker build", timeout=900)
    return IMAGE


def compose(*args: str, timeout: float = 300, env: dict[str, str] | None = None,
            check: bool = True) -> subprocess.CompletedProcess:
    argv = [DOCKER_COMPOSE, "-f", str(COMPOSE_FILE), "-p", PROJECT, *args]
    full_env = {**os.environ, **(env or {})}
    if check:
        return run(argv, f"docker-compose {args[0]}", timeout=timeout, cwd=REPO_ROOT,
                   env=full_env)
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                          cwd=REPO_ROOT, env=full_env, stdin=subprocess.DEVNULL)


def inspect(service: str) -> dict:
    """`docker inspect` of the service's container."""
    cid = compose("ps", "-q", service).stdout.strip()
    if not cid:
        raise ComposeError(f"no container for service {service}: is the stack up?")
    return json.loads(run([DOCKER, "inspect", cid], "docker inspect").stdout)[0]


def wait_healthy(services: tuple[str, ...], timeout: float = 150, log=print) -> dict[str, str]:
    """Wait until every service's healthcheck says healthy; name the ones that do not."""
    deadline, status = time.monotonic() + timeout, {}
    while time.monotonic() < deadline:
        status = {s: inspect(s)["State"].get("Health", {}).get("Status") for s in services}
        if all(v == "healthy" for v in status.values()):
            return status
        time.sleep(2)
    waiting = ", ".join(f"{s} ({v})" for s, v in status.items() if v != "healthy")
    raise ComposeError(f"not healthy after {timeout:.0f}s: {waiting}; "
                       "see `docker-compose -p ark logs`")
