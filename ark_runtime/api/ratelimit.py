"""Login rate limit: a sliding window per client address and per login name."""

from __future__ import annotations

import time
from collections import deque


class SlidingWindow:
    def __init__(self, limit: int, window_s: float) -> None:
        self.limit, self.window_s = limit, window_s
        self._hits: dict[str, deque[float]] = {}

    def _prune(self, key: str, now: float) -> deque[float]:
        hits = self._hits.setdefault(key, deque())
        while hits and hits[0] <= now - self.window_s:
            hits.popleft()
        if len(self._hits) > 10_000:  # bound memory under a spray of keys
            for k in [k for k, v in self._hits.items() if not v][:5_000]:
                del self._hits[k]
        return hits

    def retry_after(self, key: str, now: float | None = None) -> float:
        """0 when `key` may try now, else seconds until it may."""
        now = time.monotonic() if now is None else now
        hits = self._prune(key, now)
        if len(hits) < self.limit:
            return 0.0
        return max(hits[0] + self.window_s - now, 0.001)

    def hit(self, key: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        self._prune(key, now).append(now)
