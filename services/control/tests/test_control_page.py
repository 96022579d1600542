"""The alert page in a real Chromium (Debian's, driven by Playwright): live alerts without reload, train button."""

from __future__ import annotations

import asyncio
import shutil
from concurrent.futures import ThreadPoolExecutor

import pytest
from control_helpers import REPO, TOKEN

from polyp_control.alerts import Alert, RedisBus

pytestmark = [pytest.mark.browser]


def chromium_path() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    pytest.fail("no Chromium installed: `make test` installs Debian's chromium")


# Generous waits: each is a ceiling on a loaded 2-core machine, not a speed target (expect returns as soon as it holds).
WAIT_MS = 60_000


def test_page_shows_alerts_live_and_triggers_training(control_server, redis_url):
    from playwright.sync_api import expect, sync_playwright

    server = control_server(REDIS_URL=redis_url, STATIC_DIR=str(REPO / "services" / "frontend" / "static"),
                            WATCH_INTERVAL_S="3600")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium_path(), args=["--no-sandbox"])
        page = browser.new_page()
        errors = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.goto(f"{server.url}/ui/#token={TOKEN}")
        expect(page.locator("#connection")).to_have_text("live", timeout=WAIT_MS)
        assert "token" not in page.url  # taken from the link, not left in the address bar

        async def publish():
            bus = RedisBus(redis_url)
            await bus.publish(Alert(type="model_quality_low", severity="critical", message="Dice 0.41 below 0.70"))
            await bus.close()

        with ThreadPoolExecutor(1) as thread:  # Playwright's sync API owns this thread's event loop
            thread.submit(asyncio.run, publish()).result()
        alert = page.locator("#alerts li", has_text="Dice 0.41 below 0.70")
        expect(alert).to_be_visible(timeout=WAIT_MS)
        expect(alert).to_have_class("critical")

        page.fill("#epochs", "2")
        page.click("#trigger")
        expect(page.locator("#trigger-result")).to_contain_text("submitted", timeout=WAIT_MS)
        expect(page.locator("#runs li")).to_have_count(1, timeout=WAIT_MS)
        # Ray is unreachable in this test: the run fails and that alert arrives live too.
        expect(page.locator("#alerts li", has_text="training_failed")).to_be_visible(timeout=WAIT_MS)
        expect(page.locator("#model")).to_contain_text("no model registered yet", timeout=WAIT_MS)
        browser.close()
    assert errors == []
