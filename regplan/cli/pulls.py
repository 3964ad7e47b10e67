"""pulls serve and pulls import: fill a pull store from the registry (docs/pulls.md)."""

from __future__ import annotations

import time
from pathlib import Path

import attrs
import click

from regplan.cli.base import PathArg, cli, emit_json, json_option
from regplan.decide.selection import Selection
from regplan.pulls import importing, serve, store


@cli.group("pulls")
def pulls_group() -> None:
    """When images were last pulled: the records ``plan --pulls`` reads (docs/pulls.md)."""


def _listen(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise click.BadParameter(f"{text!r}: expected HOST:PORT", param_hint="--listen")
    return host.strip("[]"), int(port)


@pulls_group.command("serve")
@click.option("--db", type=PathArg, required=True, help="The pull store (made if missing).")
@click.option(
    "--listen",
    default="127.0.0.1:5080",
    show_default=True,
    metavar="HOST:PORT",
    help="Where the registry's notifications endpoint posts.",
)
@click.option(
    "--token",
    envvar="REGPLAN_PULLS_TOKEN",
    help="Refuse envelopes without 'Authorization: Bearer TOKEN' (env REGPLAN_PULLS_TOKEN).",
)
def serve_cmd(db: Path, listen: str, token: str | None) -> None:
    """Receive the registry's notifications and record every manifest pull."""
    host, port = _listen(listen)
    serve.serve(db, host, port, token or None)


@pulls_group.command("import")
@click.option("--db", type=PathArg, required=True, help="The pull store (made if missing).")
@click.argument("logs", nargs=-1, required=True, metavar="LOG...")
@json_option
def import_cmd(db: Path, logs: tuple[str, ...], as_json: bool) -> None:
    """Record the manifest pulls of registry logs (JSON or text formatter, gzip'd or
    not; - for stdin). Importing a log again counts nothing twice."""
    readings = importing.import_logs(db, logs, time.time())
    if as_json:
        emit_json(
            [
                {
                    "log": r.source,
                    "lines": r.lines,
                    "pulls": r.pulls,
                    "skipped": r.skipped,
                    "span": list(r.span) if r.span else None,
                    "reports": r.reports,
                    **r.counts,
                }
                for r in readings
            ]
        )
        return
    for r in readings:
        for line in r.reports:
            click.echo(line, err=True)
        click.echo(r.summary())


pulls_option = click.option(
    "--pulls",
    type=PathArg,
    metavar="FILE",
    help="A pull store (regplan pulls serve / import): reviews show each image's last "
    "pull; --pulled-within and a policy's pulled_within / most_recently_pulled read it.",
)


def with_pulls(selection: Selection, path: Path | None) -> Selection:
    """``selection`` with the pull records at ``path`` (``plan --pulls``)."""
    by_pulls = selection.retention.pulled_within is not None or (
        selection.policy is not None and selection.policy.by_pulls
    )
    if path is None:
        if by_pulls:
            what = "--pulled-within" if selection.policy is None else "the policy"
            raise click.UsageError(f"{what} keeps by pulls: give --pulls FILE")
        return selection
    return attrs.evolve(selection, pulls=store.read(path))
