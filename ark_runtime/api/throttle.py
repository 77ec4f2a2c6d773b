"""Login throttling (SEC_02): failed sign-ins slow the one who fails, not the operator.

Counted are failures only, in moving windows:

* per client address and account (the pair): a growing delay — after 3 failures within a
  minute that pair waits out the minute, after 6 in 15 minutes the 15 minutes, after 10 in an
  hour the hour (stacked windows, so the wait grows with persistence);
* per client address: 10 failures a minute (`client_per_minute`), ten times that an hour,
  over all accounts — one address spraying names;
* per account: 20 failures in 10 minutes from all addresses. It only holds back clients that
  have themselves failed: the right password from a client that has not failed is never
  refused, so nobody can lock an operator out by failing in their name (issue 21, vuln 3).

`Windows` never evicts a key whose failures are still inside its longest window, so a spray
of distinct names or addresses cannot flush a real one out (issue 21, vuln 2: the old limiter
dropped the key it had just created once it held 10,000). Memory is bounded by the failure
rate (the scrypt semaphore allows two checks at a time) times the longest window, and per key
by the largest limit. Expired keys are swept at most once per quarter window: the `limits`
library's in-memory storage was tried first, but its expiry timer walks every key every
10 ms — a spray of 10,100 failures made it burn a core.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

Tiers = tuple[tuple[int, float], ...]  # (failures allowed, within seconds)
PAIR: Tiers = ((3, 60.0), (6, 15 * 60.0), (10, 3600.0))
ACCOUNT: Tiers = ((20, 10 * 60.0),)


@dataclass(frozen=True)
class Verdict:
    wait_s: float  # 0 when the attempt may go ahead
    scope: str = ""  # which limit held it back: "pair", "client" or "account"


class Windows:
    """Failure times per key, checked against stacked (limit, window) tiers."""

    def __init__(self, tiers: Tiers) -> None:
        self.tiers = tiers
        self.horizon = max(window for _, window in tiers)
        self._keep = max(limit for limit, _ in tiers)  # older hits never decide anything
        self._hits: dict[str, deque[float]] = {}
        self._swept = 0.0

    def wait(self, key: str, now: float) -> float:
        """Seconds until `key` may fail again without breaking a tier (0: now)."""
        hits = self._hits.get(key)
        if not hits:
            return 0.0
        waits = []
        for limit, window in self.tiers:
            inside = [t for t in hits if t > now - window]
            if len(inside) >= limit:  # allowed again once the limit-th newest leaves
                waits.append(inside[-limit] + window - now)
        return max(waits, default=0.0)

    def count(self, key: str, now: float) -> int:
        return sum(1 for t in self._hits.get(key, ()) if t > now - self.horizon)

    def hit(self, key: str, now: float) -> None:
        self._sweep(now)
        self._hits.setdefault(key, deque(maxlen=self._keep)).append(now)

    def _sweep(self, now: float) -> None:
        if now - self._swept < self.horizon / 4:
            return
        self._swept = now
        for key in [k for k, v in self._hits.items() if not v or v[-1] <= now - self.horizon]:
            del self._hits[key]

    def __len__(self) -> int:
        return len(self._hits)


class LoginThrottle:
    def __init__(self, client_per_minute: int = 10,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.pair, self.account = Windows(PAIR), Windows(ACCOUNT)
        self.set_client_limit(client_per_minute)

    def set_client_limit(self, per_minute: int) -> None:
        self.client = Windows(((per_minute, 60.0), (per_minute * 10, 3600.0)))

    def check(self, client: str, account: str) -> Verdict:
        """May `client` try to sign in as `account` now?"""
        now = self.clock()
        for scope, windows, key in (("pair", self.pair, f"{client}\0{account}"),
                                    ("client", self.client, client)):
            wait = windows.wait(key, now)
            if wait > 0:
                return Verdict(max(wait, 0.001), scope)
        if self.client.count(client, now):  # only a client that has failed
            wait = self.account.wait(account, now)
            if wait > 0:
                return Verdict(max(wait, 0.001), "account")
        return Verdict(0.0)

    def failed(self, client: str, account: str) -> None:
        now = self.clock()
        self.pair.hit(f"{client}\0{account}", now)
        self.client.hit(client, now)
        self.account.hit(account, now)

    def reset(self) -> None:
        """Forget every failure (tests; a restart does the same)."""
        limit = self.client.tiers[0][0]
        self.pair, self.account = Windows(PAIR), Windows(ACCOUNT)
        self.set_client_limit(limit)
