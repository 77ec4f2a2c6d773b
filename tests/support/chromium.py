"""Debian's chromium, headless, driven by Playwright (its own browser download cannot work
here). One place for the flags, so every browser test runs the same browser the same way."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tests.support.tools import needs_tool

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
REPO = Path(__file__).resolve().parents[2]
SHOTS = REPO / "reports" / "ui"

needs_chromium = needs_tool(str(CHROMIUM), "chromium")


def spki_pin(cert: Path) -> str:
    """base64(sha256(SubjectPublicKeyInfo)), as chromium's SPKI allow-list takes it."""
    key = x509.load_pem_x509_certificate(cert.read_bytes()).public_key()
    der = key.public_bytes(serialization.Encoding.DER,
                           serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(hashlib.sha256(der).digest()).decode()


@contextmanager
def launched(trust: Iterable[Path] = ()) -> Iterator[object]:
    """A headless chromium browser, closed on the way out. `trust`: server certificates it
    accepts by their exact key (the lab's own CA is in no system store), and only those."""
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    pins = [spki_pin(c) for c in trust]
    args = ARGS + ([f"--ignore-certificate-errors-spki-list={','.join(pins)}"] if pins else [])
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=args, headless=True)
        try:
            yield browser
        finally:
            browser.close()


def new_page(browser):
    """A page whose context bypasses CSP: the console forbids eval, and Playwright's
    wait_for_function predicates need it. The CSP header itself is tested in
    tests/integration/test_api_console.py."""
    return browser.new_context(bypass_csp=True).new_page()


def wrong_password_until_limited(page, user: str, attempts: int) -> str:
    """Sign in with a wrong password until the console's rate limit answers (or `attempts`
    run out); every refusal before it must be the plain wrong-password message. Returns the
    last message shown."""
    message = ""
    for _ in range(attempts):
        page.fill("#username", user)
        page.fill("#password", "wrong")
        page.click("#login-submit")
        page.wait_for_function("document.getElementById('login-error').textContent !== ''")
        message = page.text_content("#login-error")
        if "too many" in message:
            break
        assert "wrong operator name or password" in message
        page.evaluate("document.getElementById('login-error').textContent = ''")
    return message
