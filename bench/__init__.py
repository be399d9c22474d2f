"""Benchmarks for flask-jobs against Celery, RQ, Huey and Dramatiq (see bench/README.md)."""
