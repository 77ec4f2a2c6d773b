"""TEST_02: schemathesis drives the live API (uvicorn on loopback, real redis-server) from its
own OpenAPI document, signed out and signed in as an admin: every response conforms to the
schema and the documented error shape, no generated input gives a 500, the rate limit 429s."""

from __future__ import annotations

import threading

import pytest
import requests
import schemathesis
import uvicorn
from conftest import free_port, wait_for
from console_app import PASSWORDS, make_app
from hypothesis import HealthCheck, given, settings

pytestmark = pytest.mark.requirement("TEST_02")


@pytest.fixture(scope="module")
def live_api(redis_server, tmp_path_factory):
    mp = pytest.MonkeyPatch()
    app, _units = make_app(redis_server.port, redis_server.password,
                           tmp_path_factory.mktemp("api"), mp, login_limit=1_000_000)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error",
                                           loop="uvloop", http="httptools", lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for(lambda: server.started, 15, what="uvicorn to listen")
    yield app, f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)
    mp.undo()


@pytest.fixture(scope="module")
def api_schema(live_api):
    return schemathesis.openapi.from_url(f"{live_api[1]}/openapi.json")


def admin_session(base: str) -> tuple[requests.Session, dict[str, str]]:
    s = requests.Session()
    r = s.post(f"{base}/login", data={"username": "alice", "password": PASSWORDS["alice"]},
               allow_redirects=False, timeout=10)
    assert r.status_code == 303, r.text
    return s, {"X-CSRF-Token": s.get(f"{base}/api/me", timeout=10).json()["csrf"]}


# schemathesis's own pytest loader does not run under pytest 9 (it writes Function._nodeid),
# so each operation's hypothesis strategy is driven here directly; same checks, same data.
FUZZ = settings(max_examples=25, deadline=None, database=None,
                suppress_health_check=list(HealthCheck))


def operations(api_schema):
    ops = [result.ok() for result in api_schema.get_all_operations()]
    assert len(ops) >= 15, [op.label for op in ops]
    return ops


def fuzz(api_schema, call) -> list[str]:
    failures = []
    for op in operations(api_schema):
        @FUZZ
        @given(case=op.as_strategy())
        def run(case):
            call(case)

        try:
            run()
        except Exception as exc:  # collect every operation's failure, then report them all
            failures.append(f"{op.label}: {str(exc)[:1500]}")
    return failures


def test_signed_out(live_api, api_schema):
    base = live_api[1]
    public = ("/health", "/metrics", "/openapi.json", "/login")

    def call(case):
        response = case.call_and_validate(base_url=base)
        if case.path == "/":
            assert response.status_code == 303
            assert response.headers["location"] in ("/login", ["/login"])
        elif case.path not in public:
            assert response.status_code in (401, 404, 405, 422), response.text

    failures = fuzz(api_schema, call)
    assert not failures, "\n\n".join(failures)


def test_signed_in_as_admin(live_api, api_schema):
    base = live_api[1]

    def call(case):
        # A fresh session per case: a generated /logout must not end the next case's session.
        session, csrf = admin_session(base)
        case.call_and_validate(base_url=base, session=session, headers=csrf)

    failures = fuzz(api_schema, call)
    assert not failures, "\n\n".join(failures)


def test_rate_limit_answers_429_in_the_documented_shape(live_api, api_schema):
    app, base = live_api
    throttle = app.state.auth.throttle
    throttle.reset()  # the fuzzing before this failed to sign in many times
    throttle.set_client_limit(3)
    try:
        codes = []
        for _ in range(5):
            r = requests.post(f"{base}/login", data={"username": "victor", "password": "no"},
                              allow_redirects=False, timeout=10)
            codes.append(r.status_code)
        assert codes[-1] == 429 and 429 in codes and codes[0] == 401
        api_schema["/login"]["POST"].validate_response(r)
        assert r.json()["error"]["code"] == "rate_limited" and r.headers["retry-after"]
    finally:
        throttle.set_client_limit(1_000_000)
        throttle.reset()
