"""check, history and demo: what the registry serves, what was done, a tour."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
import click

from regplan import apply
from regplan.cli.base import (
    ExistingFile,
    PathArg,
    cli,
    emit_json,
    json_option,
    now,
    progress_of,
    quiet_option,
    registry_client,
    registry_options,
    storage_of,
    storage_options,
)
from regplan.decide.selection import (
    ImageSpec,
)
from regplan.demo import walkthrough
from regplan.errors import CheckFailed
from regplan.plans.planfile import PlanStream
from regplan.storage import location
from regplan.views import render, results


@cli.command("check")
@registry_options(required=True)
@storage_options
@click.option(
    "--plan",
    "plan_file",
    type=ExistingFile,
    help="Also prove that what this plan removed is no longer served (a stale cache is not).",
)
@click.option(
    "--image",
    "images",
    multiple=True,
    metavar="GLOB",
    help="Only these repositories (REPO or REPO:TAG globs); default: every tag in the storage.",
)
@json_option
@quiet_option
def check_cmd(
    root: str | None,
    config: Path | None,
    plan_file: Path | None,
    images: tuple[str, ...],
    as_json: bool,
    quiet: bool,
    **reg: Any,
) -> None:
    """Prove through the registry's API that every kept image is whole (changes nothing)."""
    from regplan.registry import check  # noqa: PLC0415 (httpx: imported when a registry is asked)

    storage = storage_of(root, config)
    inventory = location.read(storage)
    selected = check.images_in(inventory, tuple(ImageSpec.parse(i) for i in images))
    removed: list[check.Gone] = []
    state = None
    if plan_file:
        with PlanStream(plan_file) as loaded:
            state = check.plan_state(loaded.header.plan_id, apply.records(storage))
            removed = check.removed_by(loaded) if state.applied else []
    with (
        registry_client(
            reg["registry_url"], reg["registry_user"], reg["ca_cert"], reg["insecure"]
        ) as client,
        progress_of("checking images", quiet=quiet, as_json=as_json) as checking,
    ):
        report = check.check(
            client, selected, removed=removed, storage=inventory, progress=checking.update
        )
    if state is not None:
        report = attrs.evolve(report, plan_note=state.note)
    if as_json:
        emit_json(render.check_json(report, client.url))
    elif not quiet or not report.ok:
        click.echo(render.check_report(report, client.url, quiet=quiet))
    if not report.ok:
        raise CheckFailed(check.verdict(report, apply.records(storage)))


@cli.command()
@storage_options
@json_option
def history(root: str | None, config: Path | None, as_json: bool) -> None:
    """List the applies recorded in the storage, oldest first."""
    found = apply.records(storage_of(root, config))
    if as_json:
        emit_json([apply.record_json(r) for r in found])
    else:
        click.echo(results.history(found), nl=False)


@cli.command()
@click.argument("directory", type=PathArg, required=False)
def demo(directory: Path | None) -> None:
    """Build a sample registry and walk through the whole cycle on it."""
    walkthrough.run(directory, echo=click.echo, now=now())
