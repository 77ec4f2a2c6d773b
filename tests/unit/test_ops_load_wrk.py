"""`invoke load --generator wrk` (issue #23 §5): the mix against the API's OpenAPI document,
mix.lua run by the real wrk against a small local HTTP server, the parsing of its summary,
and the secrets' path (never on a command line, in a report or an error)."""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import stat
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import psutil
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ark_ops.errors import OpsError
from ark_ops.load import mix, wrk

PASSWORD = "load-test-Secret-pw-0"
COOKIE = "ark_session=Cookie.Secret-Value_123"
CSRF = "csrf-Secret-Token_456"


@pytest.fixture(scope="module")
def openapi() -> dict:
    from ark_runtime.api.app import create_app
    from ark_runtime.config import RedisSettings

    front = create_app(RedisSettings(port=1), secret="s" * 40, operators={},
                       allowed_hosts=frozenset({"127.0.0.1"}))
    return front.app.openapi()


@pytest.mark.requirement("TEST_03")
def test_every_mix_route_is_in_the_openapi_document_and_every_signed_in_read_is_in_the_mix(
        openapi):
    mix.check(openapi)
    assert mix.unweighted(openapi) == [], "a signed-in GET route is neither in MIX nor EXCLUDED"
    reqs = mix.requests(openapi, mix.Session(COOKIE, CSRF, cursor="hrm:10,kyle:20"))
    assert {r.route for r in reqs} <= set(openapi["paths"])
    assert all("{" not in r.path for r in reqs)
    follow = next(r for r in reqs if r.name == "logs follow")
    assert follow.path == "/api/logs?cursor=hrm%3A10%2Ckyle%3A20"


@pytest.mark.requirement("TEST_03")
@pytest.mark.parametrize("entry", mix.MIX, ids=lambda e: e.name)
def test_a_mix_route_gone_from_the_document_fails_by_name(openapi, entry):
    doc = copy.deepcopy(openapi)
    del doc["paths"][entry.path]["get"]
    with pytest.raises(OpsError, match=f"GET {re.escape(entry.path)} .* is not in the API"):
        mix.check(doc)


def test_a_query_parameter_gone_or_a_value_refused_by_the_schema_fails(openapi):
    doc = copy.deepcopy(openapi)
    op = doc["paths"]["/api/logs"]["get"]
    op["parameters"] = [p for p in op["parameters"] if p["name"] != "level"]
    with pytest.raises(OpsError, match="no query parameter 'level'"):
        mix.check(doc)
    bad = (mix.Entry("too many", "GET", "/api/logs", 1, (("lines", "100000"),)),
           mix.Entry("no agent", "GET", "/api/logs", 1, (("agent", "nobody"),)),
           mix.Entry("bad level", "GET", "/api/logs", 1, (("level", "loud"),)))
    for entry in bad:
        with pytest.raises(OpsError, match="refused by the document's schema"):
            mix.check(openapi, [entry])
    with pytest.raises(OpsError, match="path parameters"):
        mix.check(openapi, [mix.Entry("no id", "GET", "/api/trace/{ident}", 1)])


token = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7e), min_size=1, max_size=40)
name = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7e), min_size=1,
               max_size=30).filter(lambda s: s.strip() == s)


@settings(max_examples=200, deadline=None)
@given(cookie=token, csrf=token,
       reqs=st.lists(st.builds(mix.Request, name, st.integers(1, 1000), token.map("/".__add__)),
                     min_size=1, max_size=8))
def test_the_mix_file_round_trips(cookie, csrf, reqs):
    head, back = mix.parse_mix_file(mix.render_mix_file(mix.Session(cookie, csrf), reqs))
    assert head == {"cookie": cookie, "csrf": csrf}
    assert [(r.name, r.weight, r.path) for r in back] == [(r.name, r.weight, r.path)
                                                          for r in reqs]


@pytest.mark.parametrize("cookie", ["a b", "a\nrequest 1 /x evil", ""])
def test_a_session_value_that_is_not_one_token_is_refused_without_echoing_it(cookie):
    with pytest.raises(OpsError) as err:
        mix.render_mix_file(mix.Session(cookie, CSRF), [mix.Request("r", 1, "/r")])
    assert cookie.strip() == "" or cookie not in str(err.value)


counts = st.integers(0, 10**9)


@settings(max_examples=200, deadline=None)
@given(duration=st.integers(1, 10**9), requests=counts, errors=st.lists(counts, min_size=5,
       max_size=5), pct=st.lists(st.integers(0, 10**8), min_size=4, max_size=4),
       sent=st.dictionaries(name, counts, max_size=6), noise=st.lists(st.text(max_size=40)))
def test_parse_wrk_reads_the_summary_line_among_any_other_output(duration, requests, errors,
                                                                   pct, sent, noise):
    kinds = ("connect", "read", "write", "status", "timeout")
    raw = {"duration_us": duration, "requests": requests, "bytes": 7,
           "errors": dict(zip(kinds, errors, strict=True)),
           "latency_us": {"min": 0, "mean": 1.5, "max": max(pct), "stdev": 0.1,
                          "percentiles": dict(zip(("50", "90", "99", "99.9"), sorted(pct),
                                                  strict=True))},
           "sent": sent}
    noise = [n for n in noise if not n.startswith(wrk.MARK)]
    out = wrk.parse_wrk("\n".join([*noise, wrk.MARK + json.dumps(raw), *noise]))
    assert out["requests"] == requests and out["errors"] == sum(errors)
    assert out["rps"] == round(requests / (duration / 1e6), 1)
    assert out["p99_ms"] == sorted(pct)[2] / 1000 and out["sent"] == sent


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=200))
def test_parse_wrk_refuses_anything_else_with_an_ops_error(text):
    for candidate in (text, wrk.MARK + text):
        try:
            wrk.parse_wrk(candidate)
        except OpsError:
            continue
        # only a well-formed summary may parse
        assert candidate.startswith(wrk.MARK)
        json.loads(candidate[len(wrk.MARK):])


def test_credentials_come_from_the_environment_only():
    assert wrk.credentials({"ARK_LOAD_USER": "u", "ARK_LOAD_PASSWORD": PASSWORD}) == \
        ("u", PASSWORD)
    with pytest.raises(OpsError, match="ARK_LOAD_PASSWORD in the environment"):
        wrk.credentials({"ARK_LOAD_USER": "u"})


# --- against a real wrk and a real (small) HTTP server --------------------------------------

class Recorder(BaseHTTPRequestHandler):
    """Answers every GET 200 and records path and headers; POST /login answers 401 with
    what it was sent (an API that echoes must not get the password into our errors)."""

    seen: list[tuple[str, str | None, str | None]] = []
    processes: list[dict] = []

    def log_message(self, *a) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802
        if not Recorder.processes:
            Recorder.processes.append(_wrk_process())
        Recorder.seen.append((self.path, self.headers.get("Cookie"),
                              self.headers.get("X-CSRF-Token")))
        body = b"{}"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:  # noqa: N802
        sent = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(401)
        self.send_header("Content-Length", str(len(sent)))
        self.end_headers()
        self.wfile.write(sent)


def _wrk_process() -> dict:
    """wrk as the OS sees it: its argv, its environment, its mix file's mode."""
    for child in psutil.Process().children(recursive=True):
        if child.name() == "wrk":
            env = child.environ()
            path = Path(env["ARK_WRK_MIX"])
            return {"cmdline": child.cmdline(), "environ": env,
                    "mode": stat.S_IMODE(path.stat().st_mode),
                    "dir_mode": stat.S_IMODE(path.parent.stat().st_mode)}
    return {}


@pytest.fixture
def recorder():
    Recorder.seen, Recorder.processes = [], []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.requirement("TEST_03")
@pytest.mark.skipif(not shutil.which("wrk"), reason="needs wrk (apt-get install wrk)")
def test_wrk_sends_the_weighted_mix_with_the_session_and_no_secret_on_its_command_line(
        recorder, openapi, monkeypatch, tmp_path):
    monkeypatch.setenv("ARK_LOAD_PASSWORD", PASSWORD)
    session = mix.Session(COOKIE, CSRF, cursor="hrm:1")
    result = wrk.measure(recorder, session, openapi, seconds=1, connections=4, threads=2,
                         api_pid=os.getpid(), workdir=tmp_path)
    assert result["requests"] > 50 and result["errors"] == 0
    paths = [p for p, _, _ in Recorder.seen]
    assert all(c == COOKIE and t == CSRF for _, c, t in Recorder.seen)
    # every route of the mix was sent, in proportion to its weight
    reqs = mix.requests(openapi, session)
    total = sum(r.weight for r in reqs)
    for r in reqs:
        share = paths.count(r.path) / len(paths)
        assert abs(share - r.weight / total) < 0.05 + r.weight / total / 2, r.name
    assert sum(result["sent"].values()) >= len(paths) - 8  # in flight when wrk stopped
    assert set(result["sent"]) == {r.name for r in reqs}
    assert result["generator"]["cpu_s"] >= 0 and result["api"]["pid"] == os.getpid()
    # the secrets: not in wrk's argv, the password not even in its environment, the
    # session only in a 0600 file in a 0700 directory, removed afterwards
    seen = Recorder.processes[0]
    argv = " ".join(seen["cmdline"])
    for secret in (PASSWORD, COOKIE, CSRF, COOKIE.split("=", 1)[1]):
        assert secret not in argv
    assert "ARK_LOAD_PASSWORD" not in seen["environ"]
    assert PASSWORD not in json.dumps(seen["environ"])
    assert seen["mode"] == 0o600 and seen["dir_mode"] == 0o700
    assert not Path(seen["environ"]["ARK_WRK_MIX"]).exists()
    report = {"started": "t", "host": recorder, **result}
    text = wrk.render(report) + json.dumps(report)
    for secret in (PASSWORD, COOKIE.split("=", 1)[1], CSRF):
        assert secret not in text


@pytest.mark.skipif(not shutil.which("wrk"), reason="needs wrk (apt-get install wrk)")
def test_a_paced_run_offers_about_the_rate_asked(recorder, openapi, tmp_path):
    result = wrk.measure(recorder, mix.Session(COOKIE, CSRF), openapi, seconds=2,
                         connections=4, rate=200, workdir=tmp_path)
    assert result["offered_rps"] == 200 and 120 <= result["rps"] <= 220


def test_a_refused_sign_in_names_the_status_never_the_password(recorder):
    with pytest.raises(OpsError) as err:
        wrk.sign_in(recorder, "operator", PASSWORD)
    assert "401" in str(err.value) and PASSWORD not in str(err.value)


def test_the_mix_file_is_private_from_its_first_byte(tmp_path):
    path = mix.write_private(tmp_path / "d", "mix", "cookie x\n")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def test_more_chatter_listeners_than_the_api_allows_one_operator_are_refused(openapi):
    from ark_runtime.api.chatter import PER_OPERATOR

    with pytest.raises(OpsError, match=f"--chatter: 0 to {PER_OPERATOR}"):
        wrk.measure("http://127.0.0.1:1", mix.Session(COOKIE, CSRF), openapi, seconds=1,
                    connections=1, chatter=PER_OPERATOR + 1)


def test_a_session_never_shows_its_secrets_in_its_repr():
    text = repr(mix.Session(COOKIE, CSRF, cursor="hrm:1"))
    assert COOKIE not in text and CSRF not in text and "hrm:1" in text
