"""The Lua scripts: one file per multi-key step, each with a header naming its KEYS and ARGV.

``lib.lua`` holds what they share (the key list, time from the server, applying a worker's
writes) and is put in front of every script but ``enqueue.lua``, whose first line says it is
``standalone`` (the fewer Lua steps, the faster every send).
"""

from __future__ import annotations

import functools
from importlib import resources


@functools.cache
def script_source(name: str) -> str:
    """The text of ``<name>.lua`` with the shared library in front of it (unless the script's
    first line says it is ``standalone``)."""
    folder = resources.files(__name__)
    source = (folder / f"{name}.lua").read_text()
    if source.startswith("-- standalone"):
        return source
    return (folder / "lib.lua").read_text() + "\n" + source
