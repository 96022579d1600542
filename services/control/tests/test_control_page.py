"""The alert page in a real Chromium (Debian's, driven by Playwright): live alerts without reload, train button,
watches (list, state, create, pause) driving alerts end to end, the model card (served vs newest), the Dice chart,
and an empty state in every panel."""

from __future__ import annotations

import asyncio
import shutil
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from control_helpers import REPO, TOKEN, call, register_version

from polyp_control import db
from polyp_control.alerts import Alert, RedisBus

pytestmark = [pytest.mark.browser]


def chromium_path() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    pytest.fail("no Chromium installed: `make test` installs Debian's chromium")


# Generous waits: each is a ceiling on a loaded 2-core machine, not a speed target (expect returns as soon as it holds).
WAIT_MS = 60_000
STATIC = str(REPO / "services" / "frontend" / "static")


class Browser:
    """Chromium on the page at `url`, signed in by the link `make up` prints; page errors are collected."""

    def __init__(self, url: str):
        self.url = url

    def __enter__(self):
        from playwright.sync_api import sync_playwright

        self._playwright = sync_playwright().start()
        self._browser = self._playwright.chromium.launch(executable_path=chromium_path(), args=["--no-sandbox"])
        self.page = self._browser.new_page()
        self.errors: list[str] = []
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))
        self.page.goto(f"{self.url}/ui/#token={TOKEN}")
        return self.page

    def __exit__(self, *exc):
        self._browser.close()
        self._playwright.stop()
        assert self.errors == [], self.errors


def test_page_shows_alerts_live_and_triggers_training(control_server, redis_url):
    from playwright.sync_api import expect, sync_playwright

    server = control_server(
        REDIS_URL=redis_url, STATIC_DIR=str(REPO / "services" / "frontend" / "static"), WATCH_INTERVAL_S="3600"
    )
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
        # Ray refuses every job in this test: the run fails and that alert arrives live too.
        expect(page.locator("#alerts li", has_text="training_failed")).to_be_visible(timeout=WAIT_MS)
        expect(page.locator("#model")).to_contain_text("no model registered yet", timeout=WAIT_MS)
        browser.close()
    assert errors == []


def test_every_panel_says_when_it_has_nothing_to_show(control_server, tmp_path):
    """A replica that does not hold the scheduler lease evaluates no watch, so nothing fires meanwhile."""
    engine = db.make_engine(f"sqlite:///{tmp_path / 'control.db'}")
    with engine.begin() as conn:
        conn.execute(db.leases.insert().values(name="scheduler", holder="another-replica", expires_at=time.time() + 3600))
    engine.dispose()
    server = control_server(STATIC_DIR=STATIC)
    from playwright.sync_api import expect

    with Browser(server.url) as page:
        expect(page.locator("#served")).to_contain_text("no version has passed the quality gate yet", timeout=WAIT_MS)
        expect(page.locator("#model")).to_contain_text("no model registered yet", timeout=WAIT_MS)
        expect(page.locator("#runs li.empty")).to_have_text("no runs yet", timeout=WAIT_MS)
        expect(page.locator("#schedules li.empty")).to_have_text("no schedules", timeout=WAIT_MS)
        expect(page.locator("#alerts li.empty")).to_have_text("no alerts yet", timeout=WAIT_MS)
        expect(page.locator("#chart-empty")).to_have_text("no versions registered yet", timeout=WAIT_MS)
        expect(page.locator("#chart .tick.y")).to_have_count(5)  # the axes stand even with no data
        # The environment's three watches always exist; not evaluated yet, they say so.
        expect(page.locator("#watches li.watch-pending")).to_have_count(3, timeout=WAIT_MS)


def test_watches_from_the_page_and_api_drive_alerts_end_to_end(control_server, redis_url):
    """API -> watch -> episode -> alert over SSE -> the page: a run_failures watch created through the API fires
    when a run fails (Ray is unreachable here), the alert arrives live carrying the watch id, and the watch's row
    turns firing. A watch created and paused from the page is what the API then reports."""
    from playwright.sync_api import expect

    server = control_server(REDIS_URL=redis_url, STATIC_DIR=STATIC, WATCH_INTERVAL_S="3600")
    watch = call(
        f"{server.url}/v1/watches",
        "POST",
        {
            "description": "training keeps failing",
            "check": {"kind": "run_failures", "count": 1, "window_hours": 1},
            "interval_s": 5,
            "severity": "critical",
        },
    )
    with Browser(server.url) as page:
        row = page.locator(f"#watches li[data-watch-id='{watch['id']}']")
        expect(row).to_contain_text("training keeps failing", timeout=WAIT_MS)
        expect(row).to_have_class("watch watch-ok", timeout=WAIT_MS)  # evaluated: no failed run yet

        page.fill("#watch-description", "served model at most two days old")
        page.select_option("#watch-kind", "freshness")
        page.fill("#watch-threshold", "48")
        page.click("#watch-create")
        expect(page.locator("#watch-result")).to_contain_text("created", timeout=WAIT_MS)
        created = page.locator("#watches li", has_text="served model at most two days old")
        expect(created).to_contain_text("at most 48 h old")
        created.locator("button.watch-toggle").click()
        expect(created).to_have_class("watch watch-paused", timeout=WAIT_MS)
        by_api = [w for w in call(f"{server.url}/v1/watches") if w["description"] == "served model at most two days old"]
        assert len(by_api) == 1 and by_api[0]["paused"] is True and by_api[0]["check"]["max_age_hours"] == 48

        page.click("#trigger")  # a run; it fails at submission
        expect(page.locator("#runs li.status-failed")).to_have_count(1, timeout=WAIT_MS)
        alert = page.locator(f"#alerts li[data-watch-id='{watch['id']}']")
        expect(alert).to_be_visible(timeout=WAIT_MS)
        expect(alert).to_have_class("critical")
        expect(row).to_have_class("watch watch-firing", timeout=WAIT_MS)
        expect(row.locator(".watch-status")).to_have_text("firing")
    assert call(f"{server.url}/v1/watches/{watch['id']}")["state"]["status"] == "firing"


def test_model_card_shows_the_served_version_beside_the_newest_and_the_chart_its_floor(control_server, tmp_path):
    from playwright.sync_api import expect

    tracking = f"sqlite:///{tmp_path / 'mlflow.db'}"
    served = register_version(tracking, 0.81, champion=True)
    newest = register_version(tracking, 0.55)  # registered after, failed the gate: not served
    server = control_server(STATIC_DIR=STATIC, MLFLOW_TRACKING_URI=tracking, DICE_FLOOR="0.7")
    with Browser(server.url) as page:
        expect(page.locator("#served")).to_contain_text(f"v{served} (champion)", timeout=WAIT_MS)
        expect(page.locator("#served")).to_contain_text("0.810")
        expect(page.locator("#model")).to_contain_text(f"v{newest}")
        expect(page.locator("#model")).to_contain_text("0.550")
        expect(page.locator("#model")).to_contain_text("no: it did not pass the quality gate")

        bar = page.locator("#chart rect.bar")
        expect(bar).to_have_count(1, timeout=WAIT_MS)  # both versions this week: their average
        expect(page.locator("#chart text.value")).to_have_text("0.68")
        expect(page.locator("#chart .tick.y")).to_have_text(["0.00", "0.25", "0.50", "0.75", "1.00"])
        expect(page.locator("#chart .floor-label")).to_have_text("floor 0.70")
        # Geometry: the bar's top and the floor line sit at their values on the y axis.
        axis = page.locator("#chart line.axis").first
        top, bottom = float(axis.get_attribute("y1")), float(axis.get_attribute("y2"))
        at = lambda value: bottom - value * (bottom - top)  # noqa: E731
        assert float(bar.get_attribute("y")) == pytest.approx(at(0.68), abs=0.5)
        assert float(page.locator("#floor-line").get_attribute("y1")) == pytest.approx(at(0.70), abs=0.5)
