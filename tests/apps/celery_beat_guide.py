"""Celery's periodic tasks guide (docs/userguide/periodic-tasks.rst), its examples with only
the imports and the setup lines changed (``app = Celery()`` -> ``app = Jobs()``, task names
given as ``tasks.*`` because the guide's module is ``tasks.py``)."""

from __future__ import annotations

from flask import Flask

from flask_jobs import Jobs, crontab

app = Jobs()  # was: app = Celery()


@app.on_after_configure.connect
def setup_periodic_tasks(sender, **kwargs):
    # Calls test('hello') every 10 seconds.
    sender.add_periodic_task(10.0, test.s('hello'), name='add every 10')

    # Calls test('hello') every 30 seconds.
    # It uses the same signature of previous task, an explicit name is
    # defined to avoid this task replacing the previous one defined.
    sender.add_periodic_task(30.0, test.s('hello'), name='add every 30')

    # Calls test('world') every 30 seconds
    sender.add_periodic_task(30.0, test.s('world'), expires=10)

    # Executes every Monday morning at 7:30 a.m.
    sender.add_periodic_task(
        crontab(hour=7, minute=30, day_of_week=1),
        test.s('Happy Mondays!'),
    )


@app.task(name='tasks.test')
def test(arg):
    print(arg)


@app.task(name='tasks.add')
def add(x, y):
    z = x + y
    print(z)


# The guide's JOBS_BEAT_SCHEDULE examples (its app.conf.beat_schedule).
BEAT_SCHEDULE = {
    'add-every-30-seconds': {
        'task': 'tasks.add',
        'schedule': 30.0,
        'args': (16, 16)
    },
    # Executes every Monday morning at 7:30 a.m.
    'add-every-monday-morning': {
        'task': 'tasks.add',
        'schedule': crontab(hour=7, minute=30, day_of_week=1),
        'args': (16, 16),
    },
}


def create_app(config: dict) -> Flask:
    """The Flask app (setup lines: Celery reads ``app.conf``; we read ``app.config``)."""
    flask_app = Flask(__name__)
    flask_app.config.update(config)
    flask_app.config['JOBS_BEAT_SCHEDULE'] = BEAT_SCHEDULE
    flask_app.config['JOBS_TIMEZONE'] = 'UTC'
    app.init_app(flask_app)
    return flask_app
