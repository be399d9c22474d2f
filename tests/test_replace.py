"""Task.replace and Ignore: a task hands its id to a signature, a chain or a group."""

from __future__ import annotations

import pytest

from flask_jobs import chain, chord, group
from tests.apps.basic import add, mul, replaced, tsum

T = 10


@pytest.mark.parametrize(("how", "expected"), [
    ("sig", 6),          # add(3, 3)
    ("chain", 40),       # add(3, 1) | mul(10)
    ("group", [0, 2, 4]),  # the list of the group's results
    ("none", 3),         # not replaced
])
def test_callers_see_the_replacement_result(app, jobs_worker, how, expected):
    result = replaced.delay(how)
    assert result.get(timeout=T) == expected
    assert result.state == "SUCCESS"


def test_a_replaced_task_keeps_its_place_in_a_chain(app, jobs_worker):
    res = (add.s(1, 1) | replaced.si("sig", 5) | mul.s(2))()
    assert res.get(timeout=T) == 20
    assert res.parent.get(timeout=T) == 10


def test_a_replaced_task_counts_in_its_group_and_chord(app, jobs_worker):
    assert group(replaced.s("chain", 1), replaced.s("sig", 2), add.s(1, 1))().get(
        timeout=T) == [20, 4, 2]
    assert chord([replaced.s("sig", 2), replaced.s("chain", 1)], tsum.s())().get(
        timeout=T) == 24


def test_a_failing_replacement_fails_the_replaced_task(app, jobs_worker):
    result = replaced.delay("sig", "x")  # add("x", "x") is "xx": fine; mul of strings fails
    assert result.get(timeout=T) == "xx"
    result = chain(replaced.si("chain", "x"))()
    with pytest.raises(TypeError):
        result.get(timeout=T)
    assert result.state == "FAILURE" and "TypeError" in result.traceback


def test_replace_runs_eagerly(app, jobs_eager):
    assert replaced.delay("chain").get() == 40
    assert replaced.delay("group").get() == [0, 2, 4]


def test_replace_called_directly_runs_here(app, jobs_redis):
    assert replaced("sig", 2) == 4
    assert jobs_redis.keys("jobs:t:*") == []
