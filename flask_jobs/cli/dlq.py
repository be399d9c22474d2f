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
@click.argument("task_ids", nargs=-1)
@click.option("--all", "every", is_flag=True, help="Requeue every dead letter kept.")
def dlq_requeue(task_ids: tuple[str, ...], every: bool) -> None:
    """Queue dead-lettered tasks again, by id or --all (their messages are kept with their
    records). Many at once show a progress bar."""
    dead = DeadLetters(current_app.extensions["jobs"].broker)
    if every == bool(task_ids):
        raise click.UsageError("Give task ids, or --all (not both).")
    ids = list(task_ids) or list(dict.fromkeys(e["id"] for e in dead.list(10**9)))
    failed: list[str] = []
    if len(ids) > 20:
        with click.progressbar(length=len(ids), label="Requeueing", show_pos=True) as bar:
            for t in ids:
                if not dead.requeue(t):
                    failed.append(t)
                bar.update(1)
        click.echo(f"requeued {len(ids) - len(failed)} task(s)")
    else:
        for t in ids:
            if dead.requeue(t):
                click.echo(f"requeued {t}")
            else:
                failed.append(t)
    if failed:
        raise click.ClickException(f"no message kept for {len(failed)} task(s): "
                                   f"{', '.join(failed[:20])}{' ...' if len(failed) > 20 else ''}"
                                   " (expired?)")


@dlq_group.command("purge")
@click.confirmation_option(prompt="Delete every dead letter?")
def dlq_purge() -> None:
    """Delete every dead letter."""
    n = DeadLetters(current_app.extensions["jobs"].broker).purge()
    click.echo(f"purged {n} dead letter(s)")
