"""/health's cached Redis ping: one round trip per interval, stale-while-refreshing."""

from __future__ import annotations

import asyncio

from ark_runtime.api.health import CachedPing, health_body


class CountingRedis:
    def __init__(self, fail: bool = False, delay: float = 0.0) -> None:
        self.calls, self.fail, self.delay = 0, fail, delay

    async def ping(self) -> bool:
        self.calls += 1
        await asyncio.sleep(self.delay)
        if self.fail:
            raise ConnectionError("down")
        return True


def test_many_callers_share_one_ping_per_interval():
    async def go():
        r = CountingRedis(delay=0.01)
        ping = CachedPing(r, ttl_s=60)
        results = await asyncio.gather(*(ping.get() for _ in range(200)))
        return r.calls, results

    calls, results = asyncio.run(go())
    assert calls == 1 and all(x["ok"] for x in results)


def test_redis_going_down_is_reported_without_slowing_callers():
    async def go():
        r = CountingRedis()
        ping = CachedPing(r, ttl_s=0)
        assert (await ping.get())["ok"]
        r.fail, r.delay = True, 0.5
        stale = await ping.get()  # answered from cache while the refresh runs
        still_refreshing = ping._inflight is not None
        await asyncio.sleep(0.6)
        return stale, still_refreshing, await ping.get()

    stale, still_refreshing, fresh = asyncio.run(go())
    assert stale["ok"] and still_refreshing  # the caller did not wait for the slow ping
    assert fresh == {"ok": False, "error": "ConnectionError"}
    assert health_body(fresh)[0] == 503


def test_unit_status_is_shared_and_control_refreshes_it():
    from ark_runtime.api.units import CachedUnits, UnitError

    class Source:
        def __init__(self) -> None:
            self.status_calls, self.fail = 0, False

        async def status(self):
            self.status_calls += 1
            if self.fail:
                raise UnitError("systemctl: bus down")
            return [{"Id": "ark-api.service", "ActiveState": "active"}]

        async def control(self, unit, verb):
            pass

    async def go():
        src = Source()
        cached = CachedUnits(src, ttl_s=60)
        for _ in range(50):
            await cached.status()
        first = src.status_calls
        await cached.control("ark-api.service", "restart")
        src.fail = True
        errors = 0
        for _ in range(20):
            try:
                await cached.status()
            except UnitError:
                errors += 1
        return first, src.status_calls, errors

    first, total, errors = asyncio.run(go())
    assert first == 1 and total == 2 and errors == 20
