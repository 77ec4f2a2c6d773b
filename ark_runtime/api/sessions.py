"""Sessions: a signed cookie (itsdangerous; HttpOnly, SameSite=Strict, Secure over TLS) that
names a record the server keeps — user, role, CSRF token, absolute expiry, last activity and
the session's open WebSockets.

The server's record is the authority, not the cookie: logout, an expiry, an idle timeout or
a change to the operator (removed, or another role: `sync()`) ends the record, and with it
every request and socket of that session. Nothing survives a restart: everyone signs in
again.
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.requests import HTTPConnection
from starlette.responses import Response

COOKIE = "ark_session"
CSRF_HEADER = "x-csrf-token"


@dataclass(frozen=True)
class Session:
    sid: str
    user: str
    role: str
    csrf: str

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


@dataclass(eq=False)
class _Live:
    session: Session
    expires: float  # monotonic
    seen: float  # monotonic, last request
    # Called with a reason when the session ends: each closes one of its WebSockets.
    closers: set[Callable[[str], None]] = field(default_factory=set)


class SessionManager:
    def __init__(self, secret: str, *, max_age_s: int = 8 * 3600,
                 idle_s: int = 30 * 60) -> None:
        if len(secret) < 32:
            raise ValueError("ARK_API_SECRET: must be at least 32 characters")
        self._signer = URLSafeTimedSerializer(secret, salt="ark-console-session")
        self.max_age_s, self.idle_s = max_age_s, idle_s
        self._live: dict[str, _Live] = {}

    def issue(self, response: Response, user: str, role: str, *, secure: bool) -> Session:
        session = Session(secrets.token_urlsafe(18), user, role, secrets.token_urlsafe(24))
        self.sweep()
        now = time.monotonic()
        self._live[session.sid] = _Live(session, now + self.max_age_s, now)
        response.set_cookie(COOKIE, self._signer.dumps(session.sid), max_age=self.max_age_s,
                            httponly=True, samesite="strict", secure=secure, path="/")
        return session

    def read(self, conn: HTTPConnection, *, touch: bool = True) -> Session | None:
        token = conn.cookies.get(COOKIE)
        if not token:
            return None
        try:
            sid = self._signer.loads(token, max_age=self.max_age_s)
        except (BadSignature, ValueError, TypeError):
            return None
        live = self._live.get(sid) if isinstance(sid, str) else None
        if live is None:
            return None  # logged out, expired, revoked, or issued before a restart
        now = time.monotonic()
        if now >= live.expires or now - live.seen >= self.idle_s:
            self._end(sid, "session expired")
            return None
        if touch:
            live.seen = now
        return live.session

    def end(self, session: Session, response: Response) -> None:
        self._end(session.sid, "signed out")
        response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")

    def _end(self, sid: str, reason: str) -> None:
        live = self._live.pop(sid, None)
        if live is not None:
            for close in list(live.closers):
                close(reason)

    def sweep(self) -> int:
        """End every session past its expiry or idle timeout (and close its sockets)."""
        now = time.monotonic()
        gone = [sid for sid, live in self._live.items()
                if now >= live.expires or now - live.seen >= self.idle_s]
        for sid in gone:
            self._end(sid, "session expired")
        return len(gone)

    def sync(self, roles: Mapping[str, str]) -> int:
        """End the sessions of operators who are gone or whose role changed (`roles`: the
        accounts as they are now, name -> role)."""
        stale = [sid for sid, live in self._live.items()
                 if roles.get(live.session.user) != live.session.role]
        for sid in stale:
            self._end(sid, "operator changed; sign in again")
        return len(stale)

    def attach(self, session: Session, close: Callable[[str], None]) -> bool:
        """Register a WebSocket's closer with its session (False if the session is gone)."""
        live = self._live.get(session.sid)
        if live is None:
            return False
        live.closers.add(close)
        return True

    def detach(self, session: Session, close: Callable[[str], None]) -> None:
        live = self._live.get(session.sid)
        if live is not None:
            live.closers.discard(close)

    @staticmethod
    def csrf_ok(session: Session, presented: str | None) -> bool:
        # Bytes, not str: compare_digest refuses non-ASCII str (X-CSRF-Token: \xff was a 500).
        return bool(presented) and hmac.compare_digest(
            session.csrf.encode(), (presented or "").encode("utf-8", "surrogateescape"))
