"""Run every workload on flask-jobs and the anchor libraries; print one Markdown table.

    python -m bench.run [--only celery,rq] [--quick] [--json out.json]

A private ``redis-server`` is started for the run (``flask_jobs.embedded.RedisServer`` if
importable, else ``bench/_redis.py``). Each (workload, library) pair runs in its own
subprocess (``python -m bench.harness ...``) with a time limit; workers are subprocesses
of that in their own process groups. Workloads run row by row (all libraries on one
workload, then the next) so libraries measured for the same row see similar machine noise.
Before the workloads it measures what the machine does with no job queue at all (one round
trip, and the floors of ``bench/floors.py``), printed under the table next to flask-jobs'
figures. Results go to ``bench/results/latest.json`` (and ``--json PATH`` if given).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import platform
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

from bench import floors as floors_mod
from bench._redis import start_private_redis
from bench.harness import LOG_DIR, RESULT_PREFIX

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = REPO_ROOT / "bench" / "results"

ANCHORS = {
    "celery": "bench.anchors.celery_bench",
    "rq": "bench.anchors.rq_bench",
    "huey": "bench.anchors.huey_bench",
    "dramatiq": "bench.anchors.dramatiq_bench",
}
FLASK_JOBS = "flask-jobs"
FLASK_JOBS_MODULE = "bench.flask_jobs_bench"

# workload -> (params, time limit in seconds for its subprocess)
FULL = {
    "enqueue": ({"n": 5_000}, 120),
    "bulk": ({"n": 20_000}, 120),
    "drain_solo": ({"n": 20_000}, 240),
    "drain_multi": ({"n": 20_000}, 420),
    "latency": ({"n": 300}, 90),
    "roundtrip": ({"n": 300}, 90),
    "progress": ({"n": 20_000}, 150),
    "mixed": ({"n": 2}, 90),
    "group_10k": ({"n": 10_000}, 180),
    "chord_1k": ({"n": 1_000, "reps": 3, "timeout": 40}, 150),
    "chain_100": ({"n": 100, "reps": 5, "timeout": 20}, 120),
}
QUICK = {
    "enqueue": ({"n": 1_000}, 60),
    "bulk": ({"n": 2_000}, 60),
    "drain_solo": ({"n": 2_000}, 90),
    "drain_multi": ({"n": 2_000, "max_configs": 1}, 90),
    "latency": ({"n": 50}, 60),
    "roundtrip": ({"n": 50}, 60),
    "progress": ({"n": 2_000}, 60),
    "mixed": ({"n": 2}, 60),
    "group_10k": ({"n": 500, "timeout": 30}, 60),
    "chord_1k": ({"n": 100, "reps": 1, "timeout": 30}, 60),
    "chain_100": ({"n": 20, "reps": 3, "timeout": 15}, 60),
}
# canvas workloads run on the 2-core setting that won the drain_multi row of the same run
USES_MULTI_CONFIG = {"group_10k", "chord_1k"}

HIGHER, LOWER = "higher", "lower"
# (row label, workload, field in the result, better direction, format); "{n}" in a label is
# the workload's N in this run (10k, 500...)
ROWS = [
    ("Enqueue, one call at a time (calls/s)", "enqueue", "value", HIGHER, "{:,.0f}"),
    ("Bulk enqueue (msgs/s)", "bulk", "value", HIGHER, "{:,.0f}"),
    ("Drain, solo worker (tasks/s)", "drain_solo", "value", HIGHER, "{:,.0f}"),
    ("Drain, best 2-core setting (tasks/s)", "drain_multi", "value", HIGHER, "{:,.0f}"),
    ("Latency enqueue->start p50 (ms)", "latency", "p50_ms", LOWER, "{:.2f}"),
    ("Latency enqueue->start p99 (ms)", "latency", "p99_ms", LOWER, "{:.2f}"),
    ("Round trip delay()->get() p50 (ms)", "roundtrip", "p50_ms", LOWER, "{:.2f}"),
    ("Round trip delay()->get() p99 (ms)", "roundtrip", "p99_ms", LOWER, "{:.2f}"),
    ("Progress updates in a task (updates/s)", "progress", "value", HIGHER, "{:,.0f}"),
    ("Solo worker RSS after drain (MB)", "drain_solo", "rss_mb", LOWER, "{:.1f}"),
    ("Mixed workload: short tasks done after (s)", "mixed", "value", LOWER, "{:.2f}"),
    ("Group of {n} no-ops, send->all results (tasks/s)", "group_10k", "value", HIGHER,
     "{:,.0f}"),
    ("Chord of {n} + sum body, send->sum (tasks/s)", "chord_1k", "value", HIGHER, "{:,.0f}"),
    ("Chain of {n} steps, per step (ms)", "chain_100", "ms_per_step", LOWER, "{:.2f}"),
]
# rows whose cell also names the worker setting used
SHOW_CONFIG = {"drain_multi", "mixed", "group_10k", "chord_1k"}
# rows whose cell also gives the end-to-end seconds
SHOW_ELAPSED = {"group_10k", "chord_1k", "chain_100"}
# rows whose cell is also given as a multiple of one synchronous Redis round trip
PER_ROUND_TRIP = {"chain_100"}
#: the target tracked for a chain step: its overhead under this many Redis round trips
CHAIN_STEP_TARGET = 2.0
# drain rows and the floor (bench/floors.py) each cell is also given as a share of
FLOOR_OF = {"drain_solo": "drain_solo", "drain_multi": "drain_parallel"}


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------------------
# Process hygiene: every process we start carries BENCH_RUN_ID=<token> in its environment.
# ----------------------------------------------------------------------------------------


def sweep(token: str) -> int:
    """SIGKILL every process (except us) whose environment holds this run's token."""
    needle = f"BENCH_RUN_ID={token}".encode()
    killed = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                env = f.read().split(b"\0")
        except OSError:
            continue
        if needle in env:
            try:
                os.kill(int(entry), signal.SIGKILL)
                killed += 1
            except ProcessLookupError:
                pass
    return killed


def run_workload(
    module: str, url: str, workload: str, params: dict, limit: float, token: str
) -> dict:
    env = dict(os.environ, BENCH_RUN_ID=token, BENCH_REDIS_URL=url, PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p
    )
    argv = [
        sys.executable,
        "-m",
        "bench.harness",
        "--adapter",
        module,
        "--redis-url",
        url,
        "--workload",
        workload,
        "--params",
        json.dumps(params),
    ]
    proc = subprocess.Popen(
        argv,
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=limit)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        sweep(token)
        return {"ok": False, "error": f"timeout after {limit:.0f}s"}
    finally:
        sweep(token)  # workers are in their own sessions: catch any left behind
    for line in reversed(out.splitlines()):
        if line.startswith(RESULT_PREFIX):
            return json.loads(line[len(RESULT_PREFIX) :])
    tail = " | ".join(err.strip().splitlines()[-2:])
    return {"ok": False, "error": f"exit {proc.returncode}: {tail}"[:300]}


def flask_jobs_available(module: str) -> tuple[bool, str]:
    if importlib.util.find_spec(module) is None:
        return False, f"{module} not present yet"
    probe = subprocess.run(
        [sys.executable, "-c", f"import {module} as m; m.ADAPTER"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        env=dict(os.environ, BENCH_REDIS_URL="redis://127.0.0.1:1/0"),
    )
    if probe.returncode != 0:
        last = (probe.stderr.strip().splitlines() or ["?"])[-1]
        return False, f"{module} not importable: {last}"
    return True, ""


# ----------------------------------------------------------------------------------------
# Report
# ----------------------------------------------------------------------------------------


def cell_value(entry: dict | None, fld: str) -> float | None:
    if not entry or not entry.get("ok"):
        return None
    v = entry["result"].get(fld)
    return v if isinstance(v, (int, float)) and math.isfinite(v) else None


def seconds_text(s: float) -> str:
    """1.234 -> '1.23 s', 0.0512 -> '51.2 ms' (the end-to-end time in a canvas cell)."""
    return f"{s:.2f} s" if s >= 1 else f"{s * 1000:.3g} ms"


def cell_text(entry: dict | None, fld: str, fmt: str, workload: str) -> str:
    if entry is None:
        return "-"
    if not entry.get("ok"):
        if entry.get("na"):
            return "n/a"
        return "error: " + entry.get("error", "?")[:70].replace("|", "/").replace("\n", " ")
    v = cell_value(entry, fld)
    if v is None:
        return "-"
    text = fmt.format(v)
    extra = []
    if workload in SHOW_ELAPSED and isinstance(entry["result"].get("elapsed_s"), (int, float)):
        extra.append(seconds_text(entry["result"]["elapsed_s"]))
    if workload in SHOW_CONFIG:
        extra.append(str(entry["result"].get("config", "?")))
    if extra:
        text += f" ({', '.join(extra)})"
    if fld == "rss_mb" and entry["result"].get("rss_processes", 1) > 1:
        text += f" ({entry['result']['rss_processes']} procs)"
    return text


def floor_share(entry: dict | None, workload: str, fld: str, floors: dict) -> str:
    """`` = NN% of floor`` for a drain cell (see FLOOR_OF), else ''."""
    floor = floors.get(FLOOR_OF.get(workload, ""), {}).get("value") if fld == "value" else None
    v = cell_value(entry, fld)
    if not floor or v is None:
        return ""
    return f" = {v / floor:.0%} of floor"


def round_trip_ms(reference: dict | None) -> float | None:
    """One synchronous round trip (redis-py ``ping()``, see round_trip_reference) in ms."""
    rate = (reference or {}).get("client")
    return 1000 / rate if rate else None


def round_trip_share(entry: dict | None, workload: str, fld: str,
                     reference: dict | None) -> str:
    """`` = N.Nx RTT`` for a cell of PER_ROUND_TRIP, else ''."""
    rtt = round_trip_ms(reference) if workload in PER_ROUND_TRIP else None
    v = cell_value(entry, fld)
    if not rtt or v is None:
        return ""
    return f" = {v / rtt:.1f}x RTT"


def short_n(n) -> str:
    """10000 -> '10k', 500 -> '500' (the N in a row's label)."""
    if not isinstance(n, int):
        return "N"
    return f"{n // 1000}k" if n >= 1000 and n % 1000 == 0 else f"{n:,}"


def build_table(results: dict, libs: list[str], anchors: list[str], fj: str | None,
                floors: dict | None = None, reference: dict | None = None,
                plan: dict | None = None) -> tuple:
    header = ["Workload", *libs, "ratio vs best anchor"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    rows_json = []
    floors = floors or {}
    for label, workload, fld, better, fmt in ROWS:
        if plan is not None and workload not in plan:
            continue  # not selected (--workloads)
        label = label.format(n=short_n(((plan or {}).get(workload) or ({}, 0))[0].get("n")))
        cells = [cell_text(results[lib].get(workload), fld, fmt, workload)
                 + floor_share(results[lib].get(workload), workload, fld, floors)
                 + round_trip_share(results[lib].get(workload), workload, fld, reference)
                 for lib in libs]
        anchor_vals = {a: cell_value(results[a].get(workload), fld) for a in anchors}
        anchor_vals = {a: v for a, v in anchor_vals.items() if v is not None}
        ratio_text, ratio = "n/a", None
        if anchor_vals:
            pick = max if better == HIGHER else min
            best = pick(anchor_vals, key=anchor_vals.get)
            fj_val = cell_value(results[fj].get(workload), fld) if fj else None
            if fj_val is not None and fj_val > 0 and anchor_vals[best] > 0:
                ratio = (
                    fj_val / anchor_vals[best] if better == HIGHER else anchor_vals[best] / fj_val
                )
                ratio_text = f"{ratio:.2f}x vs {best}"
            else:
                ratio_text = f"n/a (best: {best})"
        lines.append("| " + " | ".join([label, *cells, ratio_text]) + " |")
        rows_json.append(
            {
                "row": label,
                "workload": workload,
                "field": fld,
                "better": better,
                "values": {lib: cell_value(results[lib].get(workload), fld) for lib in libs},
                "ratio_vs_best_anchor": ratio,
            }
        )
    return "\n".join(lines), rows_json


def _redis_version(url: str) -> str:
    import redis

    try:
        return str(redis.Redis.from_url(url).info("server")["redis_version"])
    except Exception as exc:  # informational only
        return f"? ({type(exc).__name__})"


def round_trip_reference(url: str, n: int) -> dict:
    """What one synchronous round trip costs here: the ceiling of any one-call-at-a-time enqueue.

    ``client``: redis-py's ``Redis.ping()`` in a loop (the path most libraries use);
    ``connection``: PING on one redis-py connection, pre-packed, without the client and pool.
    Best of three runs of n each, in calls/s.
    """
    import redis

    client = redis.Redis.from_url(url)
    conn = client.connection_pool.get_connection()
    packed = conn.pack_command("PING")

    def raw() -> None:
        conn.send_packed_command(packed)
        conn.read_response()

    out = {}
    for name, call in (("client", client.ping), ("connection", raw)):
        for _ in range(200):
            call()
        best = 0.0
        for _ in range(3):
            t0 = time.perf_counter()
            for _ in range(n):
                call()
            best = max(best, n / (time.perf_counter() - t0))
        out[name] = best
    client.connection_pool.release(conn)
    return out


def _best_anchor(results: dict, anchors: list[str], workload: str, fld: str, pick) -> tuple:
    """(anchor, value) of the best anchor on one field, or (None, None) if none has a value."""
    vals = {a: cell_value(results[a].get(workload), fld) for a in anchors}
    vals = {a: v for a, v in vals.items() if v is not None}
    if not vals:
        return None, None
    best = pick(vals, key=vals.get)
    return best, vals[best]


def floor_lines(floors: dict, results: dict, anchors: list[str], fj: str | None,
                reference: dict | None = None) -> list[str]:
    """The "Floors on this machine" bullets: each floor with flask-jobs' (and the best
    anchor's) figure set against it. A floor that was not measured gets no line (the run's
    notes say why); a library without a figure is left out of its line. The chain row's
    time per step is set against one synchronous Redis round trip (``reference``)."""

    def ok(name: str) -> dict | None:
        f = floors.get(name)
        return f if isinstance(f, dict) and "error" not in f else None

    def fj_value(workload: str, fld: str) -> float | None:
        return cell_value(results[fj].get(workload), fld) if fj else None

    lines = []
    for name, workload, what in (
        ("drain_solo", "drain_solo", "solo drain: the task body alone (one INCR per task, in a loop)"),
        ("drain_parallel", "drain_multi", "2-core drain: {p} such loops in parallel"),
    ):
        f = ok(name)
        if not f or not f.get("value"):
            continue
        text = what.format(p=f.get("processes", "?")) + f" {f['value']:,.0f}/s"
        mine = fj_value(workload, "value")
        if mine is not None:
            text += f"; flask-jobs {mine:,.0f}/s = {mine / f['value']:.0%} of it"
        best, val = _best_anchor(results, anchors, workload, "value", max)
        if best:
            text += f"; best anchor ({best}) {val:,.0f}/s = {val / f['value']:.0%}"
        lines.append(text)
    f = ok("latency")
    if f:
        text = f"latency: bare RPUSH->BLPOP wake-up p50/p99 {f['p50_ms']:.2f}/{f['p99_ms']:.2f} ms"
        best, _ = _best_anchor(results, anchors, "latency", "p50_ms", min)
        for who, lib in (("flask-jobs", fj), (f"best anchor ({best})", best)):
            p50 = cell_value(results[lib].get("latency"), "p50_ms") if lib else None
            p99 = cell_value(results[lib].get("latency"), "p99_ms") if lib else None
            if p50 is not None and p99 is not None:
                text += (
                    f"; {who} {p50:.2f}/{p99:.2f} ms"
                    f" = {p50 - f['p50_ms']:+.2f}/{p99 - f['p99_ms']:+.2f} ms over it"
                )
        lines.append(text)
    f = ok("rss")
    if f and "flask_redis" in f:
        text = f"RSS: `import flask, redis` {f['flask_redis']:.1f} MB"
        if "redis" in f:
            text += f" (`import redis` {f['redis']:.1f} MB, bare `python` {f.get('python', 0):.1f} MB)"
        mine = fj_value("drain_solo", "rss_mb")
        if mine is not None:
            text += f"; flask-jobs solo worker {mine:.1f} MB = {mine - f['flask_redis']:+.1f} MB"
        best, val = _best_anchor(results, anchors, "drain_solo", "rss_mb", min)
        if best and "redis" in f:
            text += (
                f"; lightest anchor ({best}) {val:.1f} MB = {val - f['redis']:+.1f} MB over `import redis`"
            )
        lines.append(text)
    rtt = round_trip_ms(reference)
    if rtt:
        text = (f"chain step: one synchronous Redis round trip (RTT: redis-py `ping()`, above)"
                f" {rtt:.3f} ms; target: a step under {CHAIN_STEP_TARGET:g}x it")
        mine = fj_value("chain_100", "ms_per_step")
        if mine is not None:
            verdict = "met" if mine / rtt < CHAIN_STEP_TARGET else "not met"
            text += f"; flask-jobs {mine:.3f} ms/step = {mine / rtt:.1f}x it ({verdict})"
        best, val = _best_anchor(results, anchors, "chain_100", "ms_per_step", min)
        if best:
            text += f"; best anchor ({best}) {val:.3f} ms/step = {val / rtt:.1f}x"
        if mine is not None or best:
            lines.append(text)
    return lines


def _raise_interrupt(*_) -> None:
    raise KeyboardInterrupt


def compile_sources() -> None:
    """Byte-compile flask-jobs and the benchmark's own modules before any worker starts.

    pip byte-compiles what it installs from a wheel, so every anchor (and flask-jobs for a
    user) imports ready ``.pyc`` files; an editable checkout has none, and with
    ``PYTHONDONTWRITEBYTECODE`` set none is ever written, so every worker would compile
    flask-jobs from source at start-up. The compiler's garbage stays in the worker's heap:
    about 1.4 MB more RSS in the solo-worker row than the same code installed from a wheel.
    """
    import compileall

    for package in ("flask_jobs", "bench"):
        spec = importlib.util.find_spec(package)
        if spec is not None and spec.submodule_search_locations:
            for folder in spec.submodule_search_locations:
                compileall.compile_dir(folder, quiet=1)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--only",
        help="comma-separated anchors to run (celery,rq,huey,dramatiq);"
        " flask-jobs always runs when bench/flask_jobs_bench.py is importable",
    )
    ap.add_argument("--quick", action="store_true", help="small N: a fast smoke run")
    ap.add_argument(
        "--workloads",
        help="comma-separated workloads to run (default: all); group_10k and chord_1k use the"
        " best setting of drain_multi when it is run too, else each library's first one",
    )
    ap.add_argument("--json", help="also write the JSON results to this path")
    ap.add_argument("--no-flask-jobs", action="store_true", help="run the anchors only")
    ap.add_argument(
        "--flask-jobs-module",
        default=FLASK_JOBS_MODULE,
        help="module with the flask-jobs ADAPTER (default: %(default)s)",
    )
    args = ap.parse_args(argv)

    anchors = list(ANCHORS)
    if args.only:
        wanted = [x.strip() for x in args.only.split(",") if x.strip()]
        unknown = [x for x in wanted if x not in ANCHORS and x != FLASK_JOBS]
        if unknown:
            ap.error(f"unknown library: {', '.join(unknown)} (choose from {', '.join(ANCHORS)})")
        anchors = [a for a in anchors if a in wanted]
    modules = {a: ANCHORS[a] for a in anchors}
    notes = []
    fj = None
    if not args.no_flask_jobs:
        ok, why = flask_jobs_available(args.flask_jobs_module)
        if ok:
            fj = FLASK_JOBS
            modules[fj] = args.flask_jobs_module
        else:
            notes.append(f"flask-jobs column skipped: {why}")
    libs = list(modules)
    plan = QUICK if args.quick else FULL
    if args.workloads:
        chosen = [w.strip() for w in args.workloads.split(",") if w.strip()]
        unknown = [w for w in chosen if w not in plan]
        if unknown:
            ap.error(f"unknown workload: {', '.join(unknown)} (choose from {', '.join(plan)})")
        plan = {w: p for w, p in plan.items() if w in chosen}

    compile_sources()
    for old in LOG_DIR.glob("*.log"):  # worker logs of this run only
        old.unlink()
    token = uuid.uuid4().hex
    # Ctrl-C / SIGTERM must still run the cleanup below.
    signal.signal(signal.SIGTERM, _raise_interrupt)
    started = time.perf_counter()
    server, redis_note = start_private_redis()
    redis_version = _redis_version(server.url)
    redis_note += f", Redis {redis_version}"
    log(f"private redis: {server.url} ({redis_note})")
    results: dict[str, dict] = {lib: {} for lib in libs}
    info: dict[str, dict] = {}
    reference: dict[str, float] = {}
    floors: dict[str, dict] = {}
    try:
        for lib in libs:
            entry = run_workload(modules[lib], server.url, "info", {}, 60, token)
            info[lib] = entry.get("result", {"error": entry.get("error")})
        reference = round_trip_reference(server.url, 2_000 if args.quick else 10_000)
        log(f"one round trip: {json.dumps(reference)}")
        try:
            floors = floors_mod.measure_floors(
                server.url, quick=args.quick, extra_env={"BENCH_RUN_ID": token}, log=log
            )
        except Exception as exc:  # the floors are context: never worth losing the run for
            floors = {"error": f"{type(exc).__name__}: {exc}"[:300]}
            log(f"floors failed: {floors['error']}")
        finally:
            sweep(token)  # a child left behind must not compete with the workloads
        if "error" in floors:
            failed = {"all": floors["error"]}
        else:
            failed = {k: v["error"] for k, v in floors.items() if "error" in v}
        for name, error in failed.items():
            notes.append(f"floor {name} not measured: {error}")
        for workload, (params, limit) in plan.items():
            for lib in libs:
                t0 = time.perf_counter()
                lib_params = dict(params)
                multi = results[lib].get("drain_multi") or {}
                if workload in USES_MULTI_CONFIG and multi.get("ok"):
                    lib_params["config"] = multi["result"]["config"]
                entry = run_workload(modules[lib], server.url, workload, lib_params, limit, token)
                results[lib][workload] = entry
                shown = entry["result"] if entry.get("ok") else entry.get("error")
                took = time.perf_counter() - t0
                log(f"[{lib:>10}] {workload:<11} {took:6.1f}s  {json.dumps(shown)[:160]}")
    except KeyboardInterrupt:
        notes.append("run interrupted")
        log("interrupted: cleaning up")
    finally:
        sweep(token)
        server.stop()

    table, rows_json = build_table(results, libs, anchors, fj,
                                   floors if "error" not in floors else {}, reference, plan)
    wall = time.perf_counter() - started
    versions = {lib: info.get(lib, {}).get("versions", {}) for lib in libs}
    print()
    kind = "quick" if args.quick else "full"
    print(f"## Benchmark ({kind} run, {os.cpu_count()} cores, {wall:.0f}s wall)")
    print()
    print(table)
    print()
    print(
        "Ratio: flask-jobs / best anchor for throughput rows, best anchor / flask-jobs for"
        " latency and memory rows; > 1 means flask-jobs is better."
    )
    if reference:
        enqueue = cell_value(results.get(fj, {}).get("enqueue"), "value") if fj else None
        share = f"; flask-jobs enqueue = {enqueue / reference['client']:.0%} of the first" if (
            enqueue) else ""
        print(f"- one synchronous round trip here: redis-py `ping()` {reference['client']:,.0f}/s,"
              f" a bare redis-py connection {reference['connection']:,.0f}/s{share}")
    for lib in libs:
        i = info.get(lib, {})
        v = ", ".join(f"{k} {ver}" for k, ver in i.get("versions", {}).items())
        solo = results[lib].get("drain_solo", {}).get("result", {}).get("config", i.get("solo"))
        print(f"- {lib}: {v}; solo worker: `{solo}`; bulk: {i.get('bulk_api', '?')}")
    for note in notes:
        print(f"- note: {note}")
    for workload in plan:
        for lib in libs:
            entry = results[lib].get(workload) or {}
            if entry.get("na"):
                print(f"- n/a: {lib} {workload}: {entry.get('error', '?')}")
    lines = floor_lines(floors, results, anchors, fj, reference)
    if lines:
        print()
        print("Floors on this machine (no job queue; `bench/floors.py`):")
        print()
        for line in lines:
            print(f"- {line}")

    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    doc = {
        "meta": {
            "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "quick": args.quick,
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "redis": redis_note,
            "wall_s": wall,
            "params": {w: p for w, (p, _) in plan.items()},
            "notes": notes,
        },
        "versions": versions,
        "info": info,
        "round_trip_reference": reference,
        # chain_100's ms per step / one redis-py ping() round trip (target < CHAIN_STEP_TARGET)
        "chain_step_vs_round_trip": {
            lib: v / round_trip_ms(reference)
            for lib in libs
            if round_trip_ms(reference)
            and (v := cell_value(results[lib].get("chain_100"), "ms_per_step")) is not None
        },
        "floors": floors,
        "results": results,
        "table": rows_json,
        "markdown": table,
    }
    paths = [RESULTS_DIR / "latest.json"] + ([Path(args.json)] if args.json else [])
    for path in paths:
        path.write_text(json.dumps(doc, indent=2) + "\n")
    log(f"wrote {', '.join(str(p) for p in paths)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
