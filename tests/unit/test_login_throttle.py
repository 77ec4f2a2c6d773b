"""The login throttle's policy on a controlled clock."""

from __future__ import annotations

import pytest

from ark_runtime.api.throttle import LoginThrottle


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock():
    return Clock()


def fail_until_held(throttle: LoginThrottle, clock: Clock, client: str, account: str,
                    failures: int) -> float:
    """Fail `failures` times, each as soon as allowed; the wait before the last one."""
    waited = 0.0
    for _ in range(failures):
        verdict = throttle.check(client, account)
        waited = verdict.wait_s
        clock.now += verdict.wait_s + 0.01
        throttle.failed(client, account)
    return waited


@pytest.mark.requirement("SEC_02")
def test_the_delay_grows_with_persistence(clock):
    throttle = LoginThrottle(client_per_minute=100, clock=clock)
    assert fail_until_held(throttle, clock, "192.0.2.1", "victor", 3) == 0
    short = throttle.check("192.0.2.1", "victor")
    assert short.scope == "pair" and 0 < short.wait_s <= 60
    fail_until_held(throttle, clock, "192.0.2.1", "victor", 3)
    longer = throttle.check("192.0.2.1", "victor")
    assert 60 < longer.wait_s <= 15 * 60
    fail_until_held(throttle, clock, "192.0.2.1", "victor", 4)
    longest = throttle.check("192.0.2.1", "victor")
    assert 15 * 60 < longest.wait_s <= 3600
    clock.now += 3600
    assert throttle.check("192.0.2.1", "victor").wait_s == 0  # forgotten after the hour


@pytest.mark.requirement("SEC_02")
def test_other_clients_and_accounts_are_not_held(clock):
    throttle = LoginThrottle(clock=clock)
    for _ in range(3):
        throttle.failed("192.0.2.1", "victor")
    assert throttle.check("192.0.2.1", "victor").wait_s > 0
    assert throttle.check("192.0.2.2", "victor").wait_s == 0
    assert throttle.check("192.0.2.1", "alice").wait_s == 0


@pytest.mark.requirement("SEC_02")
def test_a_hot_account_holds_back_only_clients_that_failed(clock):
    throttle = LoginThrottle(clock=clock)
    for i in range(20):
        throttle.failed(f"10.0.0.{i}", "alice")
    assert throttle.check("10.0.0.1", "alice").scope == "account"
    assert throttle.check("192.0.2.99", "alice").wait_s == 0  # never failed: may try


@pytest.mark.requirement("SEC_02")
def test_one_address_spraying_names_is_held(clock):
    throttle = LoginThrottle(client_per_minute=10, clock=clock)
    for i in range(10):
        throttle.failed("192.0.2.1", f"user{i}")
    verdict = throttle.check("192.0.2.1", "someone-new")
    assert verdict.scope == "client" and 0 < verdict.wait_s <= 60


@pytest.mark.requirement("SEC_02")
def test_a_spray_does_not_evict_a_live_window(clock):
    """Issue 21, vuln 2 at the structure itself: 10,100 other keys, then the victim's
    failures still count, and keys are only dropped once their window is over."""
    throttle = LoginThrottle(client_per_minute=10, clock=clock)
    for i in range(10_100):
        clock.now += 0.001
        throttle.failed(f"10.0.{i // 250}.{i % 250}", f"user{i}")
    for _ in range(3):
        throttle.failed("203.0.113.9", "victor")
    assert throttle.check("203.0.113.9", "victor").wait_s > 0
    clock.now += 3601
    throttle.failed("203.0.113.10", "x")  # triggers the sweep
    assert len(throttle.pair) == 1 and len(throttle.client) == 1
