"""The example app (``example_app/``) through Flask's test client, with a real in-process worker
(:class:`~flask_jobs.worker.main.BackgroundWorker`) where a job must run; and ``make demo``
(``python -m example_app.demo``) as a process, started and stopped like a user does.
"""

from __future__ import annotations

import csv
import io
import os
import re
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from example_app import create_app
from example_app.tasks import DATA_DIR, REPORT_SECTIONS, jobs
from flask_jobs.worker.main import BackgroundWorker
from tests.conftest import wait_for

ROOT = Path(__file__).resolve().parent.parent
JSON = {"Accept": "application/json"}
HTML = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}
SMALL_CSV = (b"date,region,product,units,unit_price\n"
             b"2024-05-01,North,Widget,3,4.50\n2024-05-01,South,Gizmo,2,7.25\n"
             b"2024-05-02,North,Gadget,1,12.00\n2024-05-03,East,Widget,10,4.50\n"
             b"2024-05-03,West,Sprocket,4,2.10\n")


@pytest.fixture
def ex_app(jobs_redis_url: str, jobs_redis: Any, tmp_path: Path) -> Iterator[Flask]:
    """The example app on the test Redis, with fast jobs."""
    app = create_app({
        "TESTING": True,
        "JOBS_BROKER_URL": jobs_redis_url,
        "JOBS_ORPHAN_TIMEOUT": 1.0,
        "UPLOAD_FOLDER": str(tmp_path / "uploads"),
        "IMPORT_ROW_DELAY": 0.0,
        "REPORT_SECTION_DELAY": 0.0,
        "INDEX_DOCUMENTS": 600,
        "INDEX_DOC_DELAY": 0.02,
    })
    with app.app_context():
        yield app


@pytest.fixture
def web(ex_app: Flask) -> Any:
    return ex_app.test_client()


@pytest.fixture
def worker(ex_app: Flask) -> Iterator[BackgroundWorker]:
    w = BackgroundWorker(ex_app, concurrency=4).start()
    try:
        yield w
    finally:
        w.stop()


def start(web: Any, path: str, **kwargs: Any) -> dict[str, Any]:
    """POST ``path`` as the page's script does; check the 202 and return its JSON."""
    r = web.post(path, headers=JSON, **kwargs)
    assert r.status_code == 202, r.get_data(as_text=True)
    body = r.get_json()
    assert set(body) >= {"id", "status_url", "events_url"}
    assert r.headers["Location"] == body["status_url"] == f"/jobs/status/{body['id']}"
    assert body["events_url"] == f"/jobs/events/{body['id']}"
    return body


def status(web: Any, job: dict[str, Any]) -> dict[str, Any]:
    r = web.get(job["status_url"])
    assert r.status_code == 200, r.get_data(as_text=True)
    assert r.headers["Cache-Control"] == "no-store"
    return r.get_json()


def finished(web: Any, job: dict[str, Any], timeout: float = 20.0) -> dict[str, Any]:
    """The status JSON once the job reached a final state."""
    return wait_for(lambda: (s := status(web, job))["state"] in ("SUCCESS", "FAILURE", "REVOKED")
                    and s, timeout, f"job {job['id']} to finish")


def expected_totals(data: bytes) -> tuple[int, int, Decimal]:
    """Rows, units and revenue of a well-formed sales CSV, computed independently."""
    rows = list(csv.DictReader(io.StringIO(data.decode())))
    return (len(rows), sum(int(r["units"]) for r in rows),
            sum((int(r["units"]) * Decimal(r["unit_price"]) for r in rows), Decimal()))


# -- pages --------------------------------------------------------------------------------------


def test_index_page(web: Any) -> None:
    r = web.get("/")
    assert r.status_code == 200
    html = r.get_data(as_text=True)
    for action in ("/import", "/report", "/reindex"):
        assert f'action="{action}"' in html
    assert 'name="sample" value="broken.csv"' in html
    assert "data-flask-jobs-cancel" in html
    assert 'src="/jobs/static/flask-jobs.js"' in html
    assert 'href="/jobs/static/flask-jobs.css"' in html
    # The bundled widget only: no CDN, no jQuery.
    assert not re.search(r'(src|href)="(https?:)?//', html)
    assert "jquery" not in html.lower()
    assert f"{len(REPORT_SECTIONS)} sections" in html


def test_static_files(web: Any) -> None:
    widget = web.get("/jobs/static/flask-jobs.js")
    assert widget.status_code == 200 and b"FlaskJobs" in widget.data
    assert web.get("/static/app.js").status_code == 200
    sample = web.get("/static/samples/sales.csv")
    assert sample.status_code == 200
    assert sample.data == (DATA_DIR / "sales.csv").read_bytes()


def test_job_page(web: Any) -> None:
    job = start(web, "/import", data={"source": "sample", "sample": "sales.csv"})
    html = web.get(f"/job/{job['id']}").get_data(as_text=True)
    assert f'data-flask-jobs-status-url="{job["status_url"]}"' in html
    assert "<h1>CSV import</h1>" in html
    assert "data-flask-jobs-sse" not in html and "data-flask-jobs-cancel" not in html
    assert 'data-flask-jobs-sse="false"' in web.get(f"/job/{job['id']}?sse=0").get_data(True)

    reindex = start(web, "/reindex")
    assert 'data-flask-jobs-cancel="Cancel"' in web.get(f"/job/{reindex['id']}").get_data(True)
    report = start(web, "/report")
    html = web.get(f"/job/{report['id']}").get_data(as_text=True)
    assert "<h1>Quarterly report</h1>" in html
    assert f'data-flask-jobs-status-url="{report["status_url"]}"' in html


def test_job_page_unknown_id(web: Any) -> None:
    assert web.get("/job/no-such-job").status_code == 404


def test_plain_form_post_redirects_to_the_job_page(web: Any) -> None:
    """Without JavaScript the browser posts the form itself: it lands on the job's page."""
    for path, data in [("/import", {"source": "sample", "sample": "sales.csv"}),
                       ("/report", {}), ("/reindex", {})]:
        r = web.post(path, data=data, headers=HTML)
        assert r.status_code == 303, path
        assert re.fullmatch(r"/job/[0-9a-f-]{36}", r.headers["Location"])
        assert web.get(r.headers["Location"]).status_code == 200


# -- the import job -----------------------------------------------------------------------------


def test_start_import_returns_202_and_is_pending(web: Any) -> None:
    job = start(web, "/import", data={"source": "sample", "sample": "sales.csv"})
    s = status(web, job)
    assert s["state"] == "PENDING" and s["id"] == job["id"]
    assert s["percent"] == 0


def test_import_sample(web: Any, worker: BackgroundWorker) -> None:
    job = start(web, "/import", data={"source": "sample", "sample": "sales.csv"})
    s = finished(web, job)
    assert s["state"] == "SUCCESS", s
    rows, units, revenue = expected_totals((DATA_DIR / "sales.csv").read_bytes())
    result = s["result"]
    assert (result["rows"], result["units"], result["revenue"]) == (rows, units, f"{revenue:.2f}")
    assert sum(Decimal(v) for v in result["revenue_by_region"].values()) == revenue
    assert result["summary"].startswith(f"Imported {rows} rows from sales.csv: {units:,} units, "
                                        f"${revenue:,.2f} revenue.")
    assert s["percent"] == 100


def test_import_reports_progress(ex_app: Flask, web: Any, worker: BackgroundWorker) -> None:
    ex_app.config["IMPORT_ROW_DELAY"] = 0.02  # 120 rows: 2.4 s
    job = start(web, "/import", data={"source": "sample", "sample": "sales.csv"})
    s = wait_for(lambda: (s := status(web, job))["state"] == "PROGRESS"
                 and 10 <= (s["current"] or 0) < 110 and s, 20, "progress halfway")
    assert s["total"] == 120
    assert s["status"] == f"Imported row {s['current']} of 120"
    assert s["percent"] == round(s["current"] * 100 / 120, 1)
    assert s["meta"]["status"].startswith("Imported row")
    assert finished(web, job)["state"] == "SUCCESS"


def test_import_upload(ex_app: Flask, web: Any, worker: BackgroundWorker) -> None:
    job = start(web, "/import", data={"source": "upload", "file": (io.BytesIO(SMALL_CSV), "may.csv")},
                content_type="multipart/form-data")
    s = finished(web, job)
    assert s["state"] == "SUCCESS", s
    assert s["result"]["summary"] == ("Imported 5 rows from may.csv: 20 units, $93.40 revenue. "
                                      "Best region: East; best-selling product: Widget.")
    # The worker read the upload and deleted it.
    assert os.listdir(ex_app.config["UPLOAD_FOLDER"]) == []


def _form(data: dict[str, Any]) -> dict[str, Any]:
    """Form fields with fresh file objects: ``(bytes, filename)`` becomes ``(BytesIO, filename)``."""
    return {k: (io.BytesIO(v[0]), v[1]) if isinstance(v, tuple) else v for k, v in data.items()}


@pytest.mark.parametrize(("data", "message"), [
    ({"source": "upload"}, "Choose a CSV file to upload."),
    ({"source": "upload", "file": (b"", "")}, "Choose a CSV file to upload."),
    ({"source": "upload", "file": (SMALL_CSV, "sales.xlsx")}, "sales.xlsx is not a .csv file."),
    ({"source": "sample", "sample": "../../etc/passwd"},
     "There is no sample called '../../etc/passwd'."),
])
def test_import_refused(web: Any, jobs_redis: Any, data: dict[str, Any], message: str) -> None:
    r = web.post("/import", data=_form(data), headers=JSON, content_type="multipart/form-data")
    assert r.status_code == 400
    assert r.get_json() == {"error": message}
    assert not jobs_redis.keys("jobs:t:*")  # nothing was queued
    # A browser without script gets the page back, with the message.
    r = web.post("/import", data=_form(data), headers=HTML, content_type="multipart/form-data")
    assert r.status_code == 400
    html = r.get_data(as_text=True)
    assert 'role="alert"' in html and "Import sales, build reports" in html


def test_import_upload_too_large(ex_app: Flask, web: Any) -> None:
    ex_app.config["MAX_CONTENT_LENGTH"] = 1024 * 1024
    big = io.BytesIO(SMALL_CSV * (1024 * 1024 // len(SMALL_CSV) + 1))
    r = web.post("/import", data={"source": "upload", "file": (big, "big.csv")}, headers=JSON,
                 content_type="multipart/form-data")
    assert r.status_code == 413
    assert r.get_json() == {"error": "The file is too large: the limit is 1 MB."}


def test_malformed_sample_fails_with_its_line(web: Any, worker: BackgroundWorker) -> None:
    job = start(web, "/import", data={"source": "sample", "sample": "broken.csv"})
    s = finished(web, job)
    assert s["state"] == "FAILURE", s
    assert s["error"]["type"] == "CSVImportError"
    assert s["error"]["message"] == (
        "Line 27: expected 5 fields (date, region, product, units, unit_price) but found 4: "
        "'2024-04-09,East,Gadget,12.00'.")
    assert "traceback" not in s["error"] and s["result"] is None


@pytest.mark.parametrize(("content", "message"), [
    (b"", "The file is empty."),
    (b"date,region,product,units,unit_price\n\n", "The file has a header but no rows."),
    (b"date,region,units\n2024-01-01,North,3\n",
     "Line 1: the header has no product, unit_price columns; expected date, region, product, "
     "units, unit_price."),
    (b"date,region,product,units,unit_price\n2024-01-01,North,Widget,three,4.50\n",
     "Line 2: units must be a whole number and unit_price a number, not 'three' and '4.50'."),
    (b"date,region,product,units,unit_price\n2024-01-01,North,Widget,-3,4.50\n",
     "Line 2: units and unit_price cannot be negative."),
    ("date,region,product,units,unit_price\n2024-01-01,Nörth,Widget,3,4.50\n".encode("latin-1"),
     "Line 2: the file is not UTF-8 text. Save it as 'CSV UTF-8' and upload it again."),
])
def test_malformed_upload_fails_clearly(ex_app: Flask, web: Any, worker: BackgroundWorker,
                                        content: bytes, message: str) -> None:
    job = start(web, "/import", data={"source": "upload", "file": (io.BytesIO(content), "x.csv")},
                content_type="multipart/form-data")
    s = finished(web, job)
    assert s["state"] == "FAILURE", s
    assert s["error"] == {"type": "CSVImportError", "message": message}
    assert os.listdir(ex_app.config["UPLOAD_FOLDER"]) == []


# -- the report (a group) -----------------------------------------------------------------------


def test_report_group_is_pending_without_a_worker(web: Any) -> None:
    job = start(web, "/report")
    s = status(web, job)
    assert s["state"] == "PENDING"
    assert (s["completed"], s["failed"], s["total"]) == (0, 0, len(REPORT_SECTIONS))
    assert len(s["children"]) == len(REPORT_SECTIONS)
    assert jobs.GroupResult(job["id"]).results[0].id == s["children"][0]["id"]


def test_report_group_completes(web: Any, worker: BackgroundWorker) -> None:
    job = start(web, "/report")
    s = finished(web, job)
    assert s["state"] == "SUCCESS", s
    assert s["completed"] == s["total"] == len(REPORT_SECTIONS) == 20
    assert s["failed"] == 0 and s["percent"] == 100
    assert {c["state"] for c in s["children"]} == {"SUCCESS"}
    results = jobs.GroupResult(job["id"]).get(timeout=5)
    assert [r["title"] for r in results] == REPORT_SECTIONS


# -- the long job, and cancelling it ------------------------------------------------------------


def test_cancel_reindex_while_it_runs(web: Any, worker: BackgroundWorker) -> None:
    job = start(web, "/reindex")
    wait_for(lambda: (status(web, job)["current"] or 0) >= 2, 20, "the reindex to run")
    r = web.post(f"/jobs/revoke/{job['id']}")
    assert r.status_code == 200, r.get_data(as_text=True)
    s = finished(web, job)
    assert s["state"] == "REVOKED", s
    assert s["error"]["type"] == "TaskRevokedError"
    assert jobs.AsyncResult(job["id"]).get(timeout=5, propagate=False) is not None
    assert s["current"] is None or s["current"] < 600


def test_cancel_reindex_before_it_runs(web: Any) -> None:
    job = start(web, "/reindex")
    r = web.post(f"/jobs/revoke/{job['id']}")
    assert r.status_code == 200
    assert r.get_json()["state"] == "REVOKED"
    assert status(web, job)["state"] == "REVOKED"


# -- configuration ------------------------------------------------------------------------------


def test_config_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("JOBS_BROKER_URL", raising=False)
    assert create_app().config["JOBS_BROKER_URL"] == "embedded://"  # nothing started yet
    monkeypatch.setenv("JOBS_BROKER_URL", "redis://example.invalid:6390/3")
    monkeypatch.setenv("JOBS_ORPHAN_TIMEOUT", "1")
    monkeypatch.setenv("FLASK_IMPORT_ROW_DELAY", "0.01")
    monkeypatch.setenv("FLASK_UPLOAD_FOLDER", str(tmp_path))
    config = create_app().config
    assert config["JOBS_BROKER_URL"] == "redis://example.invalid:6390/3"
    assert config["JOBS_ORPHAN_TIMEOUT"] == 1
    assert config["IMPORT_ROW_DELAY"] == 0.01
    assert config["UPLOAD_FOLDER"] == str(tmp_path)
    assert create_app({"IMPORT_ROW_DELAY": 0}).config["IMPORT_ROW_DELAY"] == 0


# -- make demo ----------------------------------------------------------------------------------


def test_demo_port_in_use_is_reported(ex_app: Flask) -> None:
    from example_app.demo import bind

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(SystemExit, match=f"port {port} is in use"):
            bind(ex_app, "127.0.0.1", port)


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc to find the worker")
def test_demo_starts_serves_and_stops_cleanly(jobs_redis_url: str, jobs_redis: Any,
                                              tmp_path: Path) -> None:
    """``python -m example_app.demo``: worker + server, the URL printed; Ctrl-C stops both."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = tmp_path / "demo.log"
    env = {**os.environ, "JOBS_BROKER_URL": jobs_redis_url, "JOBS_KEY_PREFIX": "demo-test",
           "FLASK_UPLOAD_FOLDER": str(tmp_path), "FLASK_INDEX_DOC_DELAY": "0.001",
           "PYTHONPATH": str(ROOT)}
    with open(log, "w") as out:
        demo = subprocess.Popen([sys.executable, "-m", "example_app.demo", "--port", str(port)],
                                cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: "running at" in log.read_text() or demo.poll() is not None, 30,
                 "the demo to start")
        assert demo.poll() is None, log.read_text()
        assert f"flask-jobs demo running at  http://127.0.0.1:{port}/" in log.read_text()
        workers = _children(demo.pid)
        assert len(workers) == 1, workers

        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as r:
            assert r.status == 200 and b"Import sales" in r.read()
        request = urllib.request.Request(f"http://127.0.0.1:{port}/reindex", data=b"",
                                         method="POST", headers=JSON)
        with urllib.request.urlopen(request, timeout=5) as r:
            assert r.status == 202
            assert r.headers["Location"].startswith("/jobs/status/")

        demo.send_signal(signal.SIGINT)  # Ctrl-C
        assert demo.wait(30) == 0, log.read_text()
    finally:
        if demo.poll() is None:
            demo.kill()
            demo.wait()
    output = log.read_text()
    assert "demo: worker stopped (exit code 0)" in output, output
    assert not any(_alive(pid) for pid in workers), output
