"""The ``jobs`` blueprint: status JSON, revoke, accepted(), errors, static files, registration."""

from __future__ import annotations

import socket
import uuid
from typing import Any

import pytest
from flask import Flask, url_for

from flask_jobs import Jobs, group
from flask_jobs.web import make_blueprint
from tests.apps import basic
from tests.conftest import wait_for


@pytest.fixture
def client(app: Flask) -> Any:
    return app.test_client()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def status(client: Any, ident: str) -> dict[str, Any]:
    r = client.get(f"/jobs/status/{ident}")
    assert r.status_code == 200, r.get_data(as_text=True)
    return r.get_json()


def count_pipelines(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """From now on, the size of every pipeline sent (one list entry per round trip)."""
    import redis

    calls: list[int] = []
    real = redis.client.Pipeline.execute

    def counting(self: Any, *a: Any, **k: Any) -> Any:
        calls.append(len(self.command_stack))
        return real(self, *a, **k)

    monkeypatch.setattr(redis.client.Pipeline, "execute", counting)
    return calls


def wait_state(client: Any, ident: str, *wanted: str, timeout: float = 10.0) -> dict[str, Any]:
    return wait_for(lambda: (s := status(client, ident))["state"] in wanted and s, timeout,
                    f"{ident} to reach {wanted}")


def set_progress(app: Flask, task_id: str, state: str, meta: Any) -> None:
    app.extensions["jobs"].broker.store_state(task_id, state, meta)


KEYS = {"id", "state", "current", "total", "percent", "status", "meta", "result", "error",
        "eta_seconds", "updated_at"}


# -- status ------------------------------------------------------------------------------------


def test_pending_task_status(client: Any) -> None:
    r = basic.add.delay(1, 2)
    resp = client.get(f"/jobs/status/{r.id}")
    assert resp.status_code == 200
    assert resp.headers["Cache-Control"] == "no-store"
    assert resp.mimetype == "application/json"
    body = resp.get_json()
    assert set(body) == KEYS
    assert body["id"] == r.id
    assert body["state"] == "PENDING"
    assert body["percent"] == 0.0
    assert body["current"] is body["total"] is body["result"] is body["error"] is None
    assert body["eta_seconds"] is None
    assert body["updated_at"].endswith("Z") and "T" in body["updated_at"]


def test_unknown_id_is_404_json(client: Any) -> None:
    resp = client.get(f"/jobs/status/{uuid.uuid4()}")
    assert resp.status_code == 404
    assert resp.headers["Cache-Control"] == "no-store"
    body = resp.get_json()
    assert body["http_status"] == 404
    assert body["error"]["type"] == "NotFound"


@pytest.mark.parametrize("bad", ["x" * 201, "a b", "a%00b", "%C3%A9t%C3%A9", "a;b", "a'b"])
def test_invalid_id_is_404_without_touching_redis(jobs_redis: Any, bad: str) -> None:
    # The broker is a closed port: any Redis access would be a 503.
    app = basic.create_app({"JOBS_BROKER_URL": f"redis://127.0.0.1:{closed_port()}/0"})
    client = app.test_client()
    for path in ("status", "events"):
        resp = client.get(f"/jobs/{path}/{bad}")
        assert resp.status_code == 404, (path, resp.get_data(as_text=True))
        assert resp.get_json()["http_status"] == 404
    assert client.post(f"/jobs/revoke/{bad}").status_code == 404


def test_longest_valid_id_is_looked_up(client: Any) -> None:
    r = basic.add.apply_async((1, 1), task_id="k" * 200)
    assert status(client, r.id)["state"] == "PENDING"
    assert client.get(f"/jobs/status/{'k' * 201}").status_code == 404


def test_progress_meta_is_lifted_with_percent_and_eta(app: Flask, client: Any,
                                                      jobs_redis: Any) -> None:
    r = basic.progress_task.delay(100)
    secs, micros = jobs_redis.time()
    now_ms = secs * 1000 + micros // 1000
    jobs_redis.hset(f"jobs:t:{r.id}", "st", now_ms - 10_000)  # started 10 s ago (Redis clock)
    set_progress(app, r.id, "PROGRESS", {"current": 25, "total": 100, "status": "working",
                                         "rows": 7})
    body = status(client, r.id)
    assert body["state"] == "PROGRESS"
    assert (body["current"], body["total"], body["status"]) == (25, 100, "working")
    assert body["percent"] == 25.0
    assert body["meta"] == {"current": 25, "total": 100, "status": "working", "rows": 7}
    # 25 done in 10 s: 75 left take about 30 s.
    assert 29.0 <= body["eta_seconds"] <= 32.0


def test_progress_without_total_has_no_percent_or_eta(app: Flask, client: Any) -> None:
    r = basic.progress_task.delay(100)
    set_progress(app, r.id, "PROGRESS", {"current": 5, "total": None})
    body = status(client, r.id)
    assert body["percent"] is None and body["eta_seconds"] is None and body["current"] == 5


def test_non_numeric_progress_is_ignored(app: Flask, client: Any) -> None:
    r = basic.progress_task.delay(100)
    set_progress(app, r.id, "PROGRESS", {"current": "5", "total": True, "status": 3})
    body = status(client, r.id)
    assert body["current"] is body["total"] is body["percent"] is body["status"] is None
    assert body["meta"] == {"current": "5", "total": True, "status": 3}


def test_custom_state_meta(app: Flask, client: Any) -> None:
    r = basic.custom_state.delay()
    set_progress(app, r.id, "CRUNCHING", {"phase": 1})
    body = status(client, r.id)
    assert body["state"] == "CRUNCHING"
    assert body["meta"] == {"phase": 1}
    assert body["percent"] is None and body["result"] is None


def test_success_with_worker(client: Any, jobs_worker: Any) -> None:
    r = basic.add.delay(2, 3)
    body = wait_state(client, r.id, "SUCCESS")
    assert body["result"] == 5
    assert body["percent"] == 100.0
    assert body["error"] is None and body["meta"] is None and body["eta_seconds"] is None


def test_celery_shaped_result_is_lifted(client: Any, jobs_worker: Any) -> None:
    r = basic.progress_task.delay(3)
    body = wait_state(client, r.id, "SUCCESS")
    assert body["result"] == {"current": 3, "total": 3, "status": "done", "result": 42}
    assert (body["current"], body["total"], body["status"]) == (3, 3, "done")


def test_failure_hides_traceback(client: Any, jobs_worker: Any) -> None:
    r = basic.fail.delay("it broke")
    body = wait_state(client, r.id, "FAILURE")
    assert body["error"] == {"type": "CustomError", "message": "it broke"}
    assert "Traceback" not in client.get(f"/jobs/status/{r.id}").get_data(as_text=True)
    assert body["result"] is None


def test_failure_exposes_traceback_when_configured(app: Flask, client: Any,
                                                   jobs_worker: Any) -> None:
    app.config["JOBS_EXPOSE_TRACEBACKS"] = True
    r = basic.fail.delay("it broke")
    body = wait_state(client, r.id, "FAILURE")
    assert body["error"]["type"] == "CustomError"
    assert "Traceback" in body["error"]["traceback"]
    assert "it broke" in body["error"]["traceback"]


def test_revoked_queued_task(client: Any) -> None:
    r = basic.add.delay(1, 1)
    r.revoke()
    body = status(client, r.id)
    assert body["state"] == "REVOKED"
    assert body["error"] == {"type": "TaskRevokedError", "message": "revoked"}


def test_broker_down_is_503(jobs_redis: Any) -> None:
    app = basic.create_app({"JOBS_BROKER_URL": f"redis://127.0.0.1:{closed_port()}/0",
                            "JOBS_BROKER_CONNECT_TIMEOUT": 0.5})
    client = app.test_client()
    ident = str(uuid.uuid4())
    for resp in (client.get(f"/jobs/status/{ident}"), client.get(f"/jobs/events/{ident}"),
                 client.post(f"/jobs/revoke/{ident}")):
        assert resp.status_code == 503
        assert resp.headers["Retry-After"] == "5"
        assert resp.headers["Cache-Control"] == "no-store"
        body = resp.get_json()
        assert body["error"]["type"] == "ServiceUnavailable"
        assert "127.0.0.1" not in resp.get_data(as_text=True)  # no broker address leaked


# -- groups ------------------------------------------------------------------------------------


def test_group_status_pending(client: Any) -> None:
    g = group(basic.add.s(1, 1), basic.add.s(2, 2)).apply_async()
    body = status(client, g.id)
    assert body["state"] == "PENDING"
    assert (body["total"], body["completed"], body["failed"], body["current"]) == (2, 0, 0, 0)
    assert body["percent"] == 0.0
    assert body["children"] == [{"id": r.id, "state": "PENDING"} for r in g.results]
    assert KEYS <= set(body)


def test_group_status_with_failing_member(client: Any, jobs_worker: Any) -> None:
    g = group(basic.add.s(1, 1), basic.fail.s("bad"), basic.add.s(2, 2)).apply_async()
    # (FAILURE as soon as one failed: test_web_workflows.py; here, once all are done)
    body = wait_for(lambda: (s := status(client, g.id))["current"] == 3 and s, 10)
    assert body["state"] == "FAILURE"
    assert (body["total"], body["completed"], body["failed"], body["revoked"]) == (3, 2, 1, 0)
    assert body["percent"] == 100.0
    assert [c["state"] for c in body["children"]] == ["SUCCESS", "FAILURE", "SUCCESS"]
    assert body["error"] == {"type": "GroupFailed", "message": "1 of 3 tasks failed"}
    assert body["status"] == "3 of 3 done, 1 failed"


def test_group_status_success_and_partial(app: Flask, client: Any, jobs_worker: Any) -> None:
    g = group(basic.add.s(i, i) for i in range(4)).apply_async()
    body = wait_state(client, g.id, "SUCCESS")
    assert body["completed"] == 4 and body["percent"] == 100.0 and body["error"] is None


def test_group_reads_members_in_one_round_trip(app: Flask, client: Any,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    g = group(basic.add.s(i, i) for i in range(50)).apply_async()
    client.get(f"/jobs/status/{g.id}")  # warm up the connection
    calls = count_pipelines(monkeypatch)
    assert status(client, g.id)["total"] == 50
    # (record, counters, the first 101 members, time), then every member's state
    assert calls == [4, 50]


def test_a_large_group_is_read_from_its_counters(app: Flask, client: Any, jobs_worker: Any,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    g = group(basic.add.s(i, i) for i in range(1000)).apply_async()
    assert g.get(timeout=30)[-1] == 1998
    calls = count_pipelines(monkeypatch)
    body = status(client, g.id)
    assert calls == [4]  # one round trip, whatever the size
    assert (body["state"], body["current"], body["total"], body["completed"]) == (
        "SUCCESS", 1000, 1000, 1000)
    assert body["percent"] == 100.0 and "children" not in body


def test_group_revoke(client: Any) -> None:
    g = group(basic.add.s(1, 1), basic.add.s(2, 2)).apply_async()
    resp = client.post(f"/jobs/revoke/{g.id}")
    assert resp.status_code == 200
    body = resp.get_json()
    assert body["state"] == "REVOKED"
    assert body["revoked"] == 2
    assert body["error"]["type"] == "TaskRevokedError"


# -- revoke ------------------------------------------------------------------------------------


def test_revoke_queued_task(client: Any) -> None:
    r = basic.add.delay(1, 1)
    resp = client.post(f"/jobs/revoke/{r.id}", headers={"Sec-Fetch-Site": "same-origin"})
    assert resp.status_code == 200
    assert resp.headers["Cache-Control"] == "no-store"
    assert resp.get_json()["state"] == "REVOKED"
    assert r.state == "REVOKED"


def test_revoke_running_task_terminates_it(client: Any, jobs_worker: Any) -> None:
    r = basic.sleep_and_record.delay(30)
    wait_state(client, r.id, "STARTED")
    resp = client.post(f"/jobs/revoke/{r.id}")
    assert resp.status_code == 200
    body = wait_state(client, r.id, "REVOKED", timeout=10)
    assert body["error"]["type"] == "TaskRevokedError"


def test_revoke_finished_task_is_a_no_op(client: Any, jobs_worker: Any) -> None:
    r = basic.add.delay(1, 1)
    wait_state(client, r.id, "SUCCESS")
    assert client.post(f"/jobs/revoke/{r.id}").get_json()["state"] == "SUCCESS"


def test_revoke_unknown_is_404(client: Any) -> None:
    resp = client.post(f"/jobs/revoke/{uuid.uuid4()}")
    assert resp.status_code == 404 and resp.get_json()["http_status"] == 404


def test_revoke_needs_post(client: Any) -> None:
    r = basic.add.delay(1, 1)
    resp = client.get(f"/jobs/revoke/{r.id}")
    assert resp.status_code == 405
    assert resp.headers["Allow"] == "POST"
    assert resp.get_json()["error"]["type"] == "MethodNotAllowed"
    assert r.state == "PENDING"
    assert client.put(f"/jobs/revoke/{r.id}").status_code == 405


@pytest.mark.parametrize("headers", [
    {"Sec-Fetch-Site": "cross-site"},
    {"Origin": "https://evil.example"},
    {"Origin": "null"},
])
def test_revoke_refuses_cross_site_requests(client: Any, headers: dict[str, str]) -> None:
    r = basic.add.delay(1, 1)
    resp = client.post(f"/jobs/revoke/{r.id}", headers=headers)
    assert resp.status_code == 403
    assert resp.get_json()["error"]["type"] == "Forbidden"
    assert r.state == "PENDING"


@pytest.mark.parametrize("headers", [
    {"Sec-Fetch-Site": "same-origin"},
    {"Sec-Fetch-Site": "same-site"},
    {"Sec-Fetch-Site": "none"},
    {"Origin": "http://localhost"},
    {},
])
def test_revoke_allows_same_site_requests(client: Any, headers: dict[str, str]) -> None:
    r = basic.add.delay(1, 1)
    assert client.post(f"/jobs/revoke/{r.id}", headers=headers).status_code == 200


# -- accepted() --------------------------------------------------------------------------------


def test_accepted_task(app: Flask) -> None:
    with app.test_request_context():
        r = basic.add.delay(1, 2)
        resp = basic.jobs.accepted(r)
    assert resp.status_code == 202
    assert resp.headers["Location"] == f"/jobs/status/{r.id}"
    assert resp.headers["Cache-Control"] == "no-store"
    assert resp.get_json() == {"id": r.id, "status_url": f"/jobs/status/{r.id}",
                               "events_url": f"/jobs/events/{r.id}"}


def test_accepted_from_a_view_then_poll(app: Flask, jobs_worker: Any) -> None:
    @app.post("/start")
    def start() -> Any:
        return basic.jobs.accepted(basic.add.delay(20, 22))

    client = app.test_client()
    resp = client.post("/start")
    assert resp.status_code == 202
    location = resp.headers["Location"]
    body = wait_for(lambda: (b := client.get(location).get_json())["state"] == "SUCCESS" and b)
    assert body["result"] == 42


def test_accepted_group(app: Flask) -> None:
    with app.test_request_context():
        g = group(basic.add.s(1, 1), basic.add.s(2, 2)).apply_async()
        resp = basic.jobs.accepted(g)
    assert resp.status_code == 202
    assert resp.headers["Location"] == f"/jobs/status/{g.id}"
    assert resp.get_json()["id"] == g.id


def test_accepted_eager_result_is_inline(app: Flask, jobs_eager: None) -> None:
    with app.test_request_context():
        r = basic.progress_task.delay(2)
        resp = basic.jobs.accepted(r)
    assert resp.status_code == 200
    assert resp.headers["Location"] == f"/jobs/status/{r.id}"
    body = resp.get_json()
    assert body["state"] == "SUCCESS" and body["percent"] == 100.0
    assert body["result"]["result"] == 42
    assert body["status_url"] == f"/jobs/status/{r.id}"
    assert KEYS <= set(body)


def test_accepted_eager_failure_and_group(app: Flask, jobs_eager: None) -> None:
    app.config["JOBS_EAGER_PROPAGATES"] = False
    with app.test_request_context():
        failed = basic.jobs.accepted(basic.fail.delay("nope")).get_json()
        g = group(basic.add.s(1, 1), basic.add.s(2, 2)).apply_async()
        grouped = basic.jobs.accepted(g)
    assert failed["state"] == "FAILURE"
    assert failed["error"] == {"type": "CustomError", "message": "nope"}
    assert "traceback" not in failed["error"]
    assert grouped.status_code == 200
    assert grouped.get_json()["state"] == "SUCCESS"
    assert grouped.get_json()["completed"] == 2


def test_accepted_refuses_an_id_that_cannot_be_a_url(app: Flask) -> None:
    with app.test_request_context():
        r = basic.add.apply_async((1, 1), task_id="has space")
        with pytest.raises(ValueError, match="status URL"):
            basic.jobs.accepted(r)
        with pytest.raises(TypeError):
            basic.jobs.accepted("not a result")  # type: ignore[arg-type]


# -- blueprint, static files, registration ------------------------------------------------------


def test_static_files_are_served(app: Flask, client: Any) -> None:
    with app.test_request_context():
        assert url_for("jobs.static", filename="flask-jobs.js") == "/jobs/static/flask-jobs.js"
    js = client.get("/jobs/static/flask-jobs.js")
    assert js.status_code == 200
    assert "javascript" in js.mimetype
    assert b"FlaskJobs" in js.data
    assert js.headers.get("Cache-Control") != "no-store"
    js.close()
    css = client.get("/jobs/static/flask-jobs.css")
    assert css.status_code == 200 and css.mimetype == "text/css"
    css.close()


def test_app_errors_are_not_hijacked(client: Any) -> None:
    for path in ("/nothing-here", "/jobs/nothing-here", "/jobs/status/"):
        resp = client.get(path)
        assert resp.status_code == 404
        assert resp.mimetype == "text/html", path


def test_url_prefix_can_change(jobs_redis_url: str, jobs_redis: Any) -> None:
    app = basic.create_app({"JOBS_BROKER_URL": jobs_redis_url, "JOBS_URL_PREFIX": "/api/tasks"})
    client = app.test_client()
    with app.app_context(), app.test_request_context():
        r = basic.add.delay(1, 1)
        resp = basic.jobs.accepted(r)
        assert url_for("jobs.static", filename="flask-jobs.js") == \
            "/api/tasks/static/flask-jobs.js"
    assert resp.headers["Location"] == f"/api/tasks/status/{r.id}"
    assert client.get(f"/api/tasks/status/{r.id}").get_json()["state"] == "PENDING"
    assert client.get(f"/jobs/status/{r.id}").status_code == 404
    static = client.get("/api/tasks/static/flask-jobs.js")
    assert static.status_code == 200
    static.close()


def test_blueprint_opt_out_and_manual_registration(jobs_redis_url: str, jobs_redis: Any) -> None:
    app = basic.create_app({"JOBS_BROKER_URL": jobs_redis_url, "JOBS_REGISTER_BLUEPRINT": False})
    assert "jobs" not in app.blueprints
    with app.app_context():
        r = basic.add.delay(1, 1)
    assert app.test_client().get(f"/jobs/status/{r.id}").status_code == 404

    app2 = Flask(__name__)
    app2.config.update(JOBS_BROKER_URL=jobs_redis_url, JOBS_REGISTER_BLUEPRINT=False)
    jobs2 = Jobs(app2)
    app2.register_blueprint(make_blueprint(jobs2), url_prefix="/tasks")
    resp = app2.test_client().get(f"/tasks/status/{r.id}")
    assert resp.status_code == 200 and resp.get_json()["state"] == "PENDING"


def test_non_finite_numbers_become_null(app: Flask, client: Any) -> None:
    r = basic.progress_task.delay(100)
    try:
        set_progress(app, r.id, "PROGRESS", {"current": float("nan"), "total": 10,
                                             "speed": [float("inf"), 1.5]})
    except Exception:
        pytest.skip("the result serializer refuses NaN, so it cannot be stored")
    resp = client.get(f"/jobs/status/{r.id}")
    text = resp.get_data(as_text=True)
    assert "NaN" not in text and "Infinity" not in text  # strict JSON for JSON.parse
    body = resp.get_json()
    assert body["current"] is None and body["percent"] is None
    assert body["meta"] == {"current": None, "total": 10, "speed": [None, 1.5]}


def test_init_app_leaves_the_view_code_for_the_first_request(tmp_path):
    # A worker process registers the blueprint through init_app but serves no request: it
    # must not load the view code (the status JSON, lookups, event streams: ~0.7 MB of RSS).
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from flask import Flask\n"
        "from flask_jobs import Jobs\n"
        "app = Flask('x')\n"
        "app.config['JOBS_BROKER_URL'] = 'redis://127.0.0.1:1/0'\n"
        "Jobs(app)\n"
        "loaded = lambda: sorted(m for m in ('flask_jobs.web.views', 'flask_jobs.sse_hub',\n"
        "                                  'flask_jobs.web.lookups') if m in sys.modules)\n"
        "print(loaded())\n"
        "print(app.test_client().get('/jobs/status/no-such-id').status_code)\n"
        "print(loaded())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.splitlines()
    assert out[0] == "[]"
    assert out[1] == "503"  # (the view ran: Redis at port 1 can't be reached)
    assert out[2] == "['flask_jobs.sse_hub', 'flask_jobs.web.lookups', 'flask_jobs.web.views']"
