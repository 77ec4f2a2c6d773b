"""Refused sign-ins, audited per client per minute (SEC_03) instead of one record each.

A throttled client can retry as fast as the network allows and each refusal costs no
password check: one audit record per refusal let one client write ~950 records a second
into the root chain (issue 21, vuln 7). Here a client's first refusal in a minute is
recorded at once (the operator sees the attack start); the rest of that minute are counted
and written as one summary record when the minute is over (at the next refusal from anyone,
or at shutdown). At most one entry per refused client is held.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class _Minute:
    users: set[str] = field(default_factory=set)
    count: int = 0  # refusals after the first one


class RefusalDigest:
    MAX_USERS = 5  # names listed in a summary; the count covers the rest

    def __init__(self, write: Callable[..., object],
                 clock: Callable[[], float] = time.time) -> None:
        self._write, self._clock = write, clock
        self._minute = self._now_minute()
        self._pending: dict[str, _Minute] = {}

    def _now_minute(self) -> int:
        return int(self._clock() // 60)

    def refused(self, client: str, user: str, detail: str) -> None:
        minute = self._now_minute()
        if minute != self._minute:
            self.flush()
            self._minute = minute
        entry = self._pending.get(client)
        if entry is None:
            self._pending[client] = _Minute({user})
            self._write(user, "login", {"client": client}, "refused", detail=detail)
            return
        entry.count += 1
        if len(entry.users) < self.MAX_USERS:
            entry.users.add(user)

    def flush(self) -> None:
        """Write one summary per client that was refused more than once this minute."""
        pending, self._pending = self._pending, {}
        stamp = time.strftime("%Y-%m-%dT%H:%M", time.gmtime(self._minute * 60))
        for client, entry in pending.items():
            if entry.count:
                users = sorted(entry.users)
                self._write(users[0] if len(users) == 1 else "(several)", "login",
                            {"client": client, "refusals": entry.count, "minute": stamp,
                             "names": ",".join(users)}, "refused",
                            detail=f"rate limited: {entry.count} more refusals in {stamp}Z")
