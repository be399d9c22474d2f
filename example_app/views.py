"""The pages and the routes that start jobs.

Every ``POST`` returns ``jobs.accepted(result)``: ``202 Accepted``, a ``Location`` header with the
status URL, and ``{id, status_url, events_url}``. The page's script (the bundled widget's
``FlaskJobs.start(form)``) follows it. A browser without JavaScript that posts the form is
redirected to the job's own page instead, where the bar is a plain ``data-flask-jobs-status-url``
element.
"""

from __future__ import annotations

import os
import uuid
from typing import Any

from flask import (
    Blueprint,
    abort,
    current_app,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)
from werkzeug.exceptions import RequestEntityTooLarge

from flask_jobs import chord, group

from .tasks import (
    REPORT_SECTIONS,
    SAMPLES,
    build_section,
    import_csv,
    jobs,
    publish_report,
    rebuild_index,
)

bp = Blueprint("main", __name__)

#: What each job is called on its page, by task name.
TITLES = {
    import_csv.name: "CSV import",
    rebuild_index.name: "Search index rebuild",
    build_section.name: "Report section",
    publish_report.name: "Published report",
}


def wants_html() -> bool:
    """Whether the client is a browser posting a plain form (no script), not ``fetch``."""
    best = request.accept_mimetypes.best_match(["application/json", "text/html"])
    return best == "text/html"


def started(result: Any) -> Any:
    """The response for a job just started: 202 for scripts, a redirect to its page for forms."""
    if wants_html():
        return redirect(url_for("main.job", job_id=result.id), 303)
    return jobs.accepted(result)


def bad_request(message: str, status: int = 400) -> Any:
    """An error the page can show: JSON ``{error}`` for scripts, the index page for forms."""
    if wants_html():
        return render_index(message), status
    return jsonify(error=message), status


@bp.errorhandler(RequestEntityTooLarge)
def too_large(exc: RequestEntityTooLarge) -> Any:
    limit = current_app.config["MAX_CONTENT_LENGTH"] // (1024 * 1024)
    return bad_request(f"The file is too large: the limit is {limit} MB.", 413)


def render_index(error: str | None = None) -> str:
    cfg = current_app.config
    return render_template("index.html", error=error, sections=len(REPORT_SECTIONS),
                           index_seconds=round(cfg["INDEX_DOCUMENTS"] * cfg["INDEX_DOC_DELAY"]))


@bp.get("/")
def index() -> Any:
    return render_index()


@bp.post("/import")
def start_import() -> Any:
    """Import the bundled sample named by ``sample``, or the uploaded ``file`` (``source=upload``)."""
    delay = float(current_app.config["IMPORT_ROW_DELAY"])
    if request.form.get("source") == "upload":
        upload = request.files.get("file")
        if upload is None or not upload.filename:
            return bad_request("Choose a CSV file to upload.")
        filename = os.path.basename(upload.filename)
        if not filename.lower().endswith(".csv"):
            return bad_request(f"{filename} is not a .csv file.")
        folder = current_app.config["UPLOAD_FOLDER"]
        os.makedirs(folder, exist_ok=True)
        stored = f"{uuid.uuid4().hex}.csv"
        upload.save(os.path.join(folder, stored))
        # The worker reads the file and deletes it; the message only carries its name.
        result = import_csv.delay(f"upload:{stored}", filename, delay)
    else:
        sample = request.form.get("sample", "sales.csv")
        if sample not in SAMPLES:
            return bad_request(f"There is no sample called {sample!r}.")
        result = import_csv.delay(f"sample:{sample}", sample, delay)
    return started(result)


@bp.post("/report")
def start_report() -> Any:
    """Build the quarterly report: one small job per section, run in parallel as a group."""
    delay = float(current_app.config["REPORT_SECTION_DELAY"])
    sections = group(build_section.s(i, title, delay) for i, title in enumerate(REPORT_SECTIONS))
    return started(sections.apply_async())


@bp.post("/publish")
def start_publish() -> Any:
    """Build every section, then publish them as one document: a ``chord``. Its status URL
    (the body's) counts the sections built, then the publishing step."""
    delay = float(current_app.config["REPORT_SECTION_DELAY"])
    sections = [build_section.s(i, title, delay) for i, title in enumerate(REPORT_SECTIONS)]
    return started(chord(sections)(publish_report.s()))


@bp.post("/reindex")
def start_reindex() -> Any:
    """Rebuild the search index: a long job, to try the Cancel button on."""
    cfg = current_app.config
    return started(rebuild_index.delay(int(cfg["INDEX_DOCUMENTS"]), float(cfg["INDEX_DOC_DELAY"])))


@bp.get("/job/<job_id>")
def job(job_id: str) -> Any:
    """A job's own page: a progress bar wired by ``data-flask-jobs-status-url`` alone."""
    result = jobs.AsyncResult(job_id)
    group = None
    if result.exists():
        title, cancel = TITLES.get(result.name or "", "Job"), result.name == rebuild_index.name
        state, info = result.state, result.info
        percent = (100 if state == "SUCCESS" else round(100 * info["current"] / info["total"])
                   if isinstance(info, dict) and info.get("total") else 0)
    elif (group := jobs.GroupResult.restore(job_id)) is not None:
        title, cancel = "Quarterly report", False
        done = group.completed_count()
        state = "SUCCESS" if group.successful() else "PROGRESS" if done else "PENDING"
        percent = round(100 * done / max(1, len(group.results)))
    else:
        abort(404)
    # (the state and percent are what a browser without JavaScript shows; it reloads the page)
    return render_template("job.html", job_id=job_id, title=title, cancel=cancel,
                           sse=request.args.get("sse") != "0", state=state, percent=percent,
                           final=state in ("SUCCESS", "FAILURE", "REVOKED"))
