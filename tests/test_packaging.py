"""Packaging: the sdist and the wheel ``python -m build`` makes, and that wheel installed.

``build`` makes the sdist from a copy of the source tree and the wheel from that sdist, as a
release does, so the wheel proves the sdist has what a build needs (the widget reaches the
package through the symlink ``flask_jobs/static -> ../static``, which the sdist must carry as
files). ``twine check`` reads both as PyPI's upload would. Then the wheel goes into a fresh
venv, where a tiny app serves the widget and the metadata answers to ``flask-jobs-redis``.

The fresh venv gets flask, redis and blinker without downloading them: a ``.pth`` file adds
the directories they are installed in here. A ``.pth`` line only adds its directory to
``sys.path``; the ``.pth`` files inside that directory are not run, so our own editable
install there (an import hook that a ``.pth`` file installs) stays out, which the test checks
before and after installing the wheel. Building runs pip in an isolated build environment
(setuptools from the package index or pip's cache), like the release build.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import sys
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.packaging

DIST_NAME = "flask-jobs-redis"
#: What the package needs at run time besides its code: served or loaded from the package.
PACKAGE_DATA = sorted(
    [f"flask_jobs/static/{p.name}" for p in (ROOT / "static").iterdir()]
    + [f"flask_jobs/scripts/{p.name}" for p in (ROOT / "flask_jobs" / "scripts").glob("*.lua")]
    + ["flask_jobs/py.typed"]
)
#: Not copied into the tree that is built: what .gitignore lists, and the parts of the
#: repository that are not the package.
IGNORED = shutil.ignore_patterns(
    ".venv", ".venv-bench", ".git", "build", "dist", "*.egg-info", "__pycache__", "*.pyc", ".*_cache", "docs",
    "bench", "tests", "example_app", "artifacts", "instance", "*.rdb", "*.sock")


def run(*args: str | Path, timeout: float = 120, **kwargs: Any) -> subprocess.CompletedProcess:
    """Run a command; fail the test with its output when it fails."""
    proc = subprocess.run([str(a) for a in args], capture_output=True, text=True,
                          timeout=timeout, **kwargs)
    if proc.returncode != 0:
        pytest.fail(f"{' '.join(map(str, args))} exited {proc.returncode}\n"
                    f"--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}")
    return proc


@dataclass
class Dists:
    sdist: Path
    wheel: Path


@pytest.fixture(scope="module")
def dists(tmp_path_factory: pytest.TempPathFactory) -> Dists:
    # Build from a copy, so the build leaves nothing in the working tree; the static symlink
    # is copied as a symlink, as a checkout has it.
    tmp = tmp_path_factory.mktemp("build")
    src = tmp / "src"
    shutil.copytree(ROOT, src, symlinks=True, ignore=IGNORED)
    assert (src / "flask_jobs" / "static").is_symlink()
    out = tmp / "dist"
    # The default of build: the sdist first, then the wheel from the unpacked sdist.
    run(sys.executable, "-m", "build", "--outdir", out, src, timeout=300)
    (sdist,) = out.glob("flask_jobs_redis-*.tar.gz")
    (wheel,) = out.glob("flask_jobs_redis-*-py3-none-any.whl")
    return Dists(sdist, wheel)


def test_twine_check_passes(dists: Dists) -> None:
    run(sys.executable, "-m", "twine", "check", "--strict", dists.sdist, dists.wheel)


def test_sdist_carries_the_package_data_as_files(dists: Dists) -> None:
    with tarfile.open(dists.sdist) as sdist:
        (top,) = {name.split("/")[0] for name in sdist.getnames()}
        members = {m.name.removeprefix(f"{top}/"): m for m in sdist.getmembers()}
        for name in PACKAGE_DATA:
            assert name in members and members[name].isfile(), name
        for name in ("pyproject.toml", "setup.cfg", "README.md", "LICENSE"):
            assert name in members, name
        widget = sdist.extractfile(members["flask_jobs/static/flask-jobs.js"])
        assert widget is not None
        assert widget.read() == (ROOT / "static" / "flask-jobs.js").read_bytes()


def test_wheel_ships_the_widget(dists: Dists) -> None:
    names = zipfile.ZipFile(dists.wheel).namelist()
    assert "flask_jobs/static/flask-jobs.js" in names
    assert "flask_jobs/static/flask-jobs.css" in names
    assert {f"flask_jobs/web/{m}.py" for m in ("__init__", "status", "encoding", "lookups", "auth",
                                               "events", "views")} <= set(names)
    assert "flask_jobs/scripts/lib.lua" in names and "flask_jobs/scripts/claim.lua" in names
    assert sorted(set(PACKAGE_DATA) - set(names)) == []


#: Run by the fresh venv's python: prints what the test checks, as JSON.
SERVE_THE_WIDGET = """
import base64, importlib.metadata, json, sys

import flask
import flask_jobs
from flask import Flask
from flask_jobs import Jobs
from flask_jobs.scripts import script_source

app = Flask(__name__)
app.config["JOBS_BROKER_URL"] = "redis://127.0.0.1:1/0"  # nothing listens; nothing is sent
Jobs(app)
client = app.test_client()
js, css = client.get("/jobs/static/flask-jobs.js"), client.get("/jobs/static/flask-jobs.css")
dist = importlib.metadata.distribution("flask-jobs-redis")
json.dump({
    "js_status": js.status_code,
    "js": base64.b64encode(js.get_data()).decode(),
    "css_status": css.status_code,
    "css": base64.b64encode(css.get_data()).decode(),
    "version": importlib.metadata.version("flask-jobs-redis"),
    "dist_widget": str(dist.locate_file("flask_jobs/static/flask-jobs.js")),
    "dist_files": [str(f) for f in dist.files or []],
    "lua": script_source("claim"),
    "flask_jobs": flask_jobs.__file__,
    "flask": flask.__file__,
    "prefix": sys.prefix,
}, sys.stdout)
"""


def test_installed_wheel_serves_the_widget(dists: Dists, tmp_path: Path) -> None:
    import blinker
    import flask
    import redis

    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", venv)
    python = venv / "bin" / "python"
    site_packages = Path(run(python, "-I", "-c", "import sysconfig; print(sysconfig.get_path("
                             "'purelib'))", cwd=tmp_path).stdout.strip())
    assert site_packages.is_relative_to(venv), site_packages
    # The dependencies from where they are installed here, by directory (not by their own .pth).
    dep_dirs = sorted({str(Path(m.__file__).resolve().parent.parent) for m in (flask, redis, blinker)})
    (site_packages / "deps-of-the-test.pth").write_text("".join(f"{d}\n" for d in dep_dirs))

    # -I: no PYTHONPATH, no user site, no current directory on sys.path (the checkout's
    # flask_jobs must not be importable by accident).
    probe = run(python, "-I", "-c", "import flask\n"
                "try:\n import flask_jobs\nexcept ModuleNotFoundError:\n print('absent')",
                cwd=tmp_path)
    assert probe.stdout.strip() == "absent", "flask_jobs is importable before the wheel is installed"

    # The wheel alone, with this pip (the fresh venv has none) and no index.
    run(sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index",
        "--no-compile", "-q", dists.wheel)

    out = json.loads(run(python, "-I", "-c", SERVE_THE_WIDGET, cwd=tmp_path).stdout)
    assert Path(out["prefix"]).resolve() == venv.resolve()
    assert Path(out["flask_jobs"]).resolve().is_relative_to(site_packages.resolve()), out["flask_jobs"]
    assert str(Path(out["flask"]).resolve().parent.parent) in dep_dirs
    assert out["js_status"] == 200 and out["css_status"] == 200
    assert base64.b64decode(out["js"]) == (ROOT / "static" / "flask-jobs.js").read_bytes()
    assert base64.b64decode(out["css"]) == (ROOT / "static" / "flask-jobs.css").read_bytes()
    assert out["lua"].endswith((ROOT / "flask_jobs" / "scripts" / "claim.lua").read_text())
    # The metadata that answered is the wheel's, in the fresh venv (our editable install's
    # .dist-info is on sys.path too, through the .pth line, but after it).
    assert out["version"] == dists.wheel.name.split("-")[1]
    assert Path(out["dist_widget"]).resolve().is_relative_to(site_packages.resolve())
    assert "flask_jobs/static/flask-jobs.js" in out["dist_files"]
