"""show, why, verify and approve: what a reviewer reads and signs."""

from __future__ import annotations

from pathlib import Path

import click

from regplan import workflow
from regplan.cli.base import (
    ExistingFile,
    cli,
    emit_json,
    json_option,
    key_option,
    load_key,
    now,
    progress_of,
    quiet_option,
    root_arg,
    signer_option,
    storage_options,
    trust_option,
)
from regplan.cli.rules import approvals_option, rule_of
from regplan.plans import approvals, signing
from regplan.plans.planfile import PlanStream
from regplan.scan.layout import printable
from regplan.views import render, report, reviewjson, rulefacts, ticket, why


@cli.command()
@click.argument("plan_file", type=ExistingFile)
@click.option(
    "--format", "fmt", type=click.Choice(["text", "markdown", "html", "json"]), default="text"
)
@click.option("--json", "as_json", is_flag=True, help="The same as --format json.")
@click.option("--targets", is_flag=True, help="Text: also list every directory the plan removes.")
@click.option(
    "--trust",
    "trust",
    type=ExistingFile,
    multiple=True,
    envvar="REGPLAN_TRUST",
    help="Check the signatures (in the plan and beside it) against these public keys; "
    "without it every signature is shown as NOT VERIFIED. [env: REGPLAN_TRUST]",
)
@approvals_option
def show(
    plan_file: Path,
    fmt: str,
    as_json: bool,
    targets: bool,
    trust: tuple[Path, ...],
    rule_file: Path | None,
) -> None:
    """Print a plan for review: what it removes and keeps, image by image, and its
    signatures (checked with --trust).

    The plan is read as a stream: a plan of any size is summarized in flat memory."""
    fmt = "json" if as_json else fmt
    rule = rule_of(rule_file)
    with PlanStream(plan_file) as loaded:
        checked = approvals.checked(loaded, signing.trusted_from(trust))
        if fmt == "json":
            for chunk in reviewjson.review_json_chunks(loaded, checked):
                click.echo(chunk, nl=False)
        elif fmt in ("markdown", "html"):
            # the SHA-256 of the very bytes rendered (the stream's first pass took it)
            pinned = render.PlanFile(name=str(plan_file), sha256=loaded.sha256)
            page = (
                ticket.markdown(loaded, pinned, checked, rule)
                if fmt == "markdown"
                else report.html(loaded, pinned, checked)
            )
            click.echo(page, nl=False)
        else:
            for line in render.text_lines(loaded, targets=targets, signatures=checked):
                click.echo(line)


@cli.command("why")
@click.argument("plan_file", type=ExistingFile)
@click.argument("ref")
@json_option
def why_cmd(plan_file: Path, ref: str, as_json: bool) -> None:
    """What PLAN does to REF (repo:tag, repo, repo@sha256:..., sha256:... or a storage
    path; a digest may be shortened to 12 or more hex characters that name one, and a
    registry host in front is dropped): removed (exit 7, with every directory it causes),
    kept (and the rule that keeps it), untouched, or not in the registry when planned
    (exit 8, with the nearest names). A repository is removed when an image of it goes;
    the housekeeping inside it (empty folders, uploads) is reported."""
    with PlanStream(plan_file) as loaded:
        try:
            answer = why.why(loaded, ref)
        except ValueError as e:
            raise click.BadParameter(str(e), param_hint="REF") from None
    if as_json:
        emit_json(render.why_json(answer, loaded.header))
    else:
        click.echo(render.why_text(answer, loaded.header))
    if answer.verdict is why.Verdict.REMOVED:
        click.get_current_context().exit(REMOVED)
    if answer.verdict is why.Verdict.NOT_FOUND:
        click.get_current_context().exit(NOT_FOUND)


REMOVED = 7
"""``why``'s exit code when the plan removes REF: a pipeline can stop on it."""
NOT_FOUND = 8
"""``why``'s exit code when REF was not in the registry when planned (a typo in a
guard must not pass as "untouched")."""


@cli.command()
@click.argument("plan_file", type=ExistingFile)
@trust_option
@storage_options
@click.option("--require-signatures", default=1, show_default=True, type=click.IntRange(1))
@approvals_option
@json_option
@quiet_option
def verify(
    plan_file: Path,
    trust: tuple[Path, ...],
    root: str | None,
    config: Path | None,
    require_signatures: int,
    rule_file: Path | None,
    as_json: bool,
    quiet: bool,
) -> None:
    """Check signatures against trusted keys and the plan against the tree; changes nothing."""
    rule = rule_of(rule_file)
    with progress_of("checking paths", quiet=quiet, as_json=as_json) as scanning:
        v = workflow.load_verified(
            plan_file,
            trusted=signing.trusted_from(trust),
            root=root_arg(root, config),
            required=require_signatures,
            progress=scanning.update,
            rule=rule,
        )
    signers = [k.keyid for k in v.signers]
    if quiet and not as_json:
        return
    if as_json:
        emit_json(
            {
                "plan_id": v.header.plan_id,
                "valid": True,
                "signers": signers,
                "principals": [k.name for k in v.signers],
                "root": str(v.storage.root),
                "fresh": True,
                **rulefacts.rule_json(rule, v.principals),
            }
        )
    else:
        named = ", ".join(
            f"{printable(k.name)} {k.keyid}" if k.name else k.keyid for k in v.signers
        )
        click.echo(
            f"OK: plan {v.header.plan_id} is signed by {len(signers)} trusted key(s) "
            f"({named}) and matches {v.storage.root}"
        )
        if rule is not None and v.principals is not None:
            click.echo(rulefacts.rule_line(rule, v.principals))


@cli.command()
@click.argument("plan_file", type=ExistingFile)
@key_option("The reviewer's key")
@signer_option
@trust_option
def approve(plan_file: Path, key: str, signer: str | None, trust: tuple[Path, ...]) -> None:
    """Co-sign PLAN as approver: check every signature it has against --trust, then write
    the approval beside it (PLAN.approval-KEY.sig); PLAN's bytes never change. With an
    SSH key the file is the SSH signature `ssh-keygen -Y verify -n regplan-plan` checks
    against `regplan digest PLAN`."""
    private, name = load_key(key, signer)
    header, written = approvals.approve(
        plan_file, key=private, signer=name, now=now(), trusted=signing.trusted_from(trust)
    )
    click.echo(f"Approved plan {header.plan_id}: wrote {written} (the plan file is unchanged)")


@cli.command()
@click.argument("plan_file", type=ExistingFile)
def digest(plan_file: Path) -> None:
    """Print the bytes every signature of PLAN covers (its body's SHA-256, in hex, no
    newline): `regplan digest PLAN | ssh-keygen -Y sign -f KEY -n regplan-plan >
    PLAN.approval-NAME.sig` approves it; `ssh-keygen -Y verify` checks so too."""
    with PlanStream(plan_file) as loaded:
        click.echo(loaded.body_digest.decode(), nl=False)
