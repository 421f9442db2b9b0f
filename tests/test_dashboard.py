"""The dashboard in a real browser: Debian's chromium driven by Playwright (issue 11).

Skipped, saying why, where chromium or Playwright is not installed (`make test`
installs Playwright; `.ci/run` installs chromium when it runs as root).
"""

from __future__ import annotations

import shutil
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.support import ServerProcess, wait_for

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
sync_api = pytest.importorskip("playwright.sync_api", reason="Playwright is not installed (pip install playwright)")
pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (apt-get install chromium)"),
]
TOKEN = "dash-token"  # the bare form: an admin
VIEWER, SMS_VIEWER, WORKER = "dash-viewer", "dash-sms", "dash-worker"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    tokens = f"{TOKEN}, {VIEWER}=viewer, {SMS_VIEWER}=viewer:sms, {WORKER}=worker"
    env = {"SHARQ_AUTH_TOKENS": tokens, "SHARQ_JOB_EXPIRE_INTERVAL": "60000"}
    server = ServerProcess(str(tmp_path_factory.mktemp("dashboard") / "data"), workers=1, env=env).start()
    yield server
    server.stop()


def call(server: ServerProcess, method: str, path: str, body: object = None):
    return server.call(method, path, body, headers={"Authorization": f"Bearer {TOKEN}"})


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield browser
        browser.close()


def open_dashboard(browser, server: ServerProcess, token: str):
    """A fresh page on the dashboard, the token typed into its form (auth is on:
    the page asks first, and sends the token as a bearer header)."""
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    page.console_errors = []
    page.on("console", lambda message: message.type == "error" and page.console_errors.append(message.text))
    page.on("pageerror", lambda error: page.console_errors.append(str(error)))
    page.goto(server.url + "/dashboard/")
    page.fill("#token", token)
    page.click("#token-form button")
    return page


@pytest.fixture
def page(browser, server: ServerProcess, tmp_path):
    page = open_dashboard(browser, server, TOKEN)
    yield page
    page.screenshot(path=str(tmp_path / "dashboard.png"), full_page=True)
    page.close()


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
    call(server, "PUT", "/limits/sms/", {"interval": 1, "burst": 50, "max_active": 40})
    job = call(server, "GET", "/dequeue/sms/")[1]
    call(server, "POST", f"/fail/sms/{job['queue_id']}/{job['job_id']}/", {"dead": True, "error": "bad number"})

    row = page.locator('#types tr[data-type="sms"]')
    row.wait_for()
    wait_for(lambda: field(row, "dead") == "1", what="a refresh after the dead letter")  # the page opened before
    assert field(row, "queued") == "3"
    assert field(row, "limits") == "1 ms, burst 50, 0/40 active"  # type-wide limits
    assert field(row, "shards") == "1"
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


def field(row, name: str) -> str:
    return row.locator(f'td[data-field="{name}"]').inner_text()


def enqueue(server: ServerProcess, queue_type: str, jobs: list[tuple[str, str]]) -> None:
    """(queue_id, job_id) pairs, 100 a call."""
    for start in range(0, len(jobs), 100):
        batch = [{"queue_id": q, "job_id": j, "payload": j, "interval": 0} for q, j in jobs[start : start + 100]]
        status, body = call(server, "POST", f"/enqueue/{queue_type}/", {"jobs": batch})
        assert status == 200 and all(result["status"] == "queued" for result in body["results"]), body


def open_type(page, queue_type: str) -> None:
    page.locator(f'#types tr[data-type="{queue_type}"] button').click()
    page.locator("#type-name", has_text=queue_type).wait_for()


def test_buttons_follow_the_tokens_role(server: ServerProcess, browser) -> None:
    enqueue(server, "roles", [("r1", "a"), ("r1", "a2")])
    enqueue(server, "sms", [("s1", "b")])
    job = call(server, "GET", "/dequeue/roles/")[1]
    call(server, "POST", f"/fail/roles/r1/{job['job_id']}/", {"dead": True, "error": "gone"})

    admin = open_dashboard(browser, server, TOKEN)
    open_type(admin, "roles")
    admin.locator('#dead tr[data-job="a"] button', has_text="Retry").wait_for()
    assert admin.locator('#queues tr[data-queue="r1"] button', has_text="Pause").is_visible()
    for control in ("#type-limits", "#pause-type", "#retry-all", "#delete-all"):
        assert admin.locator(control).is_visible(), control
    assert admin.inner_text("#role") == "token: admin"

    viewer = open_dashboard(browser, server, VIEWER)
    open_type(viewer, "roles")
    viewer.locator('#dead tr[data-job="a"]').wait_for()
    viewer.locator('#queues tr[data-queue="r1"]').wait_for()
    assert viewer.locator("#queues button, #dead button").count() == 0
    for control in ("#type-limits", "#pause-type", "#resume-type", "#retry-all", "#delete-all"):
        assert viewer.locator(control).is_hidden(), control
    assert viewer.locator("#overall").is_visible()

    limited = open_dashboard(browser, server, SMS_VIEWER)
    limited.locator('#types tr[data-type="sms"]').wait_for()
    assert limited.locator("#types tbody tr").count() == 1  # roles holds jobs too, but not for this token
    assert limited.locator("#overall").is_hidden()  # the all-types chart is not its to read
    assert limited.inner_text("#role") == "token: viewer for sms"
    assert limited.locator("#error").is_hidden()

    worker = open_dashboard(browser, server, WORKER)
    worker.locator("#error", has_text="role (worker) may not read").wait_for()
    for page in (admin, viewer, limited, worker):
        assert page.console_errors == []
        page.close()


def test_retry_all_retries_more_than_one_page(server: ServerProcess, browser) -> None:
    """The review's defect: "Retry all" acted on the first 1,000 dead letters only."""
    jobs = [(f"b{n % 10}", f"j{n}") for n in range(1050)]
    enqueue(server, "bulk", jobs)
    taken = []
    while len(taken) < len(jobs):
        status, body = call(server, "GET", "/dequeue/bulk/?count=100")
        assert status == 200, body
        taken += body["jobs"]
    with ThreadPoolExecutor(8) as pool:
        failed = pool.map(
            lambda job: call(server, "POST", f"/fail/bulk/{job['queue_id']}/{job['job_id']}/", {"dead": True})[0],
            taken,
        )
        assert set(failed) == {200}
    assert call(server, "GET", "/stats/bulk/")[1]["jobs"]["dead"] == 1050

    page = open_dashboard(browser, server, TOKEN)
    open_type(page, "bulk")
    page.locator("#retry-all").click()
    page.locator("#bulk", has_text="1050 done").wait_for(timeout=60_000)
    jobs_now = call(server, "GET", "/stats/bulk/")[1]["jobs"]
    assert (jobs_now["dead"], jobs_now["queued"]) == (0, 1050)
    assert page.console_errors == []
    page.close()


def test_sorting_covers_every_queue_not_one_page(server: ServerProcess, browser) -> None:
    """The longest queue sorts first even when queue id order puts it on a later page."""
    jobs = [(f"q{n:02}", f"j{n}") for n in range(25)] + [("q24", "x1"), ("q24", "x2"), ("q23", "x3")]
    enqueue(server, "sorted", jobs)
    page = open_dashboard(browser, server, VIEWER)
    open_type(page, "sorted")
    page.locator('#queues tr[data-queue="q00"]').wait_for()
    page.select_option("#sort", "queue_length")
    first = page.locator("#queues tbody tr").first
    wait_for(lambda: first.get_attribute("data-queue") == "q24", what="q24 sorted first")
    assert page.locator("#queues tbody tr").nth(1).get_attribute("data-queue") == "q23"
    assert page.inner_text("#page") == "1\u201320 of 25"
    page.click("#next")
    wait_for(lambda: page.inner_text("#page") == "21\u201325 of 25", what="the second page")
    assert page.locator("#queues tbody tr").count() == 5
    assert page.console_errors == []
    page.close()


# -- issue 24: a dashboard an operator reads at a glance ------------------------------


def dead_letter(server: ServerProcess, queue_type: str, error: str = "bad input") -> dict:
    """Takes the type's next job and dead-letters it."""
    job = call(server, "GET", f"/dequeue/{queue_type}/")[1]
    path = f"/fail/{queue_type}/{job['queue_id']}/{job['job_id']}/"
    assert call(server, "POST", path, {"dead": True, "error": error})[0] == 200
    return job


def requests_of(page) -> list:
    """Every request the page makes from now on, as (method, url)."""
    seen: list = []
    page.on("request", lambda request: seen.append((request.method, request.url)))
    return seen


def test_limits_form_refuses_three_for_burst_without_sending(server: ServerProcess, page) -> None:
    """The issue's defect: "three" for burst silently cleared it, and OK through the
    prompts turned the last enqueue's interval into an override."""
    call(server, "POST", "/enqueue/form/acme/", {"job_id": "a", "payload": 1, "interval": 250})
    seen = requests_of(page)
    open_type(page, "form")
    page.locator('#queues tr[data-queue="acme"] button', has_text="Limits…").click()
    dialog = page.locator("#limits-dialog")
    assert dialog.is_visible()
    assert page.locator('#limits-form input[name="interval"]').input_value() == ""  # 250 is the enqueue's, not its own
    page.fill('#limits-form input[name="burst"]', "three")
    dialog.locator("button", has_text="Save").click()
    assert page.inner_text('.field-error[data-for="burst"]') == "burst must be a whole number of jobs, or empty"
    assert page.get_attribute('#limits-form input[name="burst"]', "aria-invalid") == "true"
    assert dialog.is_visible()
    assert not [url for method, url in seen if method != "GET"]
    limits = call(server, "GET", "/limits/form/acme/")[1]["limits"]
    assert limits["burst"]["source"] == "default" and limits["interval"]["source"] == "last enqueue"

    page.fill('#limits-form input[name="burst"]', "3")
    dialog.locator("button", has_text="Save").click()
    page.locator("#outcome", has_text="Saved queue acme: burst 3").wait_for()
    assert dialog.is_hidden()
    assert [url for method, url in seen if method != "GET"] == [server.url + "/limits/form/acme/"]
    limits = call(server, "GET", "/limits/form/acme/")[1]["limits"]
    assert limits["burst"] == {"value": 3, "source": "override"}
    assert limits["interval"] == {"value": 250, "source": "last enqueue"}  # untouched: not made an override
    assert page.console_errors == []


def test_limits_form_shows_the_servers_refusal(server: ServerProcess, page) -> None:
    """What the server refuses stays in the form with the server's own message (a
    request rewritten on its way stands for a client and server that disagree)."""
    call(server, "POST", "/enqueue/refused/acme/", {"job_id": "a", "payload": 1, "interval": 0})
    open_type(page, "refused")
    page.route("**/limits/refused/acme/", lambda route: route.continue_(post_data='{"burst": 0}'))
    page.locator('#queues tr[data-queue="acme"] button', has_text="Limits…").click()
    page.fill('#limits-form input[name="burst"]', "2")
    page.locator("#limits-dialog button", has_text="Save").click()
    error = page.locator("#limits-error")
    error.wait_for()
    assert error.inner_text().startswith("The server refused: ") and "burst" in error.inner_text()
    assert page.locator("#limits-dialog").is_visible()
    page.click("#limits-cancel")
    assert page.locator("#limits-dialog").is_hidden()
    # Chromium logs a refused request itself; the page's own script logs nothing
    assert page.console_errors == ["Failed to load resource: the server responded with a status of 400 (BAD REQUEST)"]


def test_destructive_buttons_name_what_they_will_do(server: ServerProcess, page) -> None:
    enqueue(server, "confirm", [("c1", "a"), ("c2", "b"), ("c2", "c")])
    first, second = dead_letter(server, "confirm"), dead_letter(server, "confirm")
    assert (first["job_id"], second["job_id"]) == ("a", "b")  # one of each queue in turn
    open_type(page, "confirm")
    page.locator('#dead tr[data-job="b"]').wait_for()

    page.click("#delete-all")
    assert page.inner_text("#confirm-text") == (
        "Delete all 2 dead letters of type confirm? Their jobs and payloads are gone for good."
    )
    assert page.inner_text("#confirm-ok") == "Delete 2 dead letters"
    page.click("#confirm-cancel")
    assert page.locator("#confirm").is_hidden()
    assert call(server, "GET", "/stats/confirm/")[1]["jobs"]["dead"] == 2

    page.locator('#dead tr[data-job="a"] button', has_text="Delete").click()
    assert page.inner_text("#confirm-text") == (
        "Delete dead letter a of queue c1 (type confirm)? Its job and payload are gone for good."
    )
    page.click("#confirm-ok")
    page.locator('#dead tr[data-job="a"]').wait_for(state="detached")
    page.locator("#outcome", has_text="Deleted dead letter a").wait_for()
    assert call(server, "GET", "/stats/confirm/")[1]["jobs"]["dead"] == 1

    page.click("#pause-type")
    assert page.inner_text("#confirm-text") == (
        "Pause type confirm? No worker gets any of its jobs (1 queued now) until you resume it."
    )
    page.click("#confirm-ok")
    page.locator("#outcome", has_text="Paused type confirm until resumed").wait_for()
    page.locator("#resume-type").wait_for()
    assert call(server, "GET", "/dequeue/confirm/")[0] != 200
    page.click("#resume-type")
    page.locator("#outcome", has_text="Resumed type confirm").wait_for()
    assert page.console_errors == []


def test_health_first_warns_of_dead_letters_and_of_jobs_no_worker_takes(server: ServerProcess, browser) -> None:
    enqueue(server, "stalled", [("s1", "a"), ("s2", "b")])
    enqueue(server, "deadly", [("d1", "a")])
    dead_letter(server, "deadly")
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    page.goto(server.url + "/dashboard/?stall=1")
    page.fill("#token", TOKEN)
    page.click("#token-form button")
    warning = page.locator("#health li.warn", has_text="stalled: no worker has taken a job for")
    warning.wait_for()
    assert warning.inner_text().endswith("while 2 jobs wait")
    assert page.locator("#health li.bad", has_text="deadly: 1 dead letter").is_visible()
    assert page.locator('#types tr[data-type="deadly"] td[data-field="dead"]').get_attribute("class") == "num bad"
    stalled = page.locator('#types tr[data-type="stalled"]')
    assert field(stalled, "oldest").endswith(" s")
    warning.evaluate("item => { item.marked = true; }")
    said = warning.inner_text()
    wait_for(lambda: warning.inner_text() != said, what="the idle time to grow")
    assert warning.evaluate("item => item.marked") is True  # the same item, its words updated
    assert call(server, "GET", "/dequeue/stalled/?count=2")[0] == 200  # a worker takes them: the warning goes
    warning.wait_for(state="detached")
    page.close()


def test_pager_and_next_ready_read_right(server: ServerProcess, page) -> None:
    """No "1\u20130 of 0" for a type with no queue; "now" for a queue overdue, not a past clock time."""
    enqueue(server, "empty", [("e1", "a")])
    dead_letter(server, "empty")
    open_type(page, "empty")
    page.locator('#dead tr[data-job="a"]').wait_for()
    wait_for(lambda: page.inner_text("#page") == "no queues", what="the pager of no queue")
    assert page.locator("#prev").is_disabled() and page.locator("#next").is_disabled()
    assert page.locator("#lookup-result").is_hidden()  # no empty grey bar

    enqueue(server, "overdue", [("o1", "a")])
    open_type(page, "overdue")
    row = page.locator('#queues tr[data-queue="o1"]')
    row.wait_for()
    assert field(row, "next") == "now"
    assert page.inner_text("#page") == "1\u20131 of 1"


def test_charts_have_axes_and_one_scale(server: ServerProcess, page) -> None:
    enqueue(server, "charted", [(f"c{n}", f"j{n}") for n in range(30)])
    taken = call(server, "GET", "/dequeue/charted/?count=10")[1]["jobs"]
    finished = {"jobs": [{key: job[key] for key in ("queue_id", "job_id", "receipt")} for job in taken[:8]]}
    assert call(server, "POST", "/finish/charted/", finished)[0] == 200
    open_type(page, "charted")
    # one point (a dot) in its first minute, a line once the minute turned over
    # meanwhile: a flat one (the same backlog both minutes) has no height, which
    # Playwright counts as hidden, so the wait is for it to be drawn, not visible
    page.locator("#backlog-chart .dot, #backlog-chart polyline").first.wait_for(state="attached")
    for chart in ("#chart", "#type-chart"):
        assert page.locator(f"{chart} .axis-title").text_content() == "jobs per second"
        ticks = page.locator(f"{chart} .y-tick").all_text_contents()
        assert ticks[0] == "0" and len(ticks) >= 2, ticks
        assert page.locator(f"{chart} .x-tick").all_text_contents()[-1] == "now"
        assert page.locator(f"{chart} polyline").count() >= 4  # enqueued, handed out, finished, failed
    # one scale: this type's chart has the all-types chart's axis
    assert page.locator("#type-chart .y-tick").all_text_contents() == page.locator("#chart .y-tick").all_text_contents()
    legend = page.inner_text("#type-chart-legend")  # HTML, not SVG
    for label in ("enqueued", "handed out", "finished", "failed"):
        assert label in legend
    assert page.locator("#backlog-chart .axis-title").text_content() == "jobs queued"
    assert page.locator("#backlog-chart .y-tick").all_text_contents() == ["0", "5", "10", "15", "20"]  # 20 queued
    assert page.console_errors == []


def test_rows_update_in_place(server: ServerProcess, page) -> None:
    """A refresh changes the figures, not the rows: what the reader points at stays."""
    enqueue(server, "steady", [("k1", "a")])
    open_type(page, "steady")
    row = page.locator('#queues tr[data-queue="k1"]')
    row.wait_for()
    row.evaluate("row => { row.marked = true; }")
    page.locator('#types tr[data-type="steady"]').evaluate("row => { row.marked = true; }")
    enqueue(server, "steady", [("k1", "b")])
    wait_for(lambda: field(row, "length") == "2", what="the new length")
    assert row.evaluate("row => row.marked") is True
    assert page.locator('#types tr[data-type="steady"]').evaluate("row => row.marked") is True
    assert page.console_errors == []


def test_phone_width_cuts_nothing_off_and_every_button_clicks(server: ServerProcess, browser) -> None:
    enqueue(server, "phone", [(f"p{n}", f"j{n}") for n in range(3)])
    dead_letter(server, "phone")
    page = browser.new_page(viewport={"width": 390, "height": 844})
    errors: list = []
    page.on("console", lambda message: message.type == "error" and errors.append(message.text))
    seen = requests_of(page)
    page.goto(server.url + "/dashboard/")
    page.fill("#token", TOKEN)
    page.click("#token-form button")
    open_type(page, "phone")
    page.locator("#dead tbody tr").first.wait_for()
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    buttons = page.locator("button:visible:enabled")  # the pager at its ends is disabled on purpose
    assert buttons.count() > 10
    for n in range(buttons.count()):
        box = buttons.nth(n).bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= 390, buttons.nth(n).inner_text()
        buttons.nth(n).click(trial=True, timeout=5000)  # visible, enabled, not covered: a plain click lands
    queue = page.locator('#queues tr[data-queue="p1"]')
    queue.locator("button", has_text="Pause").click()
    queue.locator("button", has_text="Resume").wait_for()
    queue.locator("button", has_text="Limits…").click()
    page.click("#limits-cancel")
    page.locator("#delete-all").click()
    page.click("#confirm-cancel")
    assert errors == []
    assert all(url.startswith(server.url) for _, url in seen)  # nothing fetched from outside the server
    page.close()


def test_limits_form_pauses_a_queue_for_a_while(server: ServerProcess, page) -> None:
    call(server, "POST", "/enqueue/pausing/acme/", {"job_id": "a", "payload": 1, "interval": 0})
    open_type(page, "pausing")
    page.locator('#queues tr[data-queue="acme"] button', has_text="Limits…").click()
    page.check('#limits-form input[name="pause"][value="for"]')
    page.locator("#limits-dialog button", has_text="Save").click()
    assert page.inner_text('.field-error[data-for="pause_for"]') == "pause_for: how many seconds the pause lasts"
    assert call(server, "GET", "/queue/pausing/acme/")[1]["paused"] is False
    page.fill('#limits-form input[name="pause_for"]', "120")
    page.locator("#limits-dialog button", has_text="Save").click()
    page.locator("#outcome", has_text="Saved queue acme: paused for 2 min").wait_for()
    queue = call(server, "GET", "/queue/pausing/acme/")[1]
    assert queue["paused"] is True and queue["paused_until"] is not None
    row = page.locator('#queues tr[data-queue="acme"]')
    wait_for(lambda: field(row, "state").startswith("paused until "), what="the queue shown paused")
    assert page.console_errors == []


def test_campaigns_show_progress_and_cancel_after_a_confirmation(server: ServerProcess, page) -> None:
    jobs = [
        {"queue_id": f"t{n % 2}", "job_id": f"s{n}", "payload": n, "interval": 0, "campaign": "sale"} for n in range(4)
    ]
    assert call(server, "POST", "/enqueue/promo/", {"jobs": jobs})[0] == 200
    taken = call(server, "GET", "/dequeue/promo/")[1]
    call(server, "POST", f"/finish/promo/{taken['queue_id']}/{taken['job_id']}/", {"receipt": taken["receipt"]})
    page.locator('#types tr[data-type="promo"] button').click()
    row = page.locator('#campaigns tr[data-campaign="sale"]')
    row.wait_for()
    assert field(row, "counts") == "3 / 0 / 1 / 0 / 0" and field(row, "state") == "running"
    assert row.locator("progress").get_attribute("value") == "1"
    row.locator("button", has_text="Cancel").click()
    assert page.inner_text("#confirm-text").startswith("Cancel campaign sale (type promo)? Its 3 queued")
    page.click("#confirm-cancel")
    assert call(server, "GET", "/campaigns/promo/sale/")[1]["cancelled"] == 0
    row.locator("button", has_text="Cancel").click()
    page.click("#confirm-ok")
    page.locator("#outcome", has_text="Cancelled campaign sale").wait_for()
    wait_for(lambda: field(row, "state") == "done", what="the cancelled campaign shown done")
    assert call(server, "GET", "/campaigns/promo/sale/")[1]["cancelled"] == 3


def test_a_queue_held_by_its_quota_says_until_when(server: ServerProcess, page) -> None:
    call(server, "PUT", "/limits/held/h1/", {"quotas": [{"limit": 1, "window_ms": 86_400_000}]})
    enqueue(server, "held", [("h1", "a"), ("h1", "b")])
    assert call(server, "GET", "/dequeue/held/?count=2")[1]["jobs"][0]["job_id"] == "a"  # b: held for the day
    page.locator("#health li.warn", has_text="held: 1 queue held by a quota").wait_for()
    open_type(page, "held")
    row = page.locator('#queues tr[data-queue="h1"]')
    row.wait_for()
    assert field(row, "state").startswith("quota held until ")
