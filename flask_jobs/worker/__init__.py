"""The worker: consumers, pools, heartbeat and shutdown. See :class:`Worker`."""

from .main import POOLS, Worker, configure_logging

__all__ = ["POOLS", "Worker", "configure_logging"]
