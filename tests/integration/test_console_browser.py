"""UI_01/UI_02/UI_03 in a real browser: Debian's chromium driven by Playwright against the
console served on loopback by this test over HTTPS, as deployed (uvicorn with a certificate
from ark_ops.pki's CA, which the browser trusts by its key only; real redis-server). Real
units are not here, so unit status comes from the injected StaticUnits. Screenshots:
reports/ui/."""

from __future__ import annotations

import json
import threading

import pytest
import uvicorn
from conftest import free_port, wait_for
from console_app import PASSWORDS, make_app

from ark_ops.pki import CertificateAuthority
from ark_runtime.bus.envelope import Envelope
from ark_runtime.bus.registry import ControlResume
from tests.support.chromium import (
    SHOTS,
    launched,
    needs_chromium,
    new_page,
    wrong_password_until_limited,
)

pytestmark = needs_chromium


@pytest.fixture(scope="module")
def served(redis_server, tmp_path_factory):
    mp = pytest.MonkeyPatch()
    root = tmp_path_factory.mktemp("ui")
    app, units = make_app(redis_server.port, redis_server.password, root, mp, login_limit=4)
    port = free_port()
    tls = tmp_path_factory.mktemp("tls")
    CertificateAuthority(tls).issue("console", ["127.0.0.1", "localhost"])
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error",
                                           loop="uvloop", http="httptools",
                                           ws="websockets-sansio", lifespan="on",
                                           timeout_graceful_shutdown=2,
                                           ssl_certfile=str(tls / "console.crt"),
                                           ssl_keyfile=str(tls / "console.key")))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for(lambda: server.started, 15, what="uvicorn to listen")
    yield {"app": app, "units": units, "root": root, "base": f"https://127.0.0.1:{port}",
           "cert": tls / "console.crt"}
    server.should_exit = True
    thread.join(10)
    mp.undo()


@pytest.fixture(scope="module")
def browser(served):
    with launched(trust=[served["cert"]]) as b:
        yield b


def signed_in(browser, served, user):
    served["app"].state.auth.throttle.reset()  # the limit is low for the 429 test
    page = new_page(browser)
    page.goto(served["base"] + "/login")
    page.fill("#username", user)
    page.fill("#password", PASSWORDS[user])
    page.click("#login-submit")
    page.wait_for_url(served["base"] + "/")
    page.wait_for_selector("#units tbody tr")
    return page


@pytest.mark.requirement("SEC_02")
def test_wrong_password_then_rate_limit(browser, served):
    served["app"].state.auth.throttle.reset()
    page = new_page(browser)
    page.goto(served["base"] + "/")
    assert page.url.endswith("/login")
    message = wrong_password_until_limited(page, "alice", attempts=5)
    assert "too many sign-in attempts" in message
    page.screenshot(path=str(SHOTS / "login-rate-limited.png"))
    served["app"].state.auth.throttle.reset()


@pytest.mark.requirement("UI_01")
def test_status_table_and_unit_control(browser, served):
    page = signed_in(browser, served, "alice")
    rows = page.eval_on_selector_all(
        "#units tbody tr", "rs => rs.map(r => [r.dataset.unit, r.children[1].textContent])")
    expected = {u["Id"]: u["ActiveState"] for u in served["units"].units.values()}
    assert dict(rows) == expected
    page.click('#units tr[data-unit="ark-agent@kyle.service"] button[data-verb="stop"]')
    page.wait_for_function(
        """() => document.querySelector('#units tr[data-unit="ark-agent@kyle.service"]')
                 .children[1].textContent === 'inactive'""")
    assert served["units"].units["ark-agent@kyle.service"]["ActiveState"] == "inactive"
    page.screenshot(path=str(SHOTS / "status-after-stop.png"), full_page=True)
    page.click('#units tr[data-unit="ark-agent@kyle.service"] button[data-verb="start"]')
    page.wait_for_function(
        """() => document.querySelector('#units tr[data-unit="ark-agent@kyle.service"]')
                 .children[1].textContent === 'active'""")


@pytest.mark.requirement("UI_01")
def test_log_viewer_follows_new_lines(browser, served):
    log = served["root"] / "log" / "joey.log"
    log.write_text(json.dumps({"ts": "2026-11-26T23:00:00", "level": "info", "agent": "joey",
                               "msg": "before the page"}) + "\n")
    page = signed_in(browser, served, "victor")
    page.wait_for_function("document.getElementById('log').textContent.includes('before')")
    with log.open("a") as f:
        f.write(json.dumps({"ts": "2026-11-26T23:00:05", "level": "error", "agent": "joey",
                            "msg": "followed line",
                            "correlation_id": "0b7c4a3e-0d5e-4e8f-9c51-3f0a3c1f6a11"}) + "\n")
    page.wait_for_function("document.getElementById('log').textContent.includes('followed')")
    page.select_option("#log-level", "error")
    page.wait_for_function("""() => { const t = document.getElementById('log').textContent;
                                      return t.includes('followed') && !t.includes('before'); }""")
    page.click("#log a")  # correlation id -> its trace
    page.wait_for_selector("#trace:not([hidden]) li")
    page.screenshot(path=str(SHOTS / "log-viewer.png"), full_page=True)


@pytest.mark.requirement("UI_02")
def test_overlay_for_admin_only_and_forged_request_refused(browser, served):
    admin = signed_in(browser, served, "alice")
    admin.keyboard.press("Control+Alt+a")
    admin.wait_for_selector("#overlay:not([hidden])")
    admin.click('#overlay button[data-action="pause"]')
    admin.wait_for_function("document.getElementById('overlay-result').textContent.includes('ok')")
    admin.screenshot(path=str(SHOTS / "admin-overlay.png"))
    admin.click('#overlay button[data-action="resume"]')
    viewer = signed_in(browser, served, "victor")
    viewer.keyboard.press("Control+Alt+a")
    assert viewer.eval_on_selector("#overlay", "o => o.hidden && o.childElementCount === 0")
    status = viewer.evaluate("""async () => {
        const csrf = document.querySelector('meta[name="csrf-token"]').content;
        const r = await fetch('/api/admin/panic', {method: 'POST', body: '{}',
            headers: {'Content-Type': 'application/json', 'X-CSRF-Token': csrf}});
        return r.status; }""")
    assert status == 403
    assert not (served["root"] / "state" / "PANIC").exists()
    viewer.screenshot(path=str(SHOTS / "viewer-no-overlay.png"))


@pytest.mark.requirement("UI_03")
def test_chatter_shows_a_message_emitted_after_the_page_opened(browser, served, redis_server):
    page = signed_in(browser, served, "victor")
    page.wait_for_function("document.body.dataset.chatter === 'open'")
    env = Envelope.new("control.resume", ControlResume(origins=["browser"], by="test"),
                       from_agent="operator", to_agent="bus")
    redis_server.client().xadd("ark:stream:errors", env.to_fields())
    page.wait_for_selector(f'#chatter li[data-message-id="{env.message_id}"]')
    page.screenshot(path=str(SHOTS / "chatter.png"), full_page=True)
