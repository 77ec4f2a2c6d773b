"""Signed session cookies (itsdangerous): HttpOnly, SameSite=Strict, Secure over TLS, with an
expiry; each session carries its own CSRF token. The server also remembers live session ids
so logout really ends a session (a copied cookie stops working too)."""

from __future__ import annotations

import hmac
import secrets
import time
from dataclasses import dataclass

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


class SessionManager:
    def __init__(self, secret: str, *, max_age_s: int = 8 * 3600) -> None:
        if len(secret) < 32:
            raise ValueError("ARK_API_SECRET: must be at least 32 characters")
        self._signer = URLSafeTimedSerializer(secret, salt="ark-console-session")
        self.max_age_s = max_age_s
        self._live: dict[str, float] = {}  # sid -> expiry (monotonic)

    def issue(self, response: Response, user: str, role: str, *, secure: bool) -> Session:
        session = Session(secrets.token_urlsafe(18), user, role, secrets.token_urlsafe(24))
        now = time.monotonic()
        self._live = {k: v for k, v in self._live.items() if v > now}
        self._live[session.sid] = now + self.max_age_s
        token = self._signer.dumps([session.sid, user, role, session.csrf])
        response.set_cookie(COOKIE, token, max_age=self.max_age_s, httponly=True,
                            samesite="strict", secure=secure, path="/")
        return session

    def read(self, conn: HTTPConnection) -> Session | None:
        token = conn.cookies.get(COOKIE)
        if not token:
            return None
        try:
            sid, user, role, csrf = self._signer.loads(token, max_age=self.max_age_s)
        except (BadSignature, ValueError, TypeError):
            return None
        if self._live.get(sid, 0) <= time.monotonic():
            return None  # logged out, expired, or issued before a restart
        return Session(sid, user, role, csrf)

    def end(self, session: Session, response: Response) -> None:
        self._live.pop(session.sid, None)
        response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")

    @staticmethod
    def csrf_ok(session: Session, presented: str | None) -> bool:
        # Bytes, not str: compare_digest refuses non-ASCII str (X-CSRF-Token: \xff was a 500).
        return bool(presented) and hmac.compare_digest(
            session.csrf.encode(), (presented or "").encode("utf-8", "surrogateescape"))
