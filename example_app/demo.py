"""``make demo``: the example app with everything it needs, in one command.

Starts (or joins) the embedded Redis in the instance folder, a worker process
(``flask --app example_app:create_app jobs worker -P threads -c 4``) and the web server on
127.0.0.1, port 5000 or the first free one above it, then prints the URL. Ctrl-C (or SIGTERM)
stops the web server and the worker; the embedded Redis stops by itself a few seconds after its
last user exited.

    python -m example_app.demo [--host 127.0.0.1] [--port 5000] [--pool threads] [-c 4]
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from werkzeug.serving import BaseWSGIServer, make_server

from example_app import create_app

ROOT = Path(__file__).resolve().parent.parent
FIRST_PORT, LAST_PORT = 5000, 5099
READY_TIMEOUT = 60.0


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server will
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def bind(app: Any, host: str, port: int | None) -> BaseWSGIServer:
    """A threaded server on ``port``, or on the first free port from 5000 up."""
    # Probe first: werkzeug's make_server exits the process when a port is taken.
    candidates = [port] if port else range(FIRST_PORT, LAST_PORT + 1)
    for p in candidates:
        if _port_free(host, p):
            return make_server(host, p, app, threaded=True)
    where = f"port {port}" if port else f"any port from {FIRST_PORT} to {LAST_PORT}"
    raise SystemExit(f"demo: cannot listen on {host}: {where} is in use (try --port)")


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    """Linux: the worker gets SIGTERM if the demo dies without cleaning up (kill -9)."""
    try:
        import ctypes

        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:
        pass


class WorkerProcess:
    """The worker subprocess; its output goes to ours, each line prefixed with ``[worker]``."""

    def __init__(self, pool: str, concurrency: int) -> None:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}
        env.setdefault("PYTHONUNBUFFERED", "1")
        self.args = [sys.executable, "-m", "flask", "--app", "example_app:create_app", "jobs",
                     "worker", "-P", pool, "-c", str(concurrency), "--shutdown-timeout", "3"]
        self.ready = threading.Event()
        self.stopping = False
        # A session of its own: Ctrl-C in the terminal reaches the demo only, which then stops
        # the worker with one SIGTERM (a second signal would be a cold stop).
        self.proc = subprocess.Popen(
            self.args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True, text=True, bufsize=1,
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
        )
        self._pump = threading.Thread(target=self._copy_output, daemon=True)
        self._pump.start()

    def _copy_output(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if " ready." in line:
                self.ready.set()
            sys.stdout.write(f"[worker] {line}")
            sys.stdout.flush()
        code = self.proc.wait()
        if not self.stopping:
            print(f"demo: the worker exited (code {code}); new jobs will wait in their queue. "
                  "Press Ctrl-C and start the demo again.", flush=True)

    def wait_ready(self, timeout: float) -> bool:
        """Whether the worker said it is ready within ``timeout`` seconds (False if it died)."""
        deadline = time.monotonic() + timeout
        while not self.ready.wait(0.1):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                return False
        return True

    def stop(self, timeout: float = 10.0) -> int | None:
        """Warm stop (SIGTERM); kill the process group if it does not exit in time."""
        self.stopping = True
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                print("demo: the worker did not stop in time; killing it", flush=True)
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(5)
        self._pump.join(2)
        return self.proc.returncode


def _interrupt(signum: int, frame: Any) -> None:
    """SIGTERM (from ``timeout``, ``kill``, a process manager) stops the demo as Ctrl-C does."""
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m example_app.demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1", help="address to serve on")
    parser.add_argument("--port", type=int, help="port (default: 5000 or the first free above)")
    parser.add_argument("--pool", default="threads", choices=["threads", "prefork", "solo"],
                        help="the worker's pool (default threads)")
    parser.add_argument("-c", "--concurrency", type=int, default=4,
                        help="the worker's threads or processes (default 4)")
    args = parser.parse_args(argv)

    signal.signal(signal.SIGTERM, _interrupt)

    app = create_app()
    server = bind(app, args.host, args.port)
    state = app.extensions["jobs"]
    try:
        broker = state.broker_url_safe  # starts (or joins) the embedded Redis
        state.client.ping()
    except Exception as exc:
        server.server_close()
        print(f"demo: cannot use Redis ({app.config['JOBS_BROKER_URL']}): {exc}", file=sys.stderr)
        return 1
    print(f"demo: Redis at {broker}", flush=True)
    worker: WorkerProcess | None = None
    try:
        worker = WorkerProcess(args.pool, args.concurrency)
        print(f"demo: started the worker: {' '.join(worker.args[2:])}", flush=True)
        if not worker.wait_ready(READY_TIMEOUT):
            print("demo: the worker did not start; see its output above", file=sys.stderr)
            return 1
        url = f"http://{args.host}:{server.server_port}/"
        print("\n" + "=" * 64, flush=True)
        print(f"  flask-jobs demo running at  {url}", flush=True)
        print("  Press Ctrl-C to stop.", flush=True)
        print("=" * 64 + "\n", flush=True)
        server.serve_forever()  # until Ctrl-C or SIGTERM (werkzeug returns on KeyboardInterrupt)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut cleanup short
        print("\ndemo: stopping", flush=True)
        server.server_close()
        if worker is not None:
            code = worker.stop()
            print(f"demo: worker stopped (exit code {code})", flush=True)
    if app.config["JOBS_BROKER_URL"].startswith("embedded:"):
        print("demo: bye (the embedded Redis stops by itself in a few seconds)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
