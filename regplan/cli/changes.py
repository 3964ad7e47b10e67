"""apply, rollback and purge: the changes, each behind the write guard."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from regplan import apply
from regplan.cli.base import (
    ExistingFile,
    advice,
    age_of,
    allow_online_option,
    break_lock_option,
    check_hint,
    cli,
    emit_json,
    guard,
    json_option,
    now,
    probed_url,
    progress_of,
    quiet_option,
    registry_options,
    registry_stopped_option,
    root_arg,
    root_of,
    storage_of,
    storage_options,
    trust_option,
    where_args,
    write_guard,
)
from regplan.cli.rules import approvals_option, rule_of
from regplan.errors import ApplyError
from regplan.plans import signing
from regplan.views import results


@cli.command("apply")
@click.argument("plan_file", type=ExistingFile)
@trust_option
@storage_options
@click.option(
    "--require-signatures",
    default=1,
    show_default=True,
    type=click.IntRange(1),
    help="Distinct trusted keys that must have signed.",
)
@approvals_option
@click.option(
    "--exact",
    is_flag=True,
    help="Apply only to the very tree planned (Terraform's rule): any change since "
    "planning refuses the plan (exit 4). By default what changed is skipped and named.",
)
@registry_options(required=False, replicas=True)
@registry_stopped_option
@allow_online_option
@break_lock_option
@json_option
@quiet_option
def apply_cmd(
    plan_file: Path,
    trust: tuple[Path, ...],
    root: str | None,
    config: Path | None,
    require_signatures: int,
    rule_file: Path | None,
    exact: bool,
    registry_stopped: bool,
    allow_online: bool,
    break_lock: bool,
    as_json: bool,
    quiet: bool,
    **reg: Any,
) -> None:
    """Verify PLAN and move its targets into quarantine (re-run to finish an interrupted apply)."""
    command, url = f"regplan apply {plan_file}", probed_url(reg, config)
    rule = rule_of(rule_file)
    with (
        progress_of("checking paths", quiet=quiet, as_json=as_json) as scanning,
        progress_of("moving", quiet=quiet, as_json=as_json) as moving,
    ):
        result = apply.apply_plan(
            plan_path=plan_file,
            trusted=signing.trusted_from(trust),
            root=root_arg(root, config),
            required=require_signatures,
            now=now(),
            progress=moving.update,
            scan_progress=scanning.update,
            break_lock=break_lock,
            exact=exact,
            rule=rule,
            guard=lambda storage: write_guard(
                reg, config, registry_stopped, allow_online, command, storage, scanning.update
            ),
        )
    if as_json:
        emit_json(results.result_json(result))
    elif not quiet:
        where = where_args(config, root_of(result.quarantine))
        click.echo(results.applied(result, advice(config, url), where))
        click.echo(check_hint(url, root_of(result.quarantine), plan_file, config))
    if not result.fingerprint_ok:
        raise ApplyError(
            f"apply {result.apply_id} finished, but the tree differs from the plan's prediction "
            f"({'; '.join(result.changed)}): something wrote meanwhile; check, then undo with: "
            f"regplan rollback {result.apply_id}"
        )


@cli.command()
@click.argument("apply_id")
@click.option(
    "--only",
    "only",
    multiple=True,
    metavar="REF",
    help="Restore only this image (repo:tag, repo@digest, or repo; repeatable) with all it "
    "needs; the rest stays in the quarantine for a later rollback or purge.",
)
@storage_options
@registry_options(required=False, replicas=True)
@registry_stopped_option
@allow_online_option
@break_lock_option
@json_option
@quiet_option
def rollback(
    apply_id: str,
    only: tuple[str, ...],
    root: str | None,
    config: Path | None,
    registry_stopped: bool,
    allow_online: bool,
    break_lock: bool,
    as_json: bool,
    quiet: bool,
    **reg: Any,
) -> None:
    """Put back everything APPLY_ID moved, byte for byte (also after an interrupted apply)."""
    storage, url = storage_of(root, config), probed_url(reg, config)
    with (
        progress_of("moving back", quiet=quiet, as_json=as_json) as moving,
        progress_of("checking paths", quiet=quiet, as_json=as_json) as scanning,
    ):
        said = write_guard(
            reg, config, registry_stopped, allow_online, f"regplan rollback {apply_id}",
            storage, scanning.update,
        )  # fmt: skip
        result = apply.rollback(
            storage=storage,
            apply_id=apply_id,
            now=now(),
            progress=moving.update,
            scan_progress=scanning.update,
            break_lock=break_lock,
            registry=said,
            only=only,
        )
    if as_json:
        emit_json(results.result_json(result))
    elif not quiet:
        click.echo(results.rolled_back(result, advice(config, url)))
        click.echo(check_hint(url, storage.root, config=config))
    if not result.fingerprint_ok:  # all it moved is back: what else changed is not an error
        click.echo(
            f"Warning: rolled back {apply_id}: everything it moved is back; the tree also "
            f"differs from the plan's before ({'; '.join(result.changed)}): something else "
            "changed it meanwhile (a push?)",
            err=True,
        )


@cli.command()
@click.argument("apply_id", required=False)
@click.option("--older-than", metavar="AGE", help="Every applied one older than AGE (e.g. 7d).")
@click.option(
    "--include-unverified",
    is_flag=True,
    help="With --older-than: also applies whose final check found the tree other than "
    "planned (see history); by default those are left for a person to look at.",
)
@storage_options
@registry_options(required=False, replicas=True)
@registry_stopped_option
@allow_online_option
@break_lock_option
@json_option
@quiet_option
def purge(
    apply_id: str | None,
    older_than: str | None,
    include_unverified: bool,
    root: str | None,
    config: Path | None,
    registry_stopped: bool,
    allow_online: bool,
    break_lock: bool,
    as_json: bool,
    quiet: bool,
    **reg: Any,
) -> None:
    """Delete the quarantine of APPLY_ID (or of every applied one older than AGE) for good."""
    if (apply_id is None) == (older_than is None):
        raise click.UsageError("give an APPLY_ID or --older-than AGE")
    age = age_of(older_than, "older_than") if older_than is not None else None
    storage = storage_of(root, config)
    guard(reg, registry_stopped, allow_online, "regplan purge", storage)
    with progress_of("deleting", quiet=quiet, as_json=as_json) as deleting:
        done = apply.purge(
            storage=storage,
            apply_id=apply_id,
            older_than=age,
            now=now(),
            progress=deleting.update,
            include_unverified=include_unverified,
            break_lock=break_lock,
        )
    if as_json:
        emit_json([r.apply_id for r in done])
    elif not quiet:
        click.echo(results.purged(done))
