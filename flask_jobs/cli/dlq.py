"""``flask jobs dlq ...``: the dead letters."""

from __future__ import annotations

import json

import click
from flask import current_app

from ..dead_letters import DeadLetters
from .group import jobs_cli


@jobs_cli.group("dlq")
def dlq_group() -> None:
    """List, requeue or purge dead-lettered tasks."""


@dlq_group.command("list")
@click.option("--limit", default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def dlq_list(limit: int, as_json: bool) -> None:
    """Show the newest dead letters with their reason."""
    entries = DeadLetters(current_app.extensions["jobs"].broker).list(limit)
    if not entries and not as_json:
        click.echo("No dead letters.")
    for entry in entries:
        if as_json:
            click.echo(json.dumps(entry))
        else:
            click.echo(f"{entry['id']}  {entry.get('name') or '?'}  {entry['reason']}")


@dlq_group.command("requeue", short_help="Queue dead-lettered tasks again.")
@click.argument("task_ids", nargs=-1, required=True)
def dlq_requeue(task_ids: tuple[str, ...]) -> None:
    """Queue dead-lettered tasks again (their messages are kept with their records)."""
    broker = current_app.extensions["jobs"].broker
    failed = [t for t in task_ids if not DeadLetters(broker).requeue(t)]
    for t in task_ids:
        if t not in failed:
            click.echo(f"requeued {t}")
    if failed:
        raise click.ClickException(f"no message kept for: {', '.join(failed)} (expired?)")


@dlq_group.command("purge")
@click.confirmation_option(prompt="Delete every dead letter?")
def dlq_purge() -> None:
    """Delete every dead letter."""
    n = DeadLetters(current_app.extensions["jobs"].broker).purge()
    click.echo(f"purged {n} dead letter(s)")
