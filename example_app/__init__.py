"""flask-jobs example app: "CSV import -> report".

Run it all with ``make demo`` (embedded Redis, a worker and the web server), or by hand::

    flask --app example_app jobs worker -P threads -c 4     # terminal 1
    flask --app example_app run                             # terminal 2

Configuration: ``JOBS_BROKER_URL`` from the environment (default ``embedded://``: a private Redis
in the instance folder), any other ``JOBS_*`` variable (JSON-decoded when it parses), and
``FLASK_*`` variables for the app's own settings (``FLASK_IMPORT_ROW_DELAY=0.01``).
"""

from __future__ import annotations

import json
import os
from typing import Any

from flask import Flask

from .tasks import jobs

__all__ = ["create_app", "jobs"]


def create_app(config: dict[str, Any] | None = None) -> Flask:
    """Build the app: defaults, then the environment, then ``config``."""
    app = Flask(__name__)
    app.config.from_mapping(
        JOBS_BROKER_URL="embedded://",
        MAX_CONTENT_LENGTH=2 * 1024 * 1024,  # uploads up to 2 MB
        UPLOAD_FOLDER=os.path.join(app.instance_path, "uploads"),
        # How slow the demo jobs are, so the bars visibly move (tests make them faster).
        IMPORT_ROW_DELAY=0.05,  # seconds per CSV row: 6 s for the 120-row sample
        REPORT_SECTION_DELAY=0.4,  # seconds per report section (20 sections, in parallel)
        INDEX_DOCUMENTS=600,  # the reindex job: 600 documents ...
        INDEX_DOC_DELAY=0.1,  # ... at 0.1 s each, a minute: time enough to press Cancel
    )
    for key, value in os.environ.items():
        if key.startswith("JOBS_") and key != "JOBS_TEST_REDIS_URL":
            try:
                app.config[key] = json.loads(value)
            except ValueError:
                app.config[key] = value
    app.config.from_prefixed_env()  # FLASK_UPLOAD_FOLDER, FLASK_IMPORT_ROW_DELAY, ...
    app.config.update(config or {})

    jobs.init_app(app)

    from .views import bp

    app.register_blueprint(bp)
    return app
