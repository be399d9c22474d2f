"""The key table of flask_jobs/keys.py, the header of scripts/lib.lua and the Keys class agree,
and every script receives a key in KEYS (what a Redis Cluster client routes by)."""

from __future__ import annotations

import inspect
import re
from importlib import resources

import pytest

from flask_jobs import keys as keys_module
from flask_jobs.keys import Keys

SCRIPTS = resources.files("flask_jobs") / "scripts"


def python_table() -> dict[str, str]:
    """``pattern -> type`` from the rows of the table in keys.py's docstring."""
    rows = re.findall(r"^``P (\S+)``\s+(\w+)", keys_module.__doc__ or "", re.MULTILINE)
    return dict(rows)


def lua_table() -> dict[str, str]:
    """``pattern -> type`` from the key list in the header of lib.lua."""
    header = (SCRIPTS / "lib.lua").read_text().split("-- Time always comes")[0]
    return dict(re.findall(r"^--   (\S+)\s+(hash|list|set|zset|string|channel|stream)\s", header,
                           re.MULTILINE))


def test_the_lua_header_lists_the_keys_of_the_python_table():
    python, lua = python_table(), lua_table()
    assert len(python) >= 19  # (the parse found the table)
    assert lua == python


def test_every_key_the_keys_class_builds_is_in_the_table():
    # Given every name Keys can build, with placeholders for its arguments
    k = Keys("jobs")
    patterns = [re.compile("^" + re.sub(r"<[^>]+>", ".+", re.escape(p).replace(r"\<", "<")
                                        .replace(r"\>", ">")) + "$") for p in python_table()]
    built = []
    for name, member in inspect.getmembers(Keys):
        if name.startswith("_") or name in ("prefix", "base"):
            continue
        if isinstance(member, property):
            built.append(getattr(k, name))
        else:
            params = list(inspect.signature(member).parameters)[1:]
            built.append(getattr(k, name)(*[f"x{i}" for i in range(len(params))]))
    # Expect each to be a row of the table, after the prefix
    assert len(built) >= 14
    for key in built:
        assert key.startswith("jobs:")
        assert any(p.match(key[len("jobs:"):]) for p in patterns), key


@pytest.mark.parametrize("script", sorted(p.name for p in SCRIPTS.iterdir()
                                          if p.name.endswith(".lua") and p.name != "lib.lua"))
def test_every_script_documents_the_key_it_receives(script):
    header = "\n".join(line for line in (SCRIPTS / script).read_text().splitlines()
                       if line.startswith("--"))
    assert "KEYS[1]: " in header, f"{script} does not say what KEYS[1] is"


def test_every_script_call_names_a_key_of_the_prefix(app, jobs_redis):
    # Given a MONITOR of the test Redis while the broker runs each of its scripts once
    from flask_jobs import chain, group
    from flask_jobs.writes import give_back_write
    from tests.apps import basic

    broker = app.extensions["jobs"].broker
    with jobs_redis.monitor() as monitor:
        one = basic.add.delay(1, 2)                                   # enqueue (one)
        group(basic.add.s(i, i) for i in range(3)).apply_async()      # enqueue (pipelined)
        chain(basic.add.s(1, 1), basic.add.s(2)).apply_async()        # placeholders
        claimed, _, _ = broker.claim(broker.client, "w-keys", 1, ["default"])  # claim
        broker.write(broker.client, "w-keys", [give_back_write(c.id, c.attempt)
                                               for c in claimed])     # write
        one.revoke()                                                  # revoke
        broker.fail_links([one.id], "FAILURE", "{}")                  # fail_links
        broker.purge(["default"])                                     # purge
        broker.reap(broker.client, "w-keys", 100)                     # reap
        jobs_redis.echo("keys-test-done")
        calls = []
        for command in monitor.listen():
            words = command["command"].split()
            if words[0].upper() == "ECHO" and "keys-test-done" in command["command"]:
                break
            if words[0].upper() == "EVALSHA":
                calls.append(words)
    # Expect every script call to name at least one key, built from the prefix
    assert len(calls) >= 9
    for words in calls:
        numkeys = int(words[2])
        assert numkeys >= 1, words[:4]
        assert words[3].startswith("jobs:"), words[:4]
