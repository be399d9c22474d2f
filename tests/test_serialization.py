"""Serialization: JSON with more types, msgpack, pickle only on request, refusing content."""

from __future__ import annotations

import datetime as dt
import decimal
import json
import uuid
from pathlib import Path

import pytest

from flask_jobs.exceptions import ContentDisallowed, DeadLetteredError, EncodeError
from flask_jobs.serialization import Codecs
from flask_jobs.worker.main import BackgroundWorker
from tests.apps import basic

AWARE = dt.datetime(2024, 1, 2, 3, 4, 5, 678901, tzinfo=dt.timezone(dt.timedelta(hours=2)))
NAIVE = dt.datetime(2024, 1, 2, 3, 4, 5)
VALUES = {
    "aware": AWARE,
    "naive": NAIVE,
    "date": dt.date(2024, 2, 29),
    "time": dt.time(23, 59, 58, 1000),
    "uuid": uuid.UUID("12345678-1234-5678-1234-567812345678"),
    "decimal": decimal.Decimal("1.10"),
    "bytes": b"\x00\xffbinary",
    "nested": {"list": [1, 2.5, None, True, "ü", {"deeper": [AWARE, b"x"]}]},
    "tuple": (1, (2, 3)),
}
EXPECTED = {**VALUES, "tuple": [1, [2, 3]]}  # tuples travel as lists, as in Celery


def stored_keys(client) -> list[bytes]:
    """Every key except worker bookkeeping (a stopping worker's last heartbeat may land late)."""
    return [k for k in client.keys("*")
            if not k.startswith((b"jobs:hb:", b"jobs:workers", b"jobs:lock:", b"jobs:w:"))]


def test_json_round_trip_through_a_worker(app, jobs_worker):
    result = basic.types_roundtrip.delay(VALUES)
    value = result.get(timeout=10)
    assert value == EXPECTED
    assert value["aware"].utcoffset() == dt.timedelta(hours=2)
    assert value["naive"].tzinfo is None
    assert type(value["decimal"]) is decimal.Decimal and str(value["decimal"]) == "1.10"
    assert type(value["date"]) is dt.date and type(value["time"]) is dt.time
    assert type(value["bytes"]) is bytes


def test_json_codec_round_trip_and_wire_format():
    codecs = Codecs()
    data = codecs.dumps(VALUES)
    assert codecs.loads(data, "json") == EXPECTED
    wire = json.loads(data)
    assert wire["uuid"] == {"__jobs__": "uuid", "v": "12345678-1234-5678-1234-567812345678"}
    assert wire["date"] == {"__jobs__": "date", "v": "2024-02-29"}
    assert sorted(codecs.loads(codecs.dumps({1, 2, 3}), "json")) == [1, 2, 3]


def test_json_refuses_unknown_objects():
    with pytest.raises(EncodeError, match="object"):
        Codecs().dumps({"x": object()})


def test_msgpack_when_accepted(jobs_redis_url, jobs_redis):
    app = basic.create_app({
        "JOBS_BROKER_URL": jobs_redis_url,
        "JOBS_TASK_SERIALIZER": "msgpack",
        "JOBS_RESULT_SERIALIZER": "msgpack",
        "JOBS_ACCEPT_CONTENT": ["json", "msgpack"],
    })
    with app.app_context(), BackgroundWorker(app):
        result = basic.types_roundtrip.delay(VALUES)
        assert result.get(timeout=10) == EXPECTED
        record = jobs_redis.hgetall(f"jobs:t:{result.id}")
        assert record[b"ctype"] == b"msgpack" and record[b"rtype"] == b"msgpack"
        # A per-task choice works as well.
        as_json = basic.types_roundtrip.apply_async((VALUES,), serializer="json")
        assert as_json.get(timeout=10) == EXPECTED
        assert jobs_redis.hget(f"jobs:t:{as_json.id}", "ctype") == b"json"


@pytest.mark.parametrize("key", ["JOBS_TASK_SERIALIZER", "JOBS_RESULT_SERIALIZER"])
@pytest.mark.parametrize("name", ["msgpack", "pickle"])
def test_serializer_not_accepted_is_refused_at_init(jobs_redis_url, key, name):
    with pytest.raises(ValueError, match="JOBS_ACCEPT_CONTENT"):
        basic.create_app({"JOBS_BROKER_URL": jobs_redis_url, key: name})


def test_unknown_serializer_and_content_type():
    with pytest.raises(ValueError, match="yaml"):
        Codecs(["json", "yaml"])
    with pytest.raises(ValueError, match="Unknown serializer"):
        Codecs().check_serializer("yaml")


def test_pickle_only_when_listed(jobs_redis_url, jobs_redis):
    app = basic.create_app({"JOBS_BROKER_URL": jobs_redis_url})
    with app.app_context():
        with pytest.raises(ValueError, match="JOBS_ACCEPT_CONTENT"):
            basic.echo.apply_async((1,), serializer="pickle")
    assert stored_keys(jobs_redis) == []
    with pytest.raises(ContentDisallowed):
        Codecs(["json"]).loads(Codecs(["pickle"]).dumps(1, "pickle"), "pickle")

    pickling = basic.create_app({"JOBS_BROKER_URL": jobs_redis_url,
                                 "JOBS_ACCEPT_CONTENT": ["json", "pickle"]})
    with pickling.app_context(), BackgroundWorker(pickling):
        result = basic.types_roundtrip.apply_async(({"a": {1, 2}},), serializer="pickle")
        assert result.get(timeout=10) == {"a": [1, 2]}
        assert jobs_redis.hget(f"jobs:t:{result.id}", "ctype") == b"pickle"


def leave_mark(path: str) -> str:
    """What unpickling a :class:`Trap` calls: its side effect is a file on disk."""
    Path(path).write_text("unpickled")
    return "trap sprung"


class Trap:
    """An object whose unpickling runs code (as any attacker's pickle could)."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return (leave_mark, (self.path,))


def test_refused_content_type_is_dead_lettered_never_decoded(app, jobs_redis_url, jobs_redis,
                                                             tmp_path):
    mark = tmp_path / "mark"
    sender = basic.create_app({"JOBS_BROKER_URL": jobs_redis_url,
                               "JOBS_ACCEPT_CONTENT": ["json", "pickle"]})
    with sender.app_context():
        result = basic.types_roundtrip.apply_async((Trap(mark),), serializer="pickle")
    assert jobs_redis.hget(f"jobs:t:{result.id}", "ctype") == b"pickle"

    with BackgroundWorker(app):  # the test app accepts json only
        exc = result.get(timeout=10, propagate=False)
    assert result.state == "FAILURE"
    assert type(exc).__name__ == "DeadLetteredError"
    reason = jobs_redis.hget(f"jobs:t:{result.id}", "reason").decode()
    assert "pickle" in reason and "JOBS_ACCEPT_CONTENT" in reason
    letter = json.loads(jobs_redis.lindex("jobs:dlq", 0))
    assert letter["id"] == result.id and "pickle" in letter["reason"]
    assert not mark.exists(), "the worker unpickled a message it does not accept"

    # The same message, consumed by a worker that accepts pickle, does spring the trap.
    with sender.app_context(), BackgroundWorker(sender):
        armed = basic.types_roundtrip.apply_async((Trap(mark),), serializer="pickle")
        assert armed.get(timeout=10) == "trap sprung"
    assert mark.read_text() == "unpickled"


def test_unencodable_return_value_fails_the_task(app, jobs_worker):
    result = basic.unencodable_result.delay()
    with pytest.raises(EncodeError, match="result serializer"):
        result.get(timeout=10)
    assert result.state == "FAILURE"
    assert "object" in str(result.result)
    # The worker is fine afterwards.
    assert basic.add.delay(1, 1).get(timeout=10) == 2


@pytest.mark.parametrize("body", [b"[1, 2]", b'"text"', b'{"args": 5}', b'{"args": [], "kwargs": []}'],
                         ids=["list", "string", "args-not-a-list", "kwargs-not-a-dict"])
def test_malformed_message_body_is_dead_lettered(app, jobs_redis, body):
    bad = basic.add.delay(2, 2)
    jobs_redis.hset(f"jobs:t:{bad.id}", mapping={"ctype": "json", "body": body})
    with BackgroundWorker(app, concurrency=1):
        with pytest.raises(DeadLetteredError, match="malformed"):
            bad.get(timeout=10)
        # The only consumer is still alive.
        assert [basic.add.delay(i, i).get(timeout=10) for i in range(3)] == [0, 2, 4]
    assert json.loads(jobs_redis.lindex("jobs:dlq", 0))["id"] == bad.id


def test_accept_content_takes_celery_mime_types(jobs_redis_url, jobs_redis):
    codecs = Codecs(["application/json", "application/x-msgpack"])
    assert codecs.accept == {"json", "msgpack"}
    assert Codecs(["application/x-python-serialize"]).accept == {"pickle"}
    app = basic.create_app({"JOBS_BROKER_URL": jobs_redis_url,
                            "JOBS_ACCEPT_CONTENT": ["application/json", "application/x-msgpack"],
                            "JOBS_TASK_SERIALIZER": "msgpack"})
    with app.app_context(), BackgroundWorker(app):
        assert basic.add.delay(2, 2).get(timeout=10) == 4
