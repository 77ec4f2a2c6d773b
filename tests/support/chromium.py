"""Debian's chromium, headless, driven by Playwright (its own browser download cannot work
here). One place for the flags, so every browser test runs the same browser the same way."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]
REPO = Path(__file__).resolve().parents[2]
SHOTS = REPO / "reports" / "ui"

needs_chromium = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium")


@contextmanager
def launched() -> Iterator[object]:
    """A headless chromium browser, closed on the way out."""
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


def new_page(browser):
    """A page whose context bypasses CSP: the console forbids eval, and Playwright's
    wait_for_function predicates need it. The CSP header itself is tested in
    tests/integration/test_api_console.py."""
    return browser.new_context(bypass_csp=True).new_page()
