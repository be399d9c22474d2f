"""Sphinx configuration for the flask-jobs documentation (``make docs``)."""

import os

from pallets_sphinx_themes import get_version

# Project --------------------------------------------------------------

project = "flask-jobs"
#: The distribution's name on PyPI and in the installed metadata. The product is flask-jobs,
#: but ``flask-jobs`` on PyPI is an unrelated project, so we publish as flask-jobs-redis.
dist_name = "flask-jobs-redis"
copyright = "2024 flask-jobs contributors"
author = "flask-jobs contributors"
release, version = get_version(dist_name)

# General --------------------------------------------------------------

default_role = "code"
extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.viewcode",
    "pallets_sphinx_themes",
]
# No intersphinx: the docs must build offline, and with -W a failed inventory download is an
# error. Links to Python and Flask docs are written out where they matter.
autodoc_member_order = "bysource"
autodoc_typehints = "none"
autodoc_preserve_defaults = True
exclude_patterns = ["_build"]
nitpicky = False

# HTML -----------------------------------------------------------------

html_theme = "flask"
html_theme_options = {"index_sidebar_logo": False}
html_sidebars = {
    "index": ["localtoc.html", "searchbox.html"],
    "**": ["localtoc.html", "relations.html", "searchbox.html"],
}
singlehtml_sidebars = {"index": ["localtoc.html"]}
html_title = f"flask-jobs Documentation ({version})"
html_show_sourcelink = False

# The theme's version banner: its describe_version.js fetches
# https://pypi.org/simple/<name>/ on page load and, when the documented version is not the
# newest release there, prepends "This is an old version. The current version is ...". The
# theme takes <name> from ``project``, which would ask about the unrelated ``flask-jobs``
# (1.0.14 > 0.1: every page would call our docs old). So the theme's own script tag is
# turned off and the same script is added here with the PyPI name, under the theme's rule
# for when to add it (always, except Read the Docs' stable and pull-request builds).
version_banner = False
_rtd_version = os.environ.get("READTHEDOCS_VERSION")
if _rtd_version is None or (
    _rtd_version != "stable" and os.environ.get("READTHEDOCS_VERSION_TYPE") in {"branch", "tag"}
):
    html_js_files = [
        ("describe_version.js", {"data-project": dist_name, "data-version": version}),
    ]


# Checks ---------------------------------------------------------------


def check_config_documented(app, env):
    """Warn (an error under -W) when a key of ``flask_jobs.config.DEFAULTS`` has no
    ``.. data::`` entry in configuration.rst, or an entry names a key that doesn't exist."""
    from sphinx.util import logging

    from flask_jobs.config import DEFAULTS

    log = logging.getLogger("flask_jobs.docs")
    documented = {
        name: docname
        for name, obj in env.get_domain("py").objects.items()
        if obj.objtype == "data" and name.startswith("JOBS_")
        for docname in [obj.docname]
    }
    for key in sorted(set(DEFAULTS) - set(documented)):
        log.warning("config key %s is not documented in configuration.rst", key)
    for key in sorted(set(documented) - set(DEFAULTS)):
        log.warning("config key %s is documented but not in DEFAULTS", key,
                    location=documented[key])


def setup(app):
    app.connect("env-check-consistency", check_config_documented)
