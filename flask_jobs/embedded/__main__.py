"""The command line of embedded mode: ``python -m flask_jobs.embedded watch|stop``.

``watch`` runs the watchdog; :func:`~flask_jobs.embedded.watchdog.spawn_watchdog` starts it
that way, with the module name :data:`~flask_jobs.embedded.watchdog.MODULE_NAME`, in a process
of its own. ``stop`` is for people: it stops the embedded server of an instance folder.

This module only runs as ``__main__``; nothing imports it, so ``runpy`` finds it unimported.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .mode import stop_embedded
from .watchdog import MODULE_NAME, WATCHDOG_GRACE, WATCHDOG_INTERVAL, watch


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line.

    ``python -m flask_jobs.embedded watch SOCKET ...`` runs the watchdog (started by
    :func:`~flask_jobs.embedded.ensure_embedded`, not meant to be run by hand);
    ``python -m flask_jobs.embedded stop INSTANCE_PATH`` calls
    :func:`~flask_jobs.embedded.stop_embedded`.

    :param argv: Arguments without the program name. Default: ``sys.argv[1:]``.
    :return: The exit status.
    """
    parser = argparse.ArgumentParser(prog=f"python -m {MODULE_NAME}")
    commands = parser.add_subparsers(dest="command", required=True)
    watch_parser = commands.add_parser("watch", help="run the embedded server's watchdog")
    watch_parser.add_argument("socket")
    watch_parser.add_argument("--state-dir", required=True)
    watch_parser.add_argument("--run-id", required=True)
    watch_parser.add_argument("--interval", type=float, default=WATCHDOG_INTERVAL)
    watch_parser.add_argument("--grace", type=float, default=WATCHDOG_GRACE)
    stop_parser = commands.add_parser("stop", help="stop the embedded server of an instance folder")
    stop_parser.add_argument("instance_path")
    args = parser.parse_args(argv)
    if args.command == "watch":
        return watch(args.socket, args.state_dir, args.run_id, args.interval, args.grace)
    running = stop_embedded(args.instance_path)
    print("stopped" if running else "not running")
    return 0


if __name__ == "__main__":
    sys.exit(main())
