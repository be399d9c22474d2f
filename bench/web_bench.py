"""Web-layer benchmarks: status endpoint throughput and SSE fan-out.

``python -m bench.web_bench [--quick] [--json out.json]``

1. **Status endpoint**: requests/s of ``GET /jobs/status/<id>`` for a task in PROGRESS, served
   by ONE gunicorn worker (sync), driven by 4 client processes over loopback for a fixed time.
2. **SSE fan-out**: 200 concurrent ``/jobs/events/<id>`` streams held by ONE gunicorn gevent
   worker; a real worker runs a task that reports progress 20 times, 0.25 s apart. For each
   event we compare when each client received it with when a reference subscriber (a plain
   Redis pub/sub client in the driver) saw the same change; the figure is the p50/p99/max of
   that delay over all clients and events, and how many of the 200 streams got every event.

Both run against a private redis-server. Requires the ``bench`` extra (gunicorn) and gevent.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import redis

from bench.flask_jobs_bench import _worker

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_http(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"server on port {port} did not start")


def _spawn(args: list[str], env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        args, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )


def _kill(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def _status_client(port: int, path: str, seconds: float, out: multiprocessing.Queue) -> None:
    import http.client

    count = errors = 0
    deadline = time.monotonic() + seconds
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    while time.monotonic() < deadline:
        try:
            conn.request("GET", path)
            response = conn.getresponse()
            response.read()
            if response.status == 200:
                count += 1
            else:
                errors += 1
            if response.getheader("Connection", "").lower() == "close":
                conn.close()
        except OSError:
            errors += 1
            conn.close()
    out.put((count, errors))


def bench_status(redis_url: str, seconds: float) -> dict:
    """Requests/s of the status endpoint on one sync gunicorn worker."""
    env = {**os.environ, "BENCH_REDIS_URL": redis_url, "PYTHONPATH": str(ROOT)}
    port = _free_port()
    server = _spawn(
        [sys.executable, "-m", "gunicorn", "-w", "1", "-b", f"127.0.0.1:{port}", "bench.fj_app:app"], env
    )
    try:
        _wait_http(port)
        os.environ["BENCH_REDIS_URL"] = redis_url
        from bench import fj_app

        state = fj_app.app.extensions["jobs"]
        with fj_app.app.app_context():
            # A task in PROGRESS: enqueued, then its record written as a worker would.
            result = fj_app.progress.apply_async((1,), countdown=3600)
            state.broker.store_state(
                result.id, "PROGRESS", {"current": 40, "total": 100, "status": "working"}
            )
        path = f"/jobs/status/{result.id}"
        out: multiprocessing.Queue = multiprocessing.Queue()
        clients = [
            multiprocessing.Process(target=_status_client, args=(port, path, seconds, out)) for _ in range(4)
        ]
        for c in clients:
            c.start()
        totals = [out.get() for _ in clients]
        for c in clients:
            c.join()
        ok = sum(t[0] for t in totals)
        return {
            "value": ok / seconds,
            "unit": "req/s",
            "errors": sum(t[1] for t in totals),
            "config": "gunicorn -w 1 (sync), 4 client processes",
        }
    finally:
        _kill(server)


def _sse_clients(port: int, path: str, n: int, events: int, out_path: str) -> None:
    """n concurrent SSE readers in one process (gevent); reports receive times per current."""
    from gevent import monkey

    monkey.patch_all()
    import gevent

    received: list[dict[int, float]] = [dict() for _ in range(n)]

    def reader(i: int) -> None:
        sock = socket.create_connection(("127.0.0.1", port), timeout=60)
        sock.sendall(f"GET {path} HTTP/1.0\r\nHost: bench\r\nAccept: text/event-stream\r\n\r\n".encode())
        buf = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            now = time.time()
            buf += chunk
            while b"\n\n" in buf:
                event, buf = buf.split(b"\n\n", 1)
                for line in event.split(b"\n"):
                    # HTTP/1.0: no chunked framing, and the server closes at the end
                    if line.startswith(b"data:"):
                        try:
                            data = json.loads(line[5:])
                        except ValueError:
                            continue
                        if data.get("state") == "PROGRESS" and data.get("current") is not None:
                            received[i].setdefault(int(data["current"]), now)
                        if data.get("state") in ("SUCCESS", "FAILURE", "REVOKED"):
                            sock.close()
                            return

    jobs = [gevent.spawn(reader, i) for i in range(n)]
    gevent.joinall(jobs, timeout=events * 0.25 + 60)
    # A file, not a multiprocessing queue: its feeder thread is a greenlet after patch_all.
    Path(out_path).write_text(json.dumps(received))


def bench_sse(redis_url: str, clients: int, events: int) -> dict:
    """Delay from a progress change to its arrival on each of ``clients`` SSE streams."""
    env = {**os.environ, "BENCH_REDIS_URL": redis_url, "PYTHONPATH": str(ROOT)}
    port = _free_port()
    server = _spawn(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "-k",
            "gevent",
            "-w",
            "1",
            "--worker-connections",
            str(clients * 2),
            "-b",
            f"127.0.0.1:{port}",
            "bench.fj_app:app",
        ],
        env,
    )
    worker = _spawn(_worker("solo"), env)
    try:
        _wait_http(port)
        os.environ["BENCH_REDIS_URL"] = redis_url
        from bench import fj_app

        client = redis.Redis.from_url(redis_url)
        with fj_app.app.app_context():
            result = fj_app.paced_progress.apply_async((events, 0.25), countdown=2.0)
        ref = client.pubsub()
        ref.subscribe(fj_app.app.extensions["jobs"].keys.events(result.id))
        out_path = Path(os.environ.get("TMPDIR", "/tmp")) / f"sse-{os.getpid()}.json"
        readers = multiprocessing.Process(
            target=_sse_clients,
            args=(port, f"/jobs/events/{result.id}", clients, events, str(out_path)),
        )
        readers.start()
        # Reference times: when Redis published each PROGRESS change (seen by a direct
        # subscriber), matched to events by the status read right after.
        reference: dict[int, float] = {}
        deadline = time.monotonic() + events * 0.25 + 30
        while time.monotonic() < deadline:
            message = ref.get_message(timeout=1.0)
            if message and message["type"] == "message":
                now = time.time()
                if message["data"] == b"PROGRESS":
                    with fj_app.app.app_context():
                        meta = fj_app.progress.AsyncResult(result.id).info or {}
                    if isinstance(meta, dict) and meta.get("current") is not None:
                        reference.setdefault(int(meta["current"]), now)
                elif message["data"] in (b"SUCCESS", b"FAILURE"):
                    break
        readers.join(120)
        received = [{int(k): v for k, v in times.items()} for times in json.loads(out_path.read_text())]
        out_path.unlink()
        delays = [(times[c] - t) * 1000 for times in received for c, t in reference.items() if c in times]
        complete = sum(1 for times in received if all(c in times for c in reference))
        counts = sorted(len(times) for times in received)
        first_seen = sorted(min(times) if times else 0 for times in received)
        delays.sort()
        return {
            "p50_ms": statistics.median(delays) if delays else None,
            "p99_ms": delays[int(len(delays) * 0.99) - 1] if delays else None,
            "max_ms": delays[-1] if delays else None,
            "streams": clients,
            "events": len(reference),
            "complete_streams": complete,
            "events_per_stream_min_max": [counts[0], counts[-1]] if counts else None,
            "first_event_spread_ms": (first_seen[-1] - first_seen[0]) * 1000 if first_seen else None,
            "config": "gunicorn -k gevent -w 1",
        }
    finally:
        _kill(server)
        _kill(worker)


def main(argv: list[str] | None = None) -> int:
    """Run both web benchmarks and print a small Markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    from flask_jobs.embedded import RedisServer

    with RedisServer() as server:
        results = {
            "status": bench_status(server.url, 2.0 if args.quick else 5.0),
            "sse": bench_sse(server.url, 50 if args.quick else 200, 10 if args.quick else 20),
        }
    s, e = results["status"], results["sse"]
    print("| web workload | flask-jobs |")
    print("|---|---|")
    print(f"| status endpoint, one gunicorn sync worker | {s['value']:,.0f} req/s |")
    print(
        f"| SSE fan-out: {e['streams']} streams on one gevent worker, delay p50 / p99 / max "
        f"| {e['p50_ms']:.1f} / {e['p99_ms']:.1f} / {e['max_ms']:.1f} ms "
        f"({e['complete_streams']}/{e['streams']} streams got all {e['events']} events) |"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
