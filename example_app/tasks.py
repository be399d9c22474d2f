"""The example app's background jobs: a CSV import, a report built by a group, a long reindex.

Each job reports its progress with ``self.progress(current, total, status=...)``; the pages show
it with the bundled widget. Arguments are small references (a sample name, an upload id), never
the file itself: a message should stay small, and the worker reads the file where it lives.
"""

from __future__ import annotations

import csv
import io
import re
import time
from collections import Counter, defaultdict
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from flask import current_app

from flask_jobs import Jobs

jobs = Jobs()

#: The bundled CSV files, by name.
DATA_DIR = Path(__file__).parent / "static" / "samples"
SAMPLES = ("sales.csv", "broken.csv")
#: Columns every imported file must have (in any order; extra columns are ignored).
COLUMNS = ("date", "region", "product", "units", "unit_price")
_UPLOAD_NAME = re.compile(r"[0-9a-f]{32}\.csv")

#: The sections of the quarterly report, one small job each.
REPORT_SECTIONS = [
    "Executive summary", "Revenue by region", "Revenue by product", "Units by region",
    "Units by product", "Top customers", "Average order value", "Weekly trend",
    "Monthly trend", "North region", "South region", "East region", "West region",
    "Price changes", "Returns", "Stock levels", "Forecast", "Risks", "Next steps", "Appendix",
]


class CSVImportError(ValueError):
    """A file that cannot be imported; the message says where and why, for the page to show."""


def source_path(source: str) -> Path:
    """The file of a job's ``source``: ``sample:<name>`` or ``upload:<id>.csv``."""
    kind, _, name = source.partition(":")
    if kind == "sample" and name in SAMPLES:
        return DATA_DIR / name
    if kind == "upload" and _UPLOAD_NAME.fullmatch(name):
        return Path(current_app.config["UPLOAD_FOLDER"]) / name
    raise CSVImportError(f"Unknown source {source!r}.")


def _read_text(path: Path, delete: bool) -> str:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise CSVImportError("The uploaded file is gone; please upload it again.") from None
    finally:
        if delete:
            path.unlink(missing_ok=True)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise CSVImportError(
            f"Line {line}: the file is not UTF-8 text. Save it as 'CSV UTF-8' and upload it again."
        ) from None


def parse_rows(text: str) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """Split ``text`` into its header and its ``(line number, fields)`` rows; checks the header."""
    reader = csv.reader(io.StringIO(text))
    try:
        header = [h.strip().lower() for h in next(reader)]
    except StopIteration:
        raise CSVImportError("The file is empty.") from None
    except csv.Error as exc:
        raise CSVImportError(f"Line 1: {exc}.") from None
    missing = [c for c in COLUMNS if c not in header]
    if missing:
        raise CSVImportError(
            f"Line 1: the header has no {', '.join(missing)} column"
            f"{'s' if len(missing) > 1 else ''}; expected {', '.join(COLUMNS)}."
        )
    rows: list[tuple[int, list[str]]] = []
    try:
        for fields in reader:
            if any(f.strip() for f in fields):
                rows.append((reader.line_num, fields))
    except csv.Error as exc:
        raise CSVImportError(f"Line {reader.line_num}: {exc}.") from None
    if not rows:
        raise CSVImportError("The file has a header but no rows.")
    return header, rows


def parse_sale(header: list[str], line: int, fields: list[str]) -> dict[str, Any]:
    """One sale from one row, or a :class:`CSVImportError` naming the line and the problem."""
    if len(fields) != len(header):
        raise CSVImportError(
            f"Line {line}: expected {len(header)} fields ({', '.join(header)}) but found "
            f"{len(fields)}: {','.join(fields)!r}."
        )
    row = dict(zip(header, (f.strip() for f in fields), strict=True))
    try:
        units = int(row["units"])
        price = Decimal(row["unit_price"])
    except (ValueError, InvalidOperation):
        raise CSVImportError(
            f"Line {line}: units must be a whole number and unit_price a number, not "
            f"{row['units']!r} and {row['unit_price']!r}."
        ) from None
    if units < 0 or price < 0:
        raise CSVImportError(f"Line {line}: units and unit_price cannot be negative.")
    return {"date": row["date"], "region": row["region"] or "(none)",
            "product": row["product"] or "(none)", "units": units, "revenue": units * price}


@jobs.task(bind=True)
def import_csv(self, source: str, filename: str | None = None,
               row_delay: float = 0.05) -> dict[str, Any]:
    """Import a sales CSV row by row (slowly, like a real import that writes to a database).

    Reports ``Imported row i of n``; returns totals and a one-line summary for the page.
    Raises :class:`CSVImportError` for a malformed file, naming the line.
    """
    path = source_path(source)
    name = filename or path.name
    self.progress(0, None, status=f"Reading {name}")
    header, rows = parse_rows(_read_text(path, delete=source.startswith("upload:")))
    n = len(rows)
    revenue: defaultdict[str, Decimal] = defaultdict(Decimal)
    products: Counter[str] = Counter()
    units = 0
    for i, (line, fields) in enumerate(rows, 1):
        sale = parse_sale(header, line, fields)
        revenue[sale["region"]] += sale["revenue"]
        products[sale["product"]] += sale["units"]
        units += sale["units"]
        self.progress(i, n, status=f"Imported row {i} of {n}")
        if row_delay:
            time.sleep(row_delay)
    total = sum(revenue.values(), Decimal())
    best_region = max(revenue, key=lambda r: revenue[r])
    best_product = products.most_common(1)[0][0]
    return {
        "file": name,
        "rows": n,
        "units": units,
        "revenue": f"{total:.2f}",
        "revenue_by_region": {r: f"{v:.2f}" for r, v in sorted(revenue.items())},
        "top_product": best_product,
        "summary": (f"Imported {n} rows from {name}: {units:,} units, ${total:,.2f} revenue. "
                    f"Best region: {best_region}; best-selling product: {best_product}."),
    }


@jobs.task
def build_section(index: int, title: str, delay: float = 0.3) -> dict[str, Any]:
    """Build one section of the quarterly report (a stand-in for a query and a chart)."""
    time.sleep(delay * (1 + index % 3) / 2)
    return {"index": index, "title": title, "pages": 1 + index % 3}


@jobs.task
def publish_report(sections: list[dict[str, Any]]) -> dict[str, Any]:
    """Assemble the built sections into one document: the body of a ``chord`` whose header
    builds them, so it runs once, with every section, after the last one is built."""
    pages = sum(s["pages"] for s in sections)
    return {"sections": len(sections), "pages": pages,
            "summary": f"Published the quarterly report: {len(sections)} sections, "
                       f"{pages} pages."}


@jobs.task(bind=True)
def rebuild_index(self, documents: int = 600, delay: float = 0.1) -> dict[str, Any]:
    """Rebuild the search index: a long job (a minute by default), made to be cancelled."""
    for i in range(1, documents + 1):
        time.sleep(delay)
        self.progress(i, documents, status=f"Indexed {i} of {documents} documents")
    return {"documents": documents, "summary": f"Search index rebuilt: {documents} documents."}
