"""The console API's realistic traffic mix, for `invoke load` (TEST_03). Run by locust only.

Weights: health 60 %, status 20 %, log tail 15 %, login 5 %. Users share one session made at
test start (ARK_LOAD_USER / ARK_LOAD_PASSWORD from the environment, never argv); the login
task signs in for real, so past the API's limit it is answered 429 — counted as the rate
limit working (its own line in the report, renamed, not an extra request), not as an error.
"""

from __future__ import annotations

import os

from locust import FastHttpUser, constant_throughput, events, task

SESSION: dict[str, str] = {}


@events.test_start.add_listener
def sign_in(environment, **_kw) -> None:
    import urllib.error
    import urllib.parse
    import urllib.request

    user, password = os.environ.get("ARK_LOAD_USER"), os.environ.get("ARK_LOAD_PASSWORD")
    if not (user and password):
        return

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *a, **k):
            return None

    data = urllib.parse.urlencode({"username": user, "password": password}).encode()
    try:
        urllib.request.build_opener(NoRedirect).open(
            urllib.request.Request(f"{environment.host}/login", data=data), timeout=10)
    except urllib.error.HTTPError as exc:
        if exc.code == 303:
            SESSION["cookie"] = exc.headers["set-cookie"].split(";", 1)[0]


class Operator(FastHttpUser):
    # Each user sends ~1 request/s; `invoke load --rps N` starts N users.
    wait_time = constant_throughput(float(os.environ.get("ARK_LOAD_PER_USER_RPS", "1")))

    def _headers(self) -> dict[str, str]:
        return {"Cookie": SESSION["cookie"]} if SESSION else {}

    @task(60)
    def health(self) -> None:
        self.client.get("/health", name="health")

    @task(20)
    def status(self) -> None:
        self.client.get("/api/status", name="status", headers=self._headers())

    @task(15)
    def log_tail(self) -> None:
        self.client.get("/api/logs?lines=50", name="log tail", headers=self._headers())

    @task(5)
    def login(self) -> None:
        data = {"username": os.environ.get("ARK_LOAD_USER", "load"),
                "password": os.environ.get("ARK_LOAD_PASSWORD", "")}
        with self.client.post("/login", data=data, name="login", allow_redirects=False,
                              catch_response=True) as resp:
            if resp.status_code == 429:
                # Its own line, and still one request (not an extra event that would inflate
                # the achieved RPS).
                resp.request_meta["name"] = "login (429 rate limited)"
                resp.success()
            elif resp.status_code not in (303, 401):
                resp.failure(f"login answered {resp.status_code}")
            else:
                resp.success()
