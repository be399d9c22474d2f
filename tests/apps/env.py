"""What the test apps share: their configuration from ``JOBS_*`` environment variables."""

from __future__ import annotations

import json
import os

from flask import Flask


def app_from_env(name: str, config: dict | None = None) -> Flask:
    """A testing Flask app named ``name``: ``JOBS_*`` environment variables (JSON-decoded when
    they parse) then ``config``. Worker and beat processes get their settings this way."""
    app = Flask(name)
    app.config["TESTING"] = True
    for key, value in os.environ.items():
        if key.startswith("JOBS_") and key != "JOBS_TEST_REDIS_URL":
            try:
                app.config[key] = json.loads(value)
            except ValueError:
                app.config[key] = value
    app.config.update(config or {})
    return app
