"""Who may read or revoke a task through the status views: the owner rule and the authorizer."""

from __future__ import annotations

import sys
import types
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask, abort, request

from flask_jobs import AsyncResult, GroupResult, Jobs, chain, group
from tests.apps import basic


def header_user() -> str | None:
    """The current user: the ``X-User`` header (a stand-in for a login system)."""
    return request.headers.get("X-User")


@pytest.fixture
def owned_app(app: Flask) -> Flask:
    app.config["JOBS_CURRENT_OWNER"] = header_user
    return app


def get(app: Flask, url: str, user: str | None = None, method: str = "get") -> Any:
    headers = {"X-User": user} if user else {}
    return getattr(app.test_client(), method)(url, headers=headers)


# -- the owner rule ------------------------------------------------------------------------------


def test_owner_can_read_others_cannot(owned_app: Flask) -> None:
    r = basic.add.apply_async((1, 2), owner="alice")
    assert get(owned_app, f"/jobs/status/{r.id}", "alice").status_code == 200
    for user in ("bob", None):
        resp = get(owned_app, f"/jobs/status/{r.id}", user)
        assert resp.status_code == 403
        assert resp.headers["Cache-Control"] == "no-store"
        body = resp.get_json()
        assert body["http_status"] == 403 and body["error"]["type"] == "Forbidden"
        assert "state" not in body and "result" not in body


def test_owner_rule_covers_a_chain_before_it_gets_to_its_last_task(owned_app: Flask) -> None:
    # A chain's status URL is its last task's, which is sent only when the chain gets there
    r = chain(basic.add.s(1, 2), basic.add.s(3)).apply_async(owner="alice")
    assert get(owned_app, f"/jobs/status/{r.id}", "alice").get_json()["state"] == "PENDING"
    assert get(owned_app, f"/jobs/status/{r.id}", "bob").status_code == 403


def test_owner_rule_covers_events_and_revoke(owned_app: Flask) -> None:
    r = basic.add.apply_async((1, 2), owner="alice")
    assert get(owned_app, f"/jobs/events/{r.id}", "bob").status_code == 403
    assert get(owned_app, f"/jobs/revoke/{r.id}", "bob", "post").status_code == 403
    assert r.state == "PENDING"
    resp = get(owned_app, f"/jobs/revoke/{r.id}", "alice", "post")
    assert resp.status_code == 200 and resp.get_json()["state"] == "REVOKED"


def test_owner_ids_compare_as_text(owned_app: Flask) -> None:
    owned_app.config["JOBS_CURRENT_OWNER"] = lambda: 42
    r = basic.add.apply_async((1, 2), owner=42)
    assert get(owned_app, f"/jobs/status/{r.id}").status_code == 200


def test_tasks_without_owner_are_readable_by_anyone(owned_app: Flask) -> None:
    r = basic.add.delay(1, 2)
    assert get(owned_app, f"/jobs/status/{r.id}").status_code == 200
    assert get(owned_app, f"/jobs/status/{r.id}", "bob").status_code == 200


def test_owner_is_not_checked_without_a_current_owner_hook(app: Flask) -> None:
    r = basic.add.apply_async((1, 2), owner="alice")
    assert get(app, f"/jobs/status/{r.id}", "bob").status_code == 200


def test_unknown_stays_404_with_owner_rule(owned_app: Flask) -> None:
    assert get(owned_app, f"/jobs/status/{uuid.uuid4()}", "bob").status_code == 404


def test_group_owner_rule(owned_app: Flask) -> None:
    g = group(basic.add.s(1, 1), basic.add.s(2, 2)).apply_async(owner="alice")
    assert get(owned_app, f"/jobs/status/{g.id}", "alice").status_code == 200
    assert get(owned_app, f"/jobs/status/{g.id}", "bob").status_code == 403
    assert get(owned_app, f"/jobs/revoke/{g.id}", "bob", "post").status_code == 403


# -- the authorizer --------------------------------------------------------------------------------


def test_authorizer_from_config_sees_action_and_result(app: Flask) -> None:
    seen: list[tuple[str, Any]] = []

    def authorizer(action: str, result: Any) -> bool:
        seen.append((action, result))
        return action == "read"

    app.config["JOBS_STATUS_AUTHORIZER"] = authorizer
    r = basic.add.apply_async((1, 2), owner="carol")
    assert get(app, f"/jobs/status/{r.id}").status_code == 200
    assert get(app, f"/jobs/events/{r.id}", method="get").status_code == 200
    resp = get(app, f"/jobs/revoke/{r.id}", method="post")
    assert resp.status_code == 403
    assert r.state == "PENDING"
    assert [a for a, _ in seen] == ["read", "read", "revoke"]
    result = seen[0][1]
    assert isinstance(result, AsyncResult)
    assert result.id == r.id and result.owner == "carol" and result.state == "PENDING"


def test_authorizer_is_not_called_for_unknown_ids(app: Flask) -> None:
    calls = []
    app.config["JOBS_STATUS_AUTHORIZER"] = lambda action, result: calls.append(action)
    assert get(app, f"/jobs/status/{uuid.uuid4()}").status_code == 404
    assert calls == []


def test_authorizer_for_a_group_gets_the_group_result(app: Flask) -> None:
    seen = []
    app.config["JOBS_STATUS_AUTHORIZER"] = lambda action, result: seen.append(result) or True
    g = group(basic.add.s(1, 1), basic.add.s(2, 2)).apply_async(owner="dan")
    assert get(app, f"/jobs/status/{g.id}").status_code == 200
    (result,) = seen
    assert isinstance(result, GroupResult)
    assert result.id == g.id and [r.id for r in result.results] == [r.id for r in g.results]
    assert result.owner == "dan"


def test_authorizer_can_answer_404_itself(app: Flask) -> None:
    def hide(action: str, result: Any) -> bool:
        abort(404)

    app.config["JOBS_STATUS_AUTHORIZER"] = hide
    r = basic.add.delay(1, 2)
    resp = get(app, f"/jobs/status/{r.id}")
    assert resp.status_code == 404 and resp.get_json()["http_status"] == 404


@pytest.fixture
def hooks_module() -> Iterator[types.ModuleType]:
    module = types.ModuleType("web_auth_hooks")
    module.allow_nothing = lambda action, result: False  # type: ignore[attr-defined]
    module.user = lambda: "erin"  # type: ignore[attr-defined]
    sys.modules["web_auth_hooks"] = module
    yield module
    del sys.modules["web_auth_hooks"]


def test_hooks_as_import_strings(app: Flask, hooks_module: types.ModuleType) -> None:
    app.config["JOBS_CURRENT_OWNER"] = "web_auth_hooks:user"
    r = basic.add.apply_async((1, 2), owner="erin")
    other = basic.add.apply_async((1, 2), owner="frank")
    assert get(app, f"/jobs/status/{r.id}").status_code == 200
    assert get(app, f"/jobs/status/{other.id}").status_code == 403
    app.config["JOBS_STATUS_AUTHORIZER"] = "web_auth_hooks.allow_nothing"
    assert get(app, f"/jobs/status/{r.id}").status_code == 403


def test_both_rules_must_allow(owned_app: Flask) -> None:
    owned_app.config["JOBS_STATUS_AUTHORIZER"] = lambda action, result: True
    r = basic.add.apply_async((1, 2), owner="alice")
    # An authorizer that allows everything does not lift the owner binding.
    assert get(owned_app, f"/jobs/status/{r.id}", "bob").status_code == 403
    assert get(owned_app, f"/jobs/status/{r.id}", "alice").status_code == 200


# -- the decorators on Jobs ----------------------------------------------------------------------


@pytest.fixture
def own_jobs(jobs_redis_url: str, jobs_redis: Any) -> Iterator[tuple[Jobs, Flask, Any]]:
    jobs = Jobs()

    @jobs.task
    def work(x: int) -> int:
        return x

    app = Flask(__name__)
    app.config["JOBS_BROKER_URL"] = jobs_redis_url
    jobs.init_app(app)
    with app.app_context():
        yield jobs, app, work


def test_decorators_register_the_hooks(own_jobs: tuple[Jobs, Flask, Any]) -> None:
    jobs, app, work = own_jobs

    @jobs.current_owner
    def me() -> str | None:
        return header_user()

    @jobs.status_authorizer
    def no_revoke(action: str, result: Any) -> bool:
        return action != "revoke"

    assert me.__name__ == "me" and no_revoke("read", None)  # the decorators return the function
    r = work.apply_async((1,), owner="alice")
    assert get(app, f"/jobs/status/{r.id}", "alice").status_code == 200
    assert get(app, f"/jobs/status/{r.id}", "bob").status_code == 403
    assert get(app, f"/jobs/revoke/{r.id}", "alice", "post").status_code == 403

    # Configuration wins over the decorators (per app).
    app.config["JOBS_STATUS_AUTHORIZER"] = lambda action, result: True
    app.config["JOBS_CURRENT_OWNER"] = lambda: "alice"
    assert get(app, f"/jobs/revoke/{r.id}", "bob", "post").status_code == 200


def test_bad_hook_configuration_is_an_error(app: Flask) -> None:
    app.config["JOBS_STATUS_AUTHORIZER"] = 42
    r = basic.add.delay(1, 2)
    app.testing = True
    with pytest.raises(TypeError, match="JOBS_STATUS_AUTHORIZER"):
        app.test_client().get(f"/jobs/status/{r.id}")
