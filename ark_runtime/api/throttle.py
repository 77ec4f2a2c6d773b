"""Login throttling (SEC_02): failed sign-ins slow the one who fails, not the operator.

Counted are failures only, in moving windows (the `limits` library, in-process storage):

* per client address and account (the pair): a growing delay — after 3 failures within a
  minute that pair waits out the minute, after 6 in 15 minutes the 15 minutes, after 10 in an
  hour the hour (stacked windows, so the wait grows with persistence);
* per client address: 10 failures a minute (`client_per_minute`), 100 an hour, over all
  accounts — one address spraying names;
* per account: 20 failures in 10 minutes from all addresses. It only holds back clients that
  have themselves failed: the right password from a client that has not failed is never
  refused, so nobody can lock an operator out by failing in their name (issue 21, vuln 3).

The storage never evicts a live window to make room (a spray of distinct names or addresses
cannot flush a real one out, issue 21, vuln 2); a window's entries expire with it. Memory is
bounded by the failure rate, which the scrypt semaphore bounds (two hashes at a time).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from limits import RateLimitItem, parse, parse_many
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

PAIR = tuple(parse_many("3/minute;6/15 minutes;10/hour"))
ACCOUNT = parse("20/10 minutes")


@dataclass(frozen=True)
class Verdict:
    wait_s: float  # 0 when the attempt may go ahead
    scope: str = ""  # which limit held it back: "pair", "client" or "account"


class LoginThrottle:
    def __init__(self, client_per_minute: int = 10) -> None:
        self._limiter = MovingWindowRateLimiter(MemoryStorage())
        self.client_limits: tuple[RateLimitItem, ...] = ()
        self.set_client_limit(client_per_minute)

    def set_client_limit(self, per_minute: int) -> None:
        self.client_limits = (parse(f"{per_minute}/minute"), parse(f"{per_minute * 10}/hour"))

    def _wait(self, limits: tuple[RateLimitItem, ...], *key: str) -> float:
        now = time.time()
        waits = [self._limiter.get_window_stats(lim, *key).reset_time - now
                 for lim in limits if not self._limiter.test(lim, *key)]
        return max(max(waits), 0.001) if waits else 0.0

    def check(self, client: str, account: str) -> Verdict:
        """May `client` try to sign in as `account` now?"""
        for scope, limits, key in (("pair", PAIR, ("pair", client, account)),
                                   ("client", self.client_limits, ("client", client))):
            wait = self._wait(limits, *key)
            if wait:
                return Verdict(wait, scope)
        if self.has_failed(client):
            wait = self._wait((ACCOUNT,), "account", account)
            if wait:
                return Verdict(wait, "account")
        return Verdict(0.0)

    def has_failed(self, client: str) -> bool:
        lim = self.client_limits[-1]
        return self._limiter.get_window_stats(lim, "client", client).remaining < lim.amount

    def failed(self, client: str, account: str) -> None:
        for lim in PAIR:
            self._limiter.hit(lim, "pair", client, account)
        for lim in self.client_limits:
            self._limiter.hit(lim, "client", client)
        self._limiter.hit(ACCOUNT, "account", account)

    def reset(self) -> None:
        """Forget every failure (tests; an operator restart does the same)."""
        self._limiter.storage.reset()
