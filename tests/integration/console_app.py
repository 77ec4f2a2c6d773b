"""Shared pieces for the console tests: a real app on the real test redis-server, with
operator accounts and a unit source that stands in for systemd (real units are not here). The
API's audit records go over journald's native protocol to a stand-in journald socket
(tests/support/journal.py): no systemd runs on this machine."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator
from pathlib import Path

from fastapi.testclient import TestClient

from ark_runtime.api.app import create_app
from ark_runtime.api.operators import Operator
from ark_runtime.api.passwords import hash_password
from ark_runtime.api.units import UnitNotFound, valid_unit
from ark_runtime.config import RedisSettings
from tests.support.journal import FakeJournald

PASSWORDS = {"alice": "alice-admin-pw", "victor": "victor-viewer-pw"}
# Cheap scrypt parameters keep the suite fast; production uses passwords.N.
OPERATORS = {
    "alice": Operator("alice", "admin", hash_password(PASSWORDS["alice"], n=2**10)),
    "victor": Operator("victor", "viewer", hash_password(PASSWORDS["victor"], n=2**10)),
}
SECRET = secrets.token_urlsafe(40)


class StaticUnits:
    """Units held in memory; control() changes their state the way systemctl would."""

    def __init__(self) -> None:
        self.units = {name: {"Id": name, "ActiveState": "active", "SubState": "running",
                             "ActiveEnterTimestamp": "Thu 2026-11-26 22:00:00 UTC",
                             "NRestarts": "0", "MainPID": str(1000 + i)}
                      for i, name in enumerate(["ark.target", "ark-api.service",
                                                "ark-agent@kyle.service",
                                                "ark-agent@hrm.service"])}
        self.calls: list[tuple[str, str]] = []

    async def status(self) -> list[dict[str, str]]:
        return [dict(u) for u in self.units.values()]

    async def control(self, unit: str, verb: str) -> None:
        if not valid_unit(unit) or unit not in self.units:
            raise UnitNotFound(f"Unit {unit} not loaded.")
        self.calls.append((unit, verb))
        state = "inactive" if verb == "stop" else "active"
        self.units[unit].update(ActiveState=state,
                                SubState="dead" if state == "inactive" else "running",
                                MainPID="0" if state == "inactive" else "4242")


def make_app(port: int, password: str, env_root: Path, monkeypatch, **kw):
    for name, sub in (("ARK_STATE_DIR", "state"), ("ARK_LOG_DIR", "log"),
                      ("ARK_CONFIG_DIR", "etc")):
        (env_root / sub).mkdir(parents=True, exist_ok=True)
        monkeypatch.setenv(name, str(env_root / sub))
    journal = JOURNALS.get(env_root)
    if journal is None or not journal.running:
        journal = JOURNALS[env_root] = FakeJournald()
        # Not yet running: monkeypatch notes False and puts it back when the test ends, which
        # stops the reader thread that start() sets going.
        monkeypatch.setattr(journal, "running", False)
        journal.start()
    monkeypatch.setenv("ARK_AUDIT_SINK", "journal")
    monkeypatch.setenv("ARK_AUDIT_JOURNAL_SOCKET", str(journal.path))
    units = kw.pop("units", None) or StaticUnits()
    kw.setdefault("allowed_hosts", frozenset({"testserver", "127.0.0.1", "localhost"}))
    app = create_app(RedisSettings(port=port, password=password), secret=SECRET,
                     operators=OPERATORS, units=units, **kw)
    return app, units


@contextlib.contextmanager
def console_client(redis_server, tmp_path: Path, monkeypatch, **kw) -> Iterator[TestClient]:
    """A TestClient on the real app (real Redis, static units); `.units` and `.root` are the
    units double and the env root (`audit(root)` gives the records the app sent)."""
    app, units = make_app(redis_server.port, redis_server.password, tmp_path, monkeypatch, **kw)
    with TestClient(app, base_url="http://testserver") as client:
        client.units, client.root = units, tmp_path
        yield client


def sign_in(client: TestClient, user: str) -> str:
    """Sign `user` in with their password; the CSRF token of the new session."""
    resp = client.post("/login", data={"username": user, "password": PASSWORDS[user]},
                       follow_redirects=False)
    assert resp.status_code == 303, resp.text
    return client.get("/api/me").json()["csrf"]


def audit(root: Path) -> list[dict]:
    """The console's audit records as the journal received them, oldest first."""
    journal = JOURNALS.get(root)
    return journal.records() if journal is not None else []


JOURNALS: dict[Path, FakeJournald] = {}  # one stand-in journald per test's env root
