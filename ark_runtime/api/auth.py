"""Sign-in, sign-out and the guards every other route uses.

* `operator` — a signed-in operator, else 401 (pages redirect to /login instead).
* `admin` — additionally role admin, else 403; state-changing routes also need the
  session's CSRF token in the X-CSRF-Token header (else 403), checked before the role.
* Failed sign-ins are throttled per client address, per account and per pair with a growing
  delay (throttle.py; 429 with Retry-After); the right password from a client that has not
  failed is never refused. Every attempt, good or bad, is an audit record.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response

from ark_runtime.api import audit_hook
from ark_runtime.api.errors import ApiError, responses
from ark_runtime.api.operators import Operator, OperatorsError, load_operators
from ark_runtime.api.passwords import DUMMY_HASH, verify_password
from ark_runtime.api.refusals import RefusalDigest
from ark_runtime.api.sessions import CSRF_HEADER, Session, SessionManager
from ark_runtime.api.throttle import LoginThrottle

log = logging.getLogger("ark.api.auth")


@dataclass
class AuthState:
    sessions: SessionManager
    operators: dict[str, Operator]
    throttle: LoginThrottle = field(default_factory=LoginThrottle)
    # Refusals are audited per client per minute, not one record each (refusals.py).
    refusals: RefusalDigest = field(default_factory=lambda: RefusalDigest(
        lambda *a, **k: audit_hook.record(*a, **k)))
    # At most two scrypt checks at once (16 MiB each): a login flood costs bounded CPU and
    # memory instead of one hash per worker thread.
    hashing: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(2))
    # operators.json when the accounts come from it: re-read when it changes, so a removed
    # or demoted operator's sessions end within seconds, not at the next restart.
    operators_file: Path | None = None
    _stamp: tuple[int, int] | None = None
    _checked: float = 0.0

    def replace_operators(self, operators: dict[str, Operator]) -> int:
        """New accounts; sessions of operators now gone or in another role end (count)."""
        self.operators = operators
        return self.sessions.sync({o.name: o.role for o in operators.values()})

    def refresh(self, *, every_s: float = 1.0) -> None:
        """Re-read operators_file if it changed (stat at most once per `every_s`). A file
        that does not parse keeps the accounts as they are (and says so in the log)."""
        now = time.monotonic()
        if self.operators_file is None or now - self._checked < every_s:
            return
        self._checked = now
        try:
            st = self.operators_file.stat()
            stamp = (st.st_mtime_ns, st.st_ino)
        except FileNotFoundError:
            stamp = (0, 0)
        if stamp == self._stamp:
            return
        try:
            operators = load_operators(self.operators_file)
        except OperatorsError as exc:
            log.error("operators not reloaded: %s", exc)
            return
        self._stamp = stamp
        self.replace_operators(operators)


class NotSignedIn(ApiError):
    def __init__(self) -> None:
        super().__init__(401, "sign in first (POST /login)")


def _state(request: Request) -> AuthState:
    return request.app.state.auth


def operator(request: Request) -> Session:
    state = _state(request)
    state.refresh()
    session = state.sessions.read(request)
    if session is None:
        raise NotSignedIn()
    return session


def csrf(request: Request, session: Annotated[Session, Depends(operator)]) -> Session:
    if not SessionManager.csrf_ok(session, request.headers.get(CSRF_HEADER)):
        raise ApiError(403, "missing or wrong X-CSRF-Token header", "csrf_failed")
    return session


def admin(session: Annotated[Session, Depends(csrf)]) -> Session:
    if not session.is_admin:
        raise ApiError(403, f"operator {session.user!r} is not an admin")
    return session


def is_tls(request: Request) -> bool:
    # uvicorn rewrites the scheme from X-Forwarded-Proto for trusted proxies (loopback).
    return request.url.scheme in ("https", "wss")


def same_origin(origin: str | None, scheme: str, host: str | None) -> bool:
    """True when there is no Origin header (not a browser) or it is exactly this server's
    scheme and host; ws/wss count as http/https."""
    if origin is None:
        return True
    web = {"ws": "http", "wss": "https"}.get(scheme, scheme)
    return bool(host) and origin == f"{web}://{host}"


router = APIRouter()


@router.post("/login", tags=["auth"], status_code=303,
             responses={303: {"description": "signed in; the cookie is set"},
                        **responses(401, 403, 413, 422, 429)})
async def login(request: Request, username: Annotated[str, Form(min_length=1, max_length=64)],
                password: Annotated[str, Form(min_length=1, max_length=1024)]) -> Response:
    state = _state(request)
    client = request.client.host if request.client else "unknown"
    if not same_origin(request.headers.get("origin"), request.url.scheme,
                       request.headers.get("host")):
        # A page elsewhere may not sign a browser in (login CSRF); curl sends no Origin.
        raise ApiError(403, "sign-in from another site refused", "cross_site")
    wait = state.throttle.check(client, username).wait_s
    if wait:
        state.refusals.refused(client, username, "rate limited")
        raise ApiError(429, f"too many sign-in attempts; try again in {int(wait) + 1} s",
                       headers={"Retry-After": str(int(wait) + 1)})
    account = state.operators.get(username)
    started = time.perf_counter()
    # scrypt is CPU-bound: off the event loop so other requests keep flowing.
    async with state.hashing:
        ok = await asyncio.to_thread(verify_password, password,
                                     account.password_hash if account else DUMMY_HASH)
    elapsed = (time.perf_counter() - started) * 1000
    if not (ok and account):
        state.throttle.failed(client, username)
        audit_hook.record(username, "login", {"client": client}, "failed",
                          detail="wrong name or password", duration_ms=elapsed)
        raise ApiError(401, "wrong operator name or password", "login_failed")
    response = RedirectResponse("/", status_code=303)
    state.sessions.issue(response, account.name, account.role, secure=is_tls(request))
    audit_hook.record(account.name, "login", {"client": client, "role": account.role}, "ok",
                      duration_ms=elapsed)
    return response


@router.post("/logout", tags=["auth"], status_code=204, responses=responses(401, 403))
async def logout(request: Request, session: Annotated[Session, Depends(csrf)]) -> Response:
    response = Response(status_code=204)
    _state(request).sessions.end(session, response)
    audit_hook.record(session.user, "logout", {}, "ok")
    return response
