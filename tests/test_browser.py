"""End-to-end tests of the example app in a real headless Chromium, driven by Playwright.

The browser is Debian's ``chromium`` (``/usr/bin/chromium``); we never download one (no
``playwright install``). Without it, or without the ``playwright`` package, every test here is
skipped with a reason saying how to enable it.

The app is served by werkzeug in a thread of this process (one restart test runs it as a
process of its own); a real worker process (``flask --app example_app:create_app jobs worker -P
threads -c 4``) runs the jobs. Both use the test Redis under their own key prefix. Screenshots of
key moments go to ``artifacts/screenshots/``. Waits are Playwright's (``expect``,
``wait_for_function``) or deadline loops; no fixed sleeps.
"""

from __future__ import annotations

import os
import sys
import threading
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.conftest import LoggedProcess, wait_for

ROOT = Path(__file__).resolve().parent.parent
SHOTS = ROOT / "artifacts" / "screenshots"
CHROMIUM = "/usr/bin/chromium"
LAUNCH_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
PREFIX = "e2e"  # our keys in the test Redis, apart from the other tests'

# Fast enough for a test, slow enough that a bar visibly moves through many values.
APP_CONFIG: dict[str, Any] = {
    "JOBS_KEY_PREFIX": PREFIX,
    "JOBS_ORPHAN_TIMEOUT": 1.0,
    "IMPORT_ROW_DELAY": 0.03,  # 120 rows: about 3.6 s
    "REPORT_SECTION_DELAY": 0.3,  # 20 sections on 4 threads: about 2 s
    "INDEX_DOCUMENTS": 600,
    "INDEX_DOC_DELAY": 0.1,  # a minute: cancelled long before
}


def _why_skip() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return ("the playwright package is missing: run `pip install playwright` (it is in the "
                "test extra: pip install -e '.[test]'); no `playwright install` is needed, the "
                "tests use Debian's Chromium")
    if not os.access(CHROMIUM, os.X_OK):
        return f"no Chromium at {CHROMIUM}: run `apt-get install chromium` to enable it"
    return None


SKIP_REASON = _why_skip()


def browser_test(fn: Callable[..., Any]) -> Any:
    """Mark a test ``browser``; skip it, naming it and how to enable it, without a browser."""
    fn = pytest.mark.browser(fn)
    if SKIP_REASON:
        fn = pytest.mark.skip(reason=f"{fn.__name__}: {SKIP_REASON}")(fn)
    return fn


# Records every aria-valuenow a progress bar takes, per card: window.__fjSeen[cardId] = [...].
OBSERVER = """
window.__fjSeen = {};
new MutationObserver((records) => {
  for (const r of records) {
    const owner = r.target.closest('[id]');
    const key = owner ? owner.id : '?';
    (window.__fjSeen[key] = window.__fjSeen[key] || []).push(+r.target.getAttribute('aria-valuenow'));
  }
}).observe(document, {subtree: true, attributes: true, attributeFilter: ['aria-valuenow']});
"""


def _env(redis_url: str, upload_dir: Path, **extra: str) -> dict[str, str]:
    """The environment of a process running the example app on the test Redis."""
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "JOBS_BROKER_URL": redis_url, "JOBS_ORPHAN_TIMEOUT": "1",
            "JOBS_KEY_PREFIX": PREFIX, "FLASK_UPLOAD_FOLDER": str(upload_dir),
            "PYTHONPATH": path, "PYTHONUNBUFFERED": "1", **extra}


class Process(LoggedProcess):
    """A subprocess whose log is closed when it is stopped."""

    def stop(self, timeout: float = 15.0) -> int:
        code = super().stop(timeout)
        self.log.close()
        return code


class LiveServer:
    """The example app served by werkzeug (threaded) in a thread of this process."""

    def __init__(self, config: dict[str, Any]) -> None:
        from werkzeug.serving import make_server

        from example_app import create_app

        self.app = create_app(config)
        self.server = make_server("127.0.0.1", 0, self.app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as r:
            return r.status == 200
    except OSError:
        return False


# -- fixtures --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def upload_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("uploads")


@pytest.fixture(scope="module")
def e2e_redis(jobs_redis_url: str) -> Iterator[redis.Redis]:
    """A client of the test Redis; our prefix is cleared first (other tests flush it anyway)."""
    client = redis.Redis.from_url(jobs_redis_url)
    for key in client.scan_iter(f"{PREFIX}:*"):
        client.delete(key)
    yield client
    client.close()


@pytest.fixture(scope="module")
def e2e_worker(jobs_redis_url: str, e2e_redis: redis.Redis, upload_dir: Path,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[Process]:
    """A real worker process for the example app, on the test Redis."""
    log = tmp_path_factory.mktemp("worker") / "worker.log"
    worker = Process([sys.executable, "-m", "flask", "--app", "example_app:create_app", "jobs",
                      "worker", "-P", "threads", "-c", "4", "--shutdown-timeout", "2"],
                     _env(jobs_redis_url, upload_dir), log)
    try:
        wait_for(lambda: "ready." in worker.output() or worker.proc.poll() is not None, 30,
                 "the example app's worker to be ready")
        assert worker.proc.poll() is None, worker.output()
        yield worker
    finally:
        worker.stop()


@pytest.fixture(scope="module")
def live_server(jobs_redis_url: str, e2e_redis: redis.Redis, upload_dir: Path,
                e2e_worker: Process) -> Iterator[LiveServer]:
    server = LiveServer({**APP_CONFIG, "JOBS_BROKER_URL": jobs_redis_url,
                         "UPLOAD_FOLDER": str(upload_dir)})
    yield server
    server.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=LAUNCH_ARGS)
        yield b
        b.close()


class Page:
    """A Playwright page plus what the test wants to know about it."""

    def __init__(self, page: Any, name: str) -> None:
        self.page = page
        self.name = name
        self.requests: list[str] = []
        self.errors: list[str] = []
        page.on("request", lambda r: self.requests.append(r.url))
        page.on("pageerror", lambda e: self.errors.append(str(e)))

    def seen(self, card: str) -> list[int]:
        """Every aria-valuenow the bar in ``#card`` took, in order."""
        return self.page.evaluate("(k) => window.__fjSeen[k] || []", card)

    def shot(self, moment: str) -> Path:
        SHOTS.mkdir(parents=True, exist_ok=True)
        path = SHOTS / f"{self.name}-{moment}.png"
        self.page.screenshot(path=str(path), full_page=True, animations="disabled")
        return path

    def wait_value(self, selector: str, low: float, high: float, timeout: float = 20_000) -> None:
        """Wait until the progressbar under ``selector`` shows a value in [low, high]."""
        self.page.wait_for_function(
            """([sel, lo, hi]) => {
                 const b = document.querySelector(sel + ' [role=progressbar]');
                 const v = b && +b.getAttribute('aria-valuenow');
                 return b && v >= lo && v <= hi;
               }""", arg=[selector, low, high], timeout=timeout)

    def status_of(self, url: str) -> dict[str, Any]:
        r = self.page.request.get(url)
        assert r.ok, (r.status, r.text())
        return r.json()

    def paths(self, part: str) -> list[str]:
        return [u for u in self.requests if part in u]


def _new_page(browser: Any, base_url: str, name: str) -> tuple[Any, Page]:
    context = browser.new_context(base_url=base_url, viewport={"width": 1100, "height": 900})
    context.set_default_timeout(15_000)
    context.add_init_script(OBSERVER)
    return context, Page(context.new_page(), name)


@pytest.fixture
def page(browser: Any, live_server: LiveServer, request: pytest.FixtureRequest) -> Iterator[Page]:
    context, p = _new_page(browser, live_server.url, request.node.name.removeprefix("test_"))
    yield p
    context.close()
    assert not p.errors, f"JavaScript errors on the page: {p.errors}"


def _expect() -> Any:
    from playwright.sync_api import expect

    return expect


def _intermediate(values: list[int]) -> set[int]:
    return {v for v in values if 0 < v < 100}


def _start(p: Page, card: str, button: str, path: str) -> dict[str, Any]:
    """Click ``button`` in ``#card`` and return the JSON of the 202 it got."""
    with p.page.expect_response(lambda r: r.url.endswith(path) and r.request.method == "POST") as info:
        p.page.locator(f"#{card}").get_by_role("button", name=button).click()
    response = info.value
    assert response.status == 202, response.text()
    body = response.json()
    assert response.headers["location"].endswith(body["status_url"])
    return body


# -- tests -----------------------------------------------------------------------------------


@browser_test
def test_import_progress_over_sse(page: Page) -> None:
    """Start the import from the page: the bar moves through many values to 100 % over SSE."""
    expect = _expect()
    page.page.goto("/")
    page.shot("0-index")
    job = _start(page, "import", "Import", "/import")
    card = page.page.locator("#import")
    page.wait_value("#import", 20, 80)
    page.shot("1-running")
    expect(card.locator(".fj")).to_have_attribute("data-state", "success", timeout=30_000)
    expect(card.get_by_role("progressbar")).to_have_attribute("aria-valuenow", "100")
    expect(card.locator(".job-result")).to_contain_text(
        "Imported 120 rows from sales.csv: 2,609 units")
    expect(card.locator(".fj-percent")).to_have_text("100 %")
    page.shot("2-done")

    values = page.seen("import")
    assert len(_intermediate(values)) >= 2, values
    assert values[-1] == 100 and values == sorted(values), values
    # Fed by the event stream alone: no polling of the status URL.
    assert page.paths(job["events_url"]), page.requests
    assert not page.paths("/jobs/status/"), page.requests
    status = page.status_of(job["status_url"])
    assert status["state"] == "SUCCESS" and status["result"]["rows"] == 120


@browser_test
def test_failing_import_renders_the_error(page: Page) -> None:
    """A malformed CSV fails on its line 27; the bar turns to the failure and shows the error."""
    expect = _expect()
    page.page.goto("/")
    job = _start(page, "broken", "Import broken.csv", "/import")
    card = page.page.locator("#broken")
    expect(card.locator(".fj")).to_have_attribute("data-state", "failure", timeout=30_000)
    error = card.locator(".fj-message.fj-error")
    expect(error).to_be_visible()
    expect(error).to_contain_text("CSVImportError")
    expect(error).to_contain_text("Line 27: expected 5 fields")
    expect(card.locator(".job-result")).to_be_hidden()
    page.shot("failed")

    assert _intermediate(page.seen("broken")), page.seen("broken")  # it got 25 rows in
    status = page.status_of(job["status_url"])
    assert status["state"] == "FAILURE"
    assert status["error"]["type"] == "CSVImportError"
    assert "Line 27" in status["error"]["message"]
    assert "Traceback" not in str(status)


@browser_test
def test_cancel_a_long_job(page: Page, e2e_redis: redis.Redis) -> None:
    """Cancel while it runs: the bar says so, the status says REVOKED, the worker lets go."""
    expect = _expect()
    page.page.goto("/")
    job = _start(page, "reindex", "Rebuild the index", "/reindex")
    card = page.page.locator("#reindex")
    page.wait_value("#reindex", 3, 50)  # it runs
    cancel = card.get_by_role("button", name="Cancel")
    expect(cancel).to_be_visible()
    page.shot("1-running")
    cancel.click()
    expect(card.locator(".fj")).to_have_attribute("data-state", "revoked", timeout=15_000)
    expect(cancel).to_be_hidden()
    expect(card.locator(".fj-status")).to_have_text("Cancelled")
    page.shot("2-cancelled")

    status = page.status_of(job["status_url"])
    assert status["state"] == "REVOKED", status
    assert 0 < (status.get("current") or 0) < 600 or status.get("current") is None, status
    revoke = [u for u in page.requests if "/jobs/revoke/" in u]
    assert revoke and revoke[0].endswith(job["id"]), page.requests
    # The task was stopped, not just marked: no worker holds it any more.
    wait_for(lambda: not any(e2e_redis.hexists(k, job["id"])
                             for k in e2e_redis.scan_iter(f"{PREFIX}:w:*:active")),
             10, "the worker to let go of the revoked task")


@browser_test
def test_group_bar_counts_the_sections(page: Page) -> None:
    """A group of 20 jobs behind one status URL: the bar reaches 100 % with completed == total."""
    expect = _expect()
    page.page.goto("/")
    job = _start(page, "report", "Build the report", "/report")
    card = page.page.locator("#report")
    page.wait_value("#report", 5, 95)
    page.shot("1-running")
    expect(card.locator(".fj")).to_have_attribute("data-state", "success", timeout=30_000)
    expect(card.get_by_role("progressbar")).to_have_attribute("aria-valuenow", "100")
    expect(card.locator(".job-result")).to_have_text("Report ready: 20 of 20 sections built.")
    page.shot("2-done")

    assert _intermediate(page.seen("report")), page.seen("report")
    status = page.status_of(job["status_url"])
    assert status["state"] == "SUCCESS"
    assert status["completed"] == status["total"] == 20, status
    assert status["failed"] == 0
    assert len(status["children"]) == 20


@browser_test
def test_chord_bar_follows_the_header_then_the_body(page: Page) -> None:
    """A chord (20 sections, then one job publishing them) behind one status URL: the bar
    moves as sections are built and ends with the body's result."""
    expect = _expect()
    page.page.goto("/")
    job = _start(page, "publish", "Publish the report", "/publish")
    card = page.page.locator("#publish")
    page.wait_value("#publish", 5, 95)
    page.shot("1-running")
    expect(card.locator(".fj")).to_have_attribute("data-state", "success", timeout=30_000)
    expect(card.get_by_role("progressbar")).to_have_attribute("aria-valuenow", "100")
    expect(card.locator(".job-result")).to_have_text(
        "Published the quarterly report: 20 sections, 39 pages.")
    page.shot("2-done")

    assert _intermediate(page.seen("publish")), page.seen("publish")
    status = page.status_of(job["status_url"])
    assert (status["state"], status["current"], status["total"]) == ("SUCCESS", 21, 21)


@browser_test
def test_polling_fallback_when_events_are_blocked(page: Page) -> None:
    """With the event stream unreachable, the widget polls the status URL and still completes."""
    expect = _expect()
    page.page.route("**/jobs/events/**", lambda route: route.abort())
    page.page.goto("/")
    job = _start(page, "import", "Import", "/import")
    card = page.page.locator("#import")
    expect(card.locator(".fj")).to_have_attribute("data-state", "success", timeout=30_000)
    expect(card.locator(".job-result")).to_contain_text("Imported 120 rows from sales.csv")
    page.shot("done")

    values = page.seen("import")
    assert len(_intermediate(values)) >= 2, values
    assert values[-1] == 100, values
    assert page.paths(job["events_url"]), "the widget did not try the event stream first"
    assert len(page.paths(job["status_url"])) >= 3, page.requests


@browser_test
def test_job_page_auto_bar_and_track_without_sse(page: Page) -> None:
    """The job page's bar is a bare data-flask-jobs-status-url element (here with SSE off), and
    ``FlaskJobs.track(url, {sse: false})`` resolves with the final status."""
    expect = _expect()
    r = page.page.request.post("/import", form={"source": "sample", "sample": "sales.csv"},
                               headers={"Accept": "application/json"})
    assert r.status == 202, r.text()
    job = r.json()
    page.page.goto(f"/job/{job['id']}?sse=0")
    final = page.page.evaluate("(url) => FlaskJobs.track(url, {sse: false, pollInterval: 200})",
                               job["status_url"])
    assert final["state"] == "SUCCESS" and final["result"]["rows"] == 120, final
    bar = page.page.locator("#job-bar")
    expect(bar).to_have_attribute("data-state", "success", timeout=30_000)
    expect(page.page.locator("#job-result")).to_contain_text("Imported 120 rows")
    page.shot("done")
    assert not page.paths("/jobs/events/"), page.requests
    assert len(_intermediate(page.seen("job-bar"))) >= 1, page.seen("job-bar")


@browser_test
def test_upload_a_csv(page: Page) -> None:
    """Upload a file of your own; a refused start (no file) is shown too."""
    expect = _expect()
    page.page.goto("/")
    card = page.page.locator("#import")
    card.get_by_label("Your own file:").check()
    card.get_by_role("button", name="Import").click()
    expect(card.locator(".job-result.error")).to_have_text("Choose a CSV file to upload.")

    csv = (b"date,region,product,units,unit_price\n"
           b"2024-05-01,North,Widget,3,4.50\n2024-05-01,South,Gizmo,2,7.25\n"
           b"2024-05-02,North,Gadget,1,12.00\n2024-05-03,East,Widget,10,4.50\n"
           b"2024-05-03,West,Sprocket,4,2.10\n")
    card.locator("input[type=file]").set_input_files(
        files=[{"name": "may.csv", "mimeType": "text/csv", "buffer": csv}])
    _start(page, "import", "Import", "/import")
    expect(card.locator(".fj")).to_have_attribute("data-state", "success", timeout=30_000)
    expect(card.locator(".job-result")).to_have_text(
        "Imported 5 rows from may.csv: 20 units, $93.40 revenue. "
        "Best region: East; best-selling product: Widget.")
    page.shot("done")


@browser_test
def test_bar_survives_a_server_restart(browser: Any, jobs_redis_url: str, e2e_worker: Process,
                                       upload_dir: Path, tmp_path: Path) -> None:
    """Kill the web server mid-job and start it again: the bar reconnects and completes."""
    expect = _expect()
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    env = _env(jobs_redis_url, upload_dir, FLASK_IMPORT_ROW_DELAY="0.05")
    args = [sys.executable, "-m", "flask", "--app", "example_app:create_app", "run",
            "--port", str(port), "--no-reload", "--no-debugger"]

    def serve(n: int) -> Process:
        server = Process(args, env, tmp_path / f"server-{n}.log")
        wait_for(lambda: _answers(base + "/") or server.proc.poll() is not None, 30,
                 "the web server to answer")
        assert server.proc.poll() is None, server.output()
        return server

    server = serve(1)
    context, p = _new_page(browser, base, "server_restart")
    try:
        p.page.goto("/")
        job = _start(p, "import", "Import", "/import")
        p.wait_value("#import", 5, 40)
        server.kill()  # connections drop at once, as in a crash
        server.log.close()
        before = len(p.seen("import"))
        p.shot("1-server-down")
        server = serve(2)
        card = p.page.locator("#import")
        expect(card.locator(".fj")).to_have_attribute("data-state", "success", timeout=30_000)
        expect(card.locator(".job-result")).to_contain_text("Imported 120 rows")
        p.shot("2-done")
        assert len(p.seen("import")) > before
        assert p.status_of(job["status_url"])["state"] == "SUCCESS"
        assert not p.errors, p.errors
    finally:
        context.close()
        server.stop()


def _start_import(page: Page) -> dict[str, Any]:
    r = page.page.request.post("/import", form={"source": "sample", "sample": "sales.csv"},
                               headers={"Accept": "application/json"})
    assert r.status == 202, r.text()
    return r.json()


BARE_PAGE = """<!doctype html><title>bare</title>
<script src="/jobs/static/flask-jobs.js"></script>
<div id="bare" data-flask-jobs-status-url="{status_url}"></div>"""


@browser_test
def test_one_script_tag_is_enough_and_the_bar_speaks(page: Page) -> None:
    """A page with the script and no stylesheet (the classic recipe's) gets the bundled style;
    the bar tells screen readers its status; a hidden bar stays hidden."""
    expect = _expect()
    job = _start_import(page)
    page.page.route("**/bare-page", lambda route: route.fulfill(
        body=BARE_PAGE.format(status_url=job["status_url"]), content_type="text/html"))
    page.page.goto("/bare-page")
    expect(page.page.locator("link#flask-jobs-css")).to_have_count(1)
    bar = page.page.locator("#bare [role=progressbar]")
    page.page.wait_for_function(
        "() => getComputedStyle(document.querySelector('#bare .fj-bar')).height !== '0px'")
    expect(bar).to_have_attribute("aria-valuetext", __import__("re").compile(r"^\d+ %, .+"))
    expect(page.page.locator("#bare")).to_have_attribute("data-state", "success",
                                                          timeout=30_000)
    expect(bar).to_have_attribute("aria-valuetext", "100 %, Done")
    # A bar the page hides (e.g. to show a new error instead) disappears, though .fj is a block
    page.page.evaluate("() => { document.getElementById('bare').hidden = true; }")
    assert page.page.evaluate(
        "() => getComputedStyle(document.getElementById('bare')).display") == "none"
    # and a page that links the stylesheet itself gets no second copy
    page.page.goto(f"/job/{job['id']}")
    expect(page.page.locator("#job-bar")).to_have_attribute("data-state", "success")
    expect(page.page.locator("link#flask-jobs-css")).to_have_count(0)


@browser_test
def test_without_javascript_the_job_page_shows_the_state_and_reloads(
        browser: Any, live_server: LiveServer, page: Page) -> None:
    expect = _expect()
    job = _start_import(page)
    context = browser.new_context(base_url=live_server.url, java_script_enabled=False)
    try:
        plain = context.new_page()
        plain.goto(f"/job/{job['id']}")
        status = plain.locator("#noscript-status")
        expect(status).to_contain_text("(this page reloads every 2 seconds)")
        assert plain.locator('meta[http-equiv="refresh"]').count() == 1
        # the page reloads itself until the job is done, then stops
        expect(status).to_have_text("SUCCESS: 100 %", timeout=30_000)
        assert plain.locator('meta[http-equiv="refresh"]').count() == 0
    finally:
        context.close()
