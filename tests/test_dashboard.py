"""The dashboard in a real browser: Debian's chromium driven by Playwright (issue 11).

Skipped, saying why, where chromium or Playwright is not installed (`make test`
installs Playwright; `.ci/run` installs chromium when it runs as root).
"""

from __future__ import annotations

import shutil

import pytest

from tests.support import ServerProcess

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed (pip install playwright)")
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (apt-get install chromium)"),
]
TOKEN = "dash-token"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    env = {"SHARQ_AUTH_TOKENS": TOKEN, "SHARQ_JOB_EXPIRE_INTERVAL": "60000"}
    server = ServerProcess(str(tmp_path_factory.mktemp("dashboard") / "data"), workers=1, env=env).start()
    yield server
    server.stop()


def call(server: ServerProcess, method: str, path: str, body: object = None):
    return server.call(method, path, body, headers={"Authorization": f"Bearer {TOKEN}"})


@pytest.fixture
def page(server: ServerProcess, tmp_path):
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 1000})
        page.console_errors = []
        page.on("console", lambda message: message.type == "error" and page.console_errors.append(message.text))
        page.on("pageerror", lambda error: page.console_errors.append(str(error)))
        page.goto(server.url + "/dashboard/")
        page.fill("#token", TOKEN)  # auth is on: the page asks first, and sends it as a bearer header
        page.click("#token-form button")
        yield page
        page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)
        browser.close()


def test_counts_dead_letters_and_pause_by_clicking(server: ServerProcess, page, tmp_path) -> None:
    for n in range(3):
        assert (
            call(
                server,
                "POST",
                f"/enqueue/sms/acme/a{n}/".replace(f"/a{n}/", "/"),
                {"job_id": f"a{n}", "payload": n, "interval": 0},
            )[0]
            == 201
        )
    call(server, "POST", "/enqueue/sms/globex/", {"job_id": "g0", "payload": "x", "interval": 0})
    job = call(server, "GET", "/dequeue/sms/")[1]
    call(server, "POST", f"/fail/sms/{job['queue_id']}/{job['job_id']}/", {"dead": True, "error": "bad number"})

    row = page.locator('#types tr[data-type="sms"]')
    row.wait_for()
    assert row.locator("td").nth(1).inner_text() == "3"  # queued
    assert row.locator("td").nth(4).inner_text() == "1"  # dead
    row.locator("button").click()

    dead = page.locator(f'#dead tr[data-job="{job["job_id"]}"]')
    dead.wait_for()
    assert "bad number" in dead.inner_text()
    dead.locator("button", has_text="Retry").click()
    dead.wait_for(state="detached")
    assert call(server, "GET", f"/job/sms/{job['queue_id']}/{job['job_id']}/")[1]["state"] == "queued"

    globex = page.locator('#queues tr[data-queue="globex"]')
    globex.locator("button", has_text="Pause").click()
    globex.locator("button", has_text="Resume").wait_for()
    taken = [call(server, "GET", "/dequeue/sms/") for _ in range(5)]
    assert all(body.get("queue_id") != "globex" for status, body in taken)
    assert page.console_errors == []
    page.screenshot(path=str(tmp_path / "dashboard-sms.png"), full_page=True)
