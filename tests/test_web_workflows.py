"""One status URL per workflow: a chain, a chord or a group followed as a whole."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask

from flask_jobs import chain, chord, group
from flask_jobs.web.lookups import lookup
from flask_jobs.worker.main import BackgroundWorker
from tests.apps import basic
from tests.conftest import wait_for


@pytest.fixture
def client(app: Flask) -> Any:
    return app.test_client()


def status(client: Any, ident: str) -> dict[str, Any]:
    r = client.get(f"/jobs/status/{ident}")
    assert r.status_code == 200, r.get_data(as_text=True)
    return r.get_json()


def test_chord_status_counts_the_header_then_the_body(app: Flask, client: Any) -> None:
    result = chord(basic.add.s(i, i) for i in range(3))(basic.tsum.s())
    body = status(client, result.id)
    assert (body["state"], body["current"], body["total"], body["percent"]) == (
        "PENDING", 0, 4, 0.0)
    worker = BackgroundWorker(app, concurrency=2).start()
    try:
        assert result.get(timeout=10) == 6
    finally:
        worker.stop()
    body = status(client, result.id)
    assert (body["state"], body["current"], body["total"], body["percent"], body["result"]) \
        == ("SUCCESS", 4, 4, 100.0, 6)


def test_chord_status_fails_as_soon_as_a_header_task_fails(app: Flask, client: Any,
                                                           jobs_redis: Any,
                                                           jobs_worker: Any) -> None:
    result = chord([basic.raising_task.s(), basic.wait_gate.s("gate")], basic.tsum.s())()
    body = wait_for(lambda: (s := status(client, result.id))["state"] == "FAILURE" and s, 10)
    assert body["error"]["type"] == "ChordError" and body["current"] == 1
    assert not result.ready()  # (the body has not run: the header is not done)
    jobs_redis.rpush("gate", 1)
    with pytest.raises(Exception, match="Dependency"):
        result.get(timeout=10)
    assert status(client, result.id)["error"]["type"] == "ChordError"


def test_chain_status_folds_in_the_running_step(app: Flask, client: Any, jobs_redis: Any,
                                                jobs_worker: Any) -> None:
    result = chain(basic.add.si(1, 1), basic.state_then_gate.si("gate"), basic.add.si(2, 2))()
    body = wait_for(lambda: (s := status(client, result.id))["current"] == 1.3 and s, 10,
                    "the second step's progress (3 of 10)")
    assert (body["state"], body["total"], body["percent"], body["status"]) == (
        "PROGRESS", 3, 43.3, "step 2 of 3")
    assert body["meta"]["total"] == 3
    found = lookup(basic.jobs, result.id)
    assert found is not None and len(found.channels) == 2  # the task's and the chain's
    jobs_redis.rpush("gate", 1)
    assert result.get(timeout=10) == 4
    body = status(client, result.id)
    assert (body["state"], body["current"], body["total"], body["result"]) == (
        "SUCCESS", 3, 3, 4)


def test_group_status_fails_as_soon_as_a_member_fails(app: Flask, client: Any,
                                                      jobs_redis: Any,
                                                      jobs_worker: Any) -> None:
    g = group(basic.raising_task.s(), basic.wait_gate.s("gate")).apply_async()
    body = wait_for(lambda: (s := status(client, g.id))["state"] == "FAILURE" and s, 10)
    assert (body["current"], body["failed"], body["error"]["type"]) == (1, 1, "GroupFailed")
    assert [c["state"] for c in body["children"]][0] == "FAILURE"
    jobs_redis.rpush("gate", 1)
    assert g.get(timeout=10, propagate=False)[1] == "1"


def test_revoking_a_chord_by_its_url_cancels_the_header(app: Flask, client: Any) -> None:
    result = chord(basic.add.s(i, i) for i in range(3))(basic.tsum.s())
    r = client.post(f"/jobs/revoke/{result.id}")
    assert r.status_code == 200 and r.get_json()["state"] == "REVOKED"
    assert [m.state for m in result.parent] == ["REVOKED"] * 3


def test_revoking_a_chain_by_its_url_stops_it(app: Flask, client: Any, jobs_redis: Any,
                                              jobs_worker: Any) -> None:
    # (a step that runs Python code between pauses, so the threads pool can stop it)
    result = chain(basic.progress_task.si(3000, 0.01), basic.add.si(2, 2))()
    wait_for(lambda: status(client, result.id)["state"] == "PROGRESS", 10)
    r = client.post(f"/jobs/revoke/{result.id}")
    assert r.status_code == 200
    wait_for(lambda: result.parent.state == "REVOKED", 10, "the running step to be stopped")
    assert result.state == "REVOKED"


def test_an_earlier_step_of_a_chain_has_its_own_status(app: Flask, client: Any,
                                                       jobs_worker: Any) -> None:
    result = chain(basic.add.si(1, 1), basic.add.si(2, 2), basic.add.si(3, 3))()
    assert result.get(timeout=10) == 6
    body = status(client, result.parent.parent.id)
    assert (body["state"], body["result"], body["current"], body["total"]) == (
        "SUCCESS", 2, None, None)
    assert status(client, result.id)["total"] == 3


def test_a_large_group_streams_from_one_channel(app: Flask, client: Any) -> None:
    small = group(basic.add.s(i, i) for i in range(3)).apply_async()
    found = lookup(basic.jobs, small.id)
    # (a listed member's channel too: its start and progress show in ``children``)
    assert found.channels == [f"jobs:ev:{small.id}", *(f"jobs:ev:{r.id}" for r in small)]
    large = group(basic.add.s(i, i) for i in range(150)).apply_async()
    found = lookup(basic.jobs, large.id)
    assert found.channels == [f"jobs:ev:{large.id}"] and "children" not in found.body
