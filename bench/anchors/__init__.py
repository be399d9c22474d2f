"""Adapters and task modules for the anchor libraries (Celery, RQ, Huey, Dramatiq)."""
