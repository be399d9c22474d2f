"""The scheduler: each due run sent exactly once by any number of beats, failover, fencing,
missed runs, runtime changes, and Celery's and the seed's periodic task examples.

Real Redis and real ``flask jobs beat`` / ``worker -B`` processes for the HA promises; beats in
threads of this process where a test only needs the loop. Every wait is on a condition.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from flask_jobs.beat import Beat
from flask_jobs.beat.service import from_ms
from flask_jobs.beat.store import FireResult
from flask_jobs.cli import jobs_cli
from flask_jobs.exceptions import ImproperlyConfigured
from flask_jobs.schedules import crontab
from tests.apps import periodic
from tests.conftest import ROOT, LoggedProcess, wait_for

pytestmark = pytest.mark.slow

TICK = "tests.apps.periodic.tick"
#: A short lease, so failover tests are quick: a dead leader is replaced within 4/3 of it.
LEASE = 1.0


def tick_schedule(**extra: Any) -> dict[str, Any]:
    return {"tick": {"task": TICK, "schedule": 1.0, **extra}}


def app_for(url: str, schedule: dict[str, Any] | None = None, **config: Any) -> Any:
    return periodic.create_app({"JOBS_BROKER_URL": url, "JOBS_BEAT_LEASE": LEASE,
                                "JOBS_BEAT_SCHEDULE": schedule or {}, **config})


class BeatProcess(LoggedProcess):
    """A real ``flask jobs beat`` process on the periodic test app."""

    def __init__(self, url: str, schedule: dict[str, Any], *args: str, command: str = "beat",
                 env: dict[str, str] | None = None) -> None:
        full_env = {**os.environ, "JOBS_BROKER_URL": url, "PYTHONPATH": str(ROOT),
                    "JOBS_BEAT_LEASE": str(LEASE), "JOBS_BEAT_SCHEDULE": json.dumps(schedule),
                    "JOBS_ORPHAN_TIMEOUT": "1.0", **(env or {})}
        argv = [sys.executable, "-m", "flask", "--app", "tests.apps.periodic:create_app",
                "jobs", command, *args]
        log_path = Path(os.environ.get("TMPDIR", "/tmp")) / f"beat-{time.time_ns()}.log"
        super().__init__(argv, full_env, log_path)

    def wait_started(self) -> BeatProcess:
        wait_for(lambda: "is starting" in self.output() or "ready." in self.output()
                 or self.proc.poll() is not None, 20, "beat banner")
        assert self.proc.poll() is None, self.output()
        return self

    def leads(self, leader: str | None) -> bool:
        return bool(leader) and f":{self.proc.pid}:" in str(leader)


@pytest.fixture
def beat_process(jobs_redis_url: str, jobs_redis: Any) -> Iterator[Callable[..., BeatProcess]]:
    started: list[BeatProcess] = []

    def start(schedule: dict[str, Any], *args: str, **kwargs: Any) -> BeatProcess:
        b = BeatProcess(jobs_redis_url, schedule, *args, **kwargs)
        started.append(b)
        return b.wait_started()

    yield start
    for b in started:
        if b.proc.poll() is None:
            b.kill()
        b.log.close()


@pytest.fixture
def beat_thread(jobs_redis_url: str, jobs_redis: Any) -> Iterator[Callable[..., Beat]]:
    """Start :class:`Beat` loops in threads of this process; all stopped at the end."""
    running: list[tuple[Beat, threading.Thread]] = []

    def start(app: Any, setup: bool = True) -> Beat:
        beat = Beat(app, max_interval=0.2)
        with app.app_context():
            if setup:
                beat.setup()
        running.append((beat, beat.start()))
        return beat

    yield start
    for beat, thread in running:
        beat.stop()
        thread.join(10)


def sent_runs(r: Any, queue: str = "default") -> list[tuple[str, dt.datetime]]:
    """``(entry name, due time)`` of every periodic message waiting in ``queue``, oldest first."""
    ids = []
    for prio in range(10):
        ids += [i.decode() for i in r.lrange(f"jobs:q:{queue}:{prio}", 0, -1)]
    runs = []
    for task_id in ids:
        headers = json.loads(r.hget(f"jobs:t:{task_id}", "body"))["headers"]
        runs.append((headers["periodic_task_name"],
                     dt.datetime.fromisoformat(headers["periodic_task_due"])))
    return sorted(runs, key=lambda run: run[1])


def total(r: Any, name: str = "tick") -> int:
    return int(r.hget(f"jobs:beat:e:{name}", "total") or 0)


def leader(r: Any) -> str | None:
    value = r.get("jobs:beat:leader")
    return value.decode() if value else None


def due_since(jobs_redis: Any, app: Any, ago_ms: int) -> int:
    """Write ``app``'s entries (a beat's setup) with ``tick`` due ``ago_ms`` ago, as if no
    beat had run since; returns Redis's clock then."""
    with app.app_context():
        beat = Beat(app)
        beat.setup()
        now = beat.store.now_ms()
    jobs_redis.hset("jobs:beat:e:tick", "next", now - ago_ms)
    jobs_redis.zadd("jobs:beat:due", {"tick": now - ago_ms})
    return now


def assert_each_due_once(runs: list[tuple[str, dt.datetime]], step: float = 1.0) -> None:
    """Every due time once, none missing between the first and the last."""
    dues = [due for _, due in runs]
    assert len(dues) == len(set(dues)), f"a run was sent twice: {dues}"
    gaps = [(b - a).total_seconds() for a, b in zip(dues, dues[1:], strict=False)]
    assert all(abs(g - step) < 1e-6 for g in gaps), f"runs lost or doubled: gaps {gaps}"


# -- HA: exactly once, failover, fencing ---------------------------------------------------------

def test_three_beats_send_each_tick_exactly_once(beat_process, jobs_redis):
    # Given three beat processes with one entry every second
    beats = [beat_process(tick_schedule()) for _ in range(3)]
    # When they run for ten ticks
    wait_for(lambda: total(jobs_redis) >= 10, 30, "ten ticks")
    for b in beats:
        assert b.stop() == 0, b.output()
    # Then each due time was sent once: the queue holds one message per tick, none doubled
    runs = sent_runs(jobs_redis)
    assert len(runs) == total(jobs_redis) >= 10
    assert {name for name, _ in runs} == {"tick"}
    assert_each_due_once(runs)
    # and exactly one beat sent them all at a time (the others followed)
    assert sum("Sending due task tick" in b.output() for b in beats) >= 1


def test_a_killed_leader_is_replaced_within_the_lease_and_no_tick_is_lost(beat_process,
                                                                          jobs_redis):
    # Given two beats, one leading
    a, b = beat_process(tick_schedule()), beat_process(tick_schedule())
    first = wait_for(lambda: leader(jobs_redis), 10, "a leader")
    dead, heir = (a, b) if a.leads(first) else (b, a)
    wait_for(lambda: total(jobs_redis) >= 3, 15, "three ticks")
    # When the leader is SIGKILLed (its lease stays until it lapses)
    dead.kill()
    killed_at = time.monotonic()
    wait_for(lambda: heir.leads(leader(jobs_redis)), LEASE * 4 / 3 + 3, "a new leader")
    takeover = time.monotonic() - killed_at
    after = total(jobs_redis)
    wait_for(lambda: total(jobs_redis) >= after + 3, 15, "ticks from the new leader")
    heir.stop()
    # Then the other beat led within the documented bound (4/3 of the lease, plus polling)
    assert takeover < LEASE * 4 / 3 + 1.0, takeover
    # and the ticks due meanwhile were sent late, each once: none lost, none doubled
    assert_each_due_once(sent_runs(jobs_redis))


def test_a_leader_stopped_past_its_lease_does_not_send_stale_ticks(beat_process, jobs_redis):
    # Given two beats, one leading
    a, b = beat_process(tick_schedule()), beat_process(tick_schedule())
    first = wait_for(lambda: leader(jobs_redis), 10, "a leader")
    frozen, other = (a, b) if a.leads(first) else (b, a)
    wait_for(lambda: total(jobs_redis) >= 2, 15, "two ticks")
    # When the leader is SIGSTOPped past its lease, the other takes over and sends ticks...
    frozen.signal(signal.SIGSTOP)
    try:
        wait_for(lambda: other.leads(leader(jobs_redis)), LEASE * 4 / 3 + 3, "takeover")
        after = total(jobs_redis)
        wait_for(lambda: total(jobs_redis) >= after + 3, 15, "ticks while it is stopped")
    finally:
        frozen.signal(signal.SIGCONT)  # ...and then it runs again, believing it led
    resumed = total(jobs_redis)
    wait_for(lambda: total(jobs_redis) >= resumed + 3, 15, "ticks after it resumed")
    for p in (frozen, other):
        p.stop()
    # Then no due time went out twice (the resumed beat's view of the schedule was stale)
    assert_each_due_once(sent_runs(jobs_redis))


def test_the_send_is_fenced_by_the_lease_and_the_expected_next_run(app, jobs_redis_url,
                                                                   jobs_redis):
    # Given an entry due now, and two beats of which only the first holds the lease
    a_app = app_for(jobs_redis_url, tick_schedule())
    with a_app.app_context():
        a, b = Beat(a_app), Beat(a_app)
        a.setup()
        assert a.store.lease(a.id, 10_000)[0]
        now = a.store.now_ms()
        jobs_redis.hset("jobs:beat:e:tick", "next", now - 10)
        jobs_redis.zadd("jobs:beat:due", {"tick": now - 10})
        # When the second, believing it leads (a process resumed after a stop), sends the run
        b._leading_until = time.monotonic() + 60
        refused = b.send_due("tick", now - 10, now)
        # and the leader sends it, and then sends it again from the same stale read
        sent = a.send_due("tick", now - 10, now)
        again = a.store.fire("tick", a.id, "tick", now - 10, now + 990, now - 10,
                             a.message(a._entry("tick", a.store.get("tick").definition), now))
    # Then only the leader's first send went out
    assert (refused, sent, again[0]) == (FireResult.NOT_LEADER, FireResult.SENT,
                                         FireResult.MOVED_ON)
    assert total(jobs_redis) == 1 and len(sent_runs(jobs_redis)) == 1


# -- missed runs ---------------------------------------------------------------------------------

@pytest.mark.parametrize("policy, expected", [("once", 1), ("skip", 0), ("all", 5)])
def test_missed_runs_follow_the_entry_policy(policy, expected, beat_thread, jobs_redis_url,
                                             jobs_redis):
    # Given an entry whose last 60 due times passed while no beat ran (cap 5 for 'all')
    app = app_for(jobs_redis_url, tick_schedule(missed=policy), JOBS_BEAT_MISSED_CAP=5)
    now = due_since(jobs_redis, app, 60_000)
    # When a beat starts again (without rewriting the unchanged entry)
    beat_thread(app, setup=False)
    wait_for(lambda: int(jobs_redis.zscore("jobs:beat:due", "tick")) > now, 10,
             "the backlog handled")
    runs = sent_runs(jobs_redis)
    # Then the backlog gave one run (for its newest due time), none, or the newest five
    backlog = [due for _, due in runs if due <= from_ms(now)]
    assert len(backlog) == expected, runs
    if policy == "once":
        assert from_ms(now - 1000) < backlog[0] <= from_ms(now)
    if policy == "all":
        assert_each_due_once(runs[:5])
        assert from_ms(now - 1000) < backlog[-1] <= from_ms(now)  # the newest ones
    # and the schedule goes on from now, on its phase
    wait_for(lambda: len([d for _, d in sent_runs(jobs_redis) if d > from_ms(now)]) >= 2, 10,
             "ticks after the backlog")
    fresh = [run for run in sent_runs(jobs_redis) if run[1] > from_ms(now)]
    assert_each_due_once(fresh)
    assert (fresh[0][1] - from_ms(now - 60_000)).total_seconds() % 1 == 0


def test_a_late_run_within_the_failover_window_is_sent_whatever_the_policy(beat_thread,
                                                                         jobs_redis_url,
                                                                         jobs_redis):
    # Given an entry due 1.2 s ago (a leader's failover: the window is 2 x lease + max
    # interval = 2.2 s here), with policy 'skip'
    app = app_for(jobs_redis_url, tick_schedule(missed="skip"))
    now = due_since(jobs_redis, app, 1200)
    beat_thread(app, setup=False)
    wait_for(lambda: total(jobs_redis) >= 4, 10, "ticks")
    # Then the late runs were sent, each once
    runs = sent_runs(jobs_redis)
    assert runs[0][1] == from_ms(now - 1200)
    assert_each_due_once(runs)


# -- the schedule in Redis: configuration changes and runtime control ----------------------------

def test_a_restart_drops_removed_entries_and_recomputes_changed_ones(jobs_redis_url, jobs_redis):
    # Given a beat's entries written once, plus one added at run time
    first = app_for(jobs_redis_url, {
        "keep": {"task": TICK, "schedule": 60.0},
        "change": {"task": TICK, "schedule": 60.0},
        "drop": {"task": TICK, "schedule": 60.0}})
    with first.app_context():
        Beat(first).setup()
        periodic.jobs.schedule.add("runtime", TICK, 3600.0)
        kept_next = periodic.jobs.schedule.get("keep").next_run_at
    # When a beat starts with a configuration that changed one entry and lacks another
    second = app_for(jobs_redis_url, {
        "keep": {"task": TICK, "schedule": 60.0},
        "change": {"task": TICK, "schedule": crontab(minute=0, hour=3)}})
    with second.app_context():
        Beat(second).setup()
        entries = {e.name: e for e in periodic.jobs.schedule.list()}
    # Then the removed one is gone, the runtime one stays, the unchanged one kept its next run
    assert sorted(entries) == ["change", "keep", "runtime"]
    assert entries["keep"].next_run_at == kept_next
    assert entries["runtime"].source == "api" and entries["keep"].source == "config"
    # and the changed one runs on its new schedule
    nxt = entries["change"].next_run_at
    assert (nxt.hour, nxt.minute, nxt.second) == (3, 0, 0)
    assert entries["change"].schedule == crontab(minute=0, hour=3)


def test_runtime_changes_are_seen_by_a_running_beat(beat_process, app, jobs_redis_url,
                                                    jobs_redis):
    # Given a running beat with one entry every second
    beat_process(tick_schedule())
    wait_for(lambda: total(jobs_redis) >= 1, 15, "a tick")
    with app_for(jobs_redis_url).app_context():
        control = periodic.jobs.schedule
        # When an entry is added at run time, it runs
        control.add("extra", periodic.tick, 1.0, kwargs={"key": "extra-ticks"})
        wait_for(lambda: total(jobs_redis, "extra") >= 2, 15, "the added entry runs")
        # When 'tick' is paused, it stops while 'extra' goes on
        control.pause("tick")
        paused_at = total(jobs_redis)
        extra_at = total(jobs_redis, "extra")
        wait_for(lambda: total(jobs_redis, "extra") >= extra_at + 3, 15, "extra goes on")
        assert total(jobs_redis) <= paused_at + 1  # (one may have been on its way)
        assert control.get("tick").paused and control.get("tick").next_run_at is None
        # When it is resumed, it runs again
        stopped_at = total(jobs_redis)
        control.resume("tick")
        wait_for(lambda: total(jobs_redis) >= stopped_at + 2, 15, "tick resumed")
        # run_now sends one run at once, whatever the schedule
        control.pause("tick")
        before = total(jobs_redis)
        result = control.run_now("tick")
        assert total(jobs_redis) == before + 1
        assert control.get("tick").last_task_id == result.id
        # remove deletes it for every beat
        assert control.remove("extra") is True
        assert control.get("extra") is None and control.remove("extra") is False
        with pytest.raises(KeyError, match="No periodic task named 'nope'"):
            control.pause("nope")


def test_the_schedule_cli_lists_pauses_resumes_runs_and_removes(jobs_redis_url, jobs_redis):
    app = app_for(jobs_redis_url, {"tick": {"task": TICK, "schedule": 30.0},
                                   "weekly": {"task": TICK, "schedule": crontab(
                                       hour=20, minute=20, day_of_week=1)}})
    with app.app_context():
        Beat(app).setup()
    runner = app.test_cli_runner()
    listed = runner.invoke(jobs_cli, ["schedule", "list"])
    assert listed.exit_code == 0, listed.output
    assert "tick  tests.apps.periodic.tick  <freq: 30.00 seconds>" in listed.output
    assert "weekly" in listed.output and "last: never" in listed.output
    assert "no beat is running" in listed.output
    assert runner.invoke(jobs_cli, ["schedule", "pause", "tick"]).output == "paused tick\n"
    as_json = runner.invoke(jobs_cli, ["schedule", "list", "--json"]).output.splitlines()
    assert {json.loads(line)["name"]: json.loads(line)["paused"] for line in as_json} == {
        "tick": True, "weekly": False}
    assert "resumed tick: next run" in runner.invoke(
        jobs_cli, ["schedule", "resume", "tick"]).output
    ran = runner.invoke(jobs_cli, ["schedule", "run", "weekly"])
    assert ran.exit_code == 0 and ran.output.startswith("sent weekly: task ")
    assert total(jobs_redis, "weekly") == 1
    missing = runner.invoke(jobs_cli, ["schedule", "pause", "nope"])
    assert missing.exit_code == 1 and "No periodic task named 'nope'" in missing.output
    assert runner.invoke(jobs_cli, ["schedule", "remove", "weekly"]).exit_code == 0
    assert runner.invoke(jobs_cli, ["schedule", "remove", "weekly"]).exit_code == 1


# -- bad schedules fail at start, naming the entry and the fix ----------------------------------

@pytest.mark.parametrize("entry, message", [
    ({"task": "tests.apps.periodic.nope", "schedule": 5}, "unknown task 'tests.apps.periodic.nope'"),
    ({"task": TICK, "schedule": "every 5 minutes"}, "bad 'schedule'"),
    ({"task": TICK, "schedule": -1}, "bad 'schedule'"),
    ({"task": TICK}, "'schedule' is missing"),
    ({"task": TICK, "schedule": 5, "args": "abc"}, "'args' must be a list or tuple"),
    ({"task": TICK, "schedule": 5, "missed": "sometimes"}, "'missed' must be one of"),
    ({"task": TICK, "schedule": 5, "sched": 5}, "unknown key(s) 'sched'"),
    ({"task": TICK, "schedule": 5, "options": {"priority": 12}}, "priority must be"),
    ({"task": TICK, "schedule": 5, "kwargs": {"nope": 1}}, "cannot be sent"),
    ({"task": TICK, "schedule": 5, "options": {"task_id": "x"}}, "every run needs an id"),
    ({"task": TICK, "schedule": 5, "options": {"dedup_key": "k"}}, "option 'dedup_key'"),
])
def test_a_bad_entry_fails_at_start_with_its_name(entry, message, jobs_redis_url, jobs_redis):
    app = app_for(jobs_redis_url, {"bad-one": entry})
    with app.app_context(), pytest.raises(ImproperlyConfigured) as info:
        Beat(app).setup()
    assert "JOBS_BEAT_SCHEDULE['bad-one']" in str(info.value)
    assert message in str(info.value)
    assert jobs_redis.exists("jobs:beat:e:bad-one") == 0  # nothing written


def test_the_beat_command_exits_with_the_reason(jobs_redis_url, jobs_redis):
    env = {**os.environ, "JOBS_BROKER_URL": jobs_redis_url, "PYTHONPATH": str(ROOT),
           "JOBS_BEAT_SCHEDULE": json.dumps({"x": {"task": "tasks.nope", "schedule": 5}})}
    argv = [sys.executable, "-m", "flask", "--app", "tests.apps.periodic:create_app", "jobs",
            "beat"]
    done = subprocess.run(argv, env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert "JOBS_BEAT_SCHEDULE['x']: unknown task 'tasks.nope'" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("zone", ["Mars/Olympus", "", 5])
def test_an_unknown_time_zone_fails_at_init_app(zone, jobs_redis_url):
    with pytest.raises(ImproperlyConfigured, match="JOBS_TIMEZONE must be an IANA time zone"):
        app_for(jobs_redis_url, JOBS_TIMEZONE=zone)


# -- Celery's examples and the seed, verbatim ----------------------------------------------------

def test_the_seed_schedule_verbatim(jobs_redis_url, jobs_redis):
    # Given the seed's CELERYBEAT_SCHEDULE (only the setting's name changed)
    from flask_jobs import crontab as seed_crontab

    JOBS_BEAT_SCHEDULE = {  # noqa: N806 - the seed's settings.py
        'add_every_30_seconds': {
            # 任务路径
            'task': 'celery_app.tasks.add',
            # 每30秒执行一次
            'schedule': 30,
            'args': (14, 5)
        },
        'xsum_week1_20_20_00': {
            # 任务路径
            'task': 'celery_app.tasks.xsum',
            # 每周一20点20分执行
            'schedule': seed_crontab(hour=20, minute=20, day_of_week=1),
            'args': ([1, 2, 3, 4],),
        },
    }
    app = app_for(jobs_redis_url, JOBS_BEAT_SCHEDULE)
    with app.app_context():
        beat = Beat(app)
        beat.setup()
        now = from_ms(beat.store.now_ms())
        entries = {e.name: e for e in periodic.jobs.schedule.list()}
        # Then the 30 s entry is due 30 s from now, the weekly one on a Monday at 20:20
        assert 29 <= (entries["add_every_30_seconds"].next_run_at - now).total_seconds() <= 31
        weekly = entries["xsum_week1_20_20_00"].next_run_at
        assert (weekly.isoweekday(), weekly.hour, weekly.minute) == (1, 20, 20)
        assert dt.timedelta(0) < weekly - now <= dt.timedelta(days=7)
        assert "xsum_week1_20_20_00: celery_app.tasks.xsum <crontab: 20 20 * * 1" in beat.banner()
        # and each sends its task, which a worker runs with the seed's arguments
        results = [periodic.jobs.schedule.run_now(n) for n in sorted(entries)]
        from flask_jobs.worker.main import BackgroundWorker

        with BackgroundWorker(app):
            assert [r.get(timeout=10) for r in results] == [19, 10]


def test_celerys_periodic_tasks_guide(jobs_redis_url, jobs_redis):
    from tests.apps import celery_beat_guide as guide

    app = guide.create_app({"JOBS_BROKER_URL": jobs_redis_url})
    with app.app_context():
        beat = Beat(app)
        entries = {e.name: e for e in beat.setup()}
        # on_after_configure ran once and its add_periodic_task calls became entries
        assert sorted(entries) == sorted([
            "add every 10", "add every 30", "tasks.test('world')",
            "tasks.test('Happy Mondays!')", "add-every-30-seconds", "add-every-monday-morning"])
        assert entries["add every 10"].schedule.run_every == dt.timedelta(seconds=10)
        assert entries["tasks.test('world')"].options == {"expires": 10}
        assert entries["tasks.test('Happy Mondays!')"].schedule == crontab(
            hour=7, minute=30, day_of_week=1)
        assert entries["add-every-30-seconds"].args == (16, 16)
        stored = {e.name for e in guide.app.schedule.list()}
        assert stored == set(entries)
        Beat(app).setup()  # (a second beat: the signal is not sent twice, nothing doubles)
        assert len(guide.app.schedule.list()) == 6


def test_add_periodic_task_rejects_a_workflow(jobs_redis_url):
    from flask_jobs import group

    with pytest.raises(TypeError, match="takes a task's signature"):
        periodic.jobs.add_periodic_task(5, group(periodic.tick.s(), periodic.tick.s()))


# -- worker -B: periodic tasks run like any task -------------------------------------------------

def test_worker_with_an_embedded_beat_runs_periodic_tasks(beat_process, jobs_redis_url,
                                                         jobs_redis):
    # Given a worker started with -B and an entry every second
    worker = beat_process(tick_schedule(), "-P", "solo", "-B", command="worker")
    # When a few ticks ran
    wait_for(lambda: jobs_redis.llen("ticks") >= 3, 20, "ticks run by the worker")
    # Then each ran once with Celery's header, and its record is a task's like any other
    ran = [json.loads(x) for x in jobs_redis.lrange("ticks", 0, -1)]
    assert {name for name, _ in ran} == {"tick"}
    dues = [dt.datetime.fromisoformat(due) for _, due in ran]
    assert len(set(dues)) == len(dues)
    last_id = jobs_redis.hget("jobs:beat:e:tick", "last_id").decode()
    wait_for(lambda: jobs_redis.hget(f"jobs:t:{last_id}", "state") == b"SUCCESS", 10)
    with app_for(jobs_redis_url).test_client() as client:
        body = client.get(f"/jobs/status/{last_id}").get_json()
    assert body["state"] == "SUCCESS"
    # and a clean stop gives the lease up at once
    assert worker.stop() == 0, worker.output()
    assert leader(jobs_redis) is None


def test_a_custom_schedule_class_and_a_solar_schedule_are_kept(jobs_redis_url, jobs_redis):
    ephem = pytest.importorskip("ephem")  # (the solar extra)
    from flask_jobs import solar

    app = app_for(jobs_redis_url, {"custom": {"task": TICK, "schedule": periodic.every_other(5)}})
    with app.app_context():
        beat = Beat(app)
        beat.setup()
        now = from_ms(beat.store.now_ms())
        berlin = solar("sunrise", 52.52, 13.405)
        periodic.jobs.schedule.add("dawn", periodic.tick, berlin)
        entries = {e.name: e for e in periodic.jobs.schedule.list()}
    # The subclass comes back as itself (from the stored definition), due after twice its interval
    custom = entries["custom"]
    assert type(custom.schedule) is periodic.every_other
    assert 9 <= (custom.next_run_at - now).total_seconds() <= 11
    # and the solar entry is due at Berlin's next sunrise
    assert entries["dawn"].schedule == berlin
    expected = berlin.next_after(now)
    assert abs((entries["dawn"].next_run_at - expected).total_seconds()) < 2
    assert ephem.__version__


def test_a_new_time_zone_recomputes_the_next_runs(jobs_redis_url, jobs_redis):
    daily = {"daily": {"task": TICK, "schedule": crontab(minute=0, hour=9)}}
    with app_for(jobs_redis_url, daily).app_context():
        Beat(app_for(jobs_redis_url, daily)).setup()
        utc_next = periodic.jobs.schedule.get("daily").next_run_at
    berlin = app_for(jobs_redis_url, daily, JOBS_TIMEZONE="Europe/Berlin")
    with berlin.app_context():
        Beat(berlin).setup()
        local_next = periodic.jobs.schedule.get("daily").next_run_at
    assert (utc_next.hour, local_next.hour) == (9, 9)
    assert str(local_next.tzinfo) == "Europe/Berlin"
    assert local_next.utcoffset() != utc_next.utcoffset()


def test_the_owner_option_reaches_the_task_record(jobs_redis_url, jobs_redis):
    app = app_for(jobs_redis_url, tick_schedule(options={"owner": "alice"}))
    with app.app_context():
        beat = Beat(app)
        beat.setup()
        result = periodic.jobs.schedule.run_now("tick")
        now = beat.store.now_ms()
        jobs_redis.hset("jobs:beat:e:tick", "next", now - 10)
        assert beat.store.lease(beat.id, 10_000)[0]
        beat._leading_until = time.monotonic() + 60
        assert beat.send_due("tick", now - 10, now) == FireResult.SENT
    last = jobs_redis.hget("jobs:beat:e:tick", "last_id").decode()
    assert jobs_redis.hget(f"jobs:t:{result.id}", "owner") == b"alice"
    assert jobs_redis.hget(f"jobs:t:{last}", "owner") == b"alice"


def test_a_standby_beat_says_so(beat_process, jobs_redis):
    first = beat_process(tick_schedule())
    wait_for(lambda: "leading" in first.output(), 10, "the first beat to lead")
    second = beat_process(tick_schedule())
    wait_for(lambda: "standing by:" in second.output(), 10, "the second to stand by")
