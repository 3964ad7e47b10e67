"""list: an object-store registry's keys into a listing file (plan --listing reads it)."""

from __future__ import annotations

from pathlib import Path

import click

from regplan.cli.base import (
    PathArg,
    cli,
    emit_json,
    json_option,
    progress_of,
    quiet_option,
    storage_of,
    storage_options,
)
from regplan.errors import StorageError
from regplan.storage import location
from regplan.storage.listing import lister


@cli.command("list")
@storage_options
@click.option("-o", "--output", type=PathArg, required=True, help="The listing (Parquet).")
@json_option
@quiet_option
def list_keys(
    root: str | None, config: Path | None, output: Path, as_json: bool, quiet: bool
) -> None:
    """List an object-store registry's keys, in parallel, into a Parquet file."""
    storage = storage_of(root, config)
    if not location.is_object_store(storage):
        raise StorageError(
            "list reads an object store (s3://, az://, gs://): plan walks a filesystem"
        )
    with progress_of("listing keys", quiet=quiet, as_json=as_json) as listing:
        made = lister.write(storage, output, progress=listing.update)
    if as_json:
        emit_json({"path": str(made.path), "keys": made.keys, "listed_at": made.listed_at})
    elif not quiet:
        click.echo(
            f"Listed {made.keys} keys of {storage.root} into {made.path} (taken at "
            f"{made.listed_at}); plan from it with: regplan plan --root {storage.root} "
            f"--listing {made.path} ..."
        )
