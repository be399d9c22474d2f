"""Redis keys shared by the tasks (bench/anchors/_common.py) and the harness."""

DONE_KEY = "bench:done"  # INCR per finished no-op task
LAT_KEY = "bench:lat"  # RPUSH of (start time - send time) in seconds, per latency task
PROGRESS_KEY = "bench:progress"  # SET to the progress task's own elapsed seconds
MIXED_KEY = "bench:mixed"  # RPUSH of start (":start") and end (":<kind>") times per mixed task
