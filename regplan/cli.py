"""The command line: parse, call the core, render. Exit codes: README, "Exit codes"."""

from __future__ import annotations

import getpass
import json
import logging
import socket
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from regplan import __version__, apply, codec, render, signing, walkthrough, workflow
from regplan.errors import ApplyError, RegplanError
from regplan.layout import Storage
from regplan.progress import Reporter
from regplan.selection import ImageSpec, Selection, parse_age

log = logging.getLogger("regplan")

PathArg = click.Path(path_type=Path)
ExistingFile = click.Path(path_type=Path, exists=True, dir_okay=False)


class RegplanGroup(click.Group):
    """Turns a ``RegplanError`` into ``Error: <message>`` and its exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except RegplanError as e:
            click.echo(f"Error: {e}", err=True)
            ctx.exit(e.exit_code)


def now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def default_signer() -> str:
    return f"{getpass.getuser()}@{socket.gethostname()}"


def emit_json(obj: object) -> None:
    click.echo(json.dumps(obj, indent=2, sort_keys=True))


root_option = click.option(
    "--root",
    type=PathArg,
    envvar="REGISTRY_DATA_DIR",
    help="The registry's rootdirectory (holding docker/) or its docker/registry/v2 folder. "
    "[env: REGISTRY_DATA_DIR]",
)
trust_option = click.option(
    "--trust",
    "trust",
    type=ExistingFile,
    multiple=True,
    envvar="REGPLAN_TRUST",
    help="A trusted public key (KEYFILE.pub); repeat for several. [env: REGPLAN_TRUST, "
    "paths separated by the OS path separator]",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON only on stdout.")


def _storage(root: Path | None) -> Storage:
    if root is None:
        raise click.UsageError("no storage given: pass --root or set REGISTRY_DATA_DIR")
    return Storage.locate(root)


@click.group(cls=RegplanGroup)
@click.version_option(__version__, prog_name="regplan")
@click.option("-v", "--verbose", count=True, help="Debug detail on stderr.")
def cli(verbose: int) -> None:
    """Reviewed, reversible cleanup of Docker registry filesystem storage."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )


@cli.command()
@click.argument("keyfile", type=PathArg)
@click.option("--comment", default=default_signer, help="Written after the public key.")
def keygen(keyfile: Path, comment: str) -> None:
    """Write an Ed25519 KEYFILE (0600) and KEYFILE.pub."""
    keyid = signing.keygen(keyfile, comment=comment)
    click.echo(f"Wrote {keyfile} (private, 0600) and {keyfile}.pub; key id {keyid}")


@cli.command()
@root_option
@click.option(
    "--key",
    type=ExistingFile,
    envvar="REGPLAN_KEY",
    required=True,
    help="Private key that signs the plan. [env: REGPLAN_KEY]",
)
@click.option(
    "-o", "--output", type=PathArg, help="Plan file [default: plans/<UTC time>.plan.json]."
)
@click.option(
    "--image",
    "images",
    multiple=True,
    metavar="REPO[:TAG]",
    help="Remove a tag, or the whole repository when no tag (globs).",
)
@click.option(
    "--untagged",
    multiple=True,
    metavar="REPO",
    help="Remove manifests no tag reaches (globs; index and referrer aware).",
)
@click.option("--prune", is_flag=True, help="Remove every empty directory (never the roots).")
@click.option("--signer", default=default_signer, help="Name recorded with the signature.")
@json_option
@click.option(
    "--detailed-exitcode",
    is_flag=True,
    help="Exit 0 when there is nothing to do, 2 when targets are planned.",
)
@click.pass_context
def plan(
    ctx: click.Context,
    root: Path | None,
    key: Path,
    output: Path | None,
    images: tuple[str, ...],
    untagged: tuple[str, ...],
    prune: bool,
    signer: str,
    as_json: bool,
    detailed_exitcode: bool,
) -> None:
    """Decide what to remove and write a signed plan; changes nothing."""
    selection = Selection(
        images=tuple(ImageSpec.parse(i) for i in images), untagged=untagged, prune=prune
    )
    if selection.empty:
        raise click.UsageError("nothing selected: give --image, --untagged or --prune")
    storage = _storage(root)
    argv = ["regplan", "plan", "--root", str(root)]
    argv += [f"--image={i}" for i in images] + [f"--untagged={u}" for u in untagged]
    argv += ["--prune"] if prune else []
    t = now()
    made = workflow.make_plan(
        storage=storage,
        selection=selection,
        argv=argv,
        key=signing.load_private(key),
        signer=signer,
        now=t,
    )
    path = output or Path("plans") / f"{workflow.timestamp(t)}.plan.json"
    workflow.write_plan(made, path)
    s = made.summary
    if as_json:
        emit_json(
            {
                "plan_id": made.plan_id,
                "path": str(path),
                "targets": s.targets,
                "bytes": s.bytes,
                "kept": len(made.kept),
                "problems": len(made.problems),
            }
        )
    else:
        click.echo(
            f"Plan {made.plan_id} written to {path}: {s.targets} directories to remove, "
            f"{render.human_bytes(s.bytes)}; {len(made.kept)} kept; {len(made.problems)} problems."
        )
        click.echo(f"Review it with: regplan show {path}")
    if detailed_exitcode and s.targets:
        ctx.exit(2)


@cli.command()
@click.argument("plan_file", type=ExistingFile)
@click.option("--format", "fmt", type=click.Choice(["text", "markdown", "json"]), default="text")
def show(plan_file: Path, fmt: str) -> None:
    """Print a plan for review (does not check signatures; use verify)."""
    loaded = workflow.load_plan(plan_file)
    if fmt == "json":
        click.echo(codec.dumps(loaded).decode(), nl=False)
    else:
        click.echo(render.markdown(loaded) if fmt == "markdown" else render.text(loaded), nl=False)


@cli.command()
@click.argument("plan_file", type=ExistingFile)
@trust_option
@root_option
@click.option("--require-signatures", default=1, show_default=True, type=click.IntRange(1))
@json_option
def verify(
    plan_file: Path,
    trust: tuple[Path, ...],
    root: Path | None,
    require_signatures: int,
    as_json: bool,
) -> None:
    """Check signatures against trusted keys and the plan against the tree; changes nothing."""
    v = workflow.load_verified(
        plan_file, trusted=signing.trusted_from(trust), root=root, required=require_signatures
    )
    signers = [k.keyid for k in v.signers]
    if as_json:
        emit_json(
            {
                "plan_id": v.plan.plan_id,
                "valid": True,
                "signers": signers,
                "root": str(v.storage.root),
                "fresh": True,
            }
        )
    else:
        click.echo(
            f"OK: plan {v.plan.plan_id} is signed by {len(signers)} trusted key(s) "
            f"({', '.join(signers)}) and matches {v.storage.root}"
        )


@cli.command()
@click.argument("plan_file", type=ExistingFile)
@click.option(
    "--key",
    type=ExistingFile,
    envvar="REGPLAN_KEY",
    required=True,
    help="The reviewer's private key. [env: REGPLAN_KEY]",
)
@click.option("--signer", default=default_signer, help="Name recorded with the signature.")
@trust_option
def approve(plan_file: Path, key: Path, signer: str, trust: tuple[Path, ...]) -> None:
    """Co-sign PLAN as approver (with --trust, check the existing signatures first)."""
    approved = workflow.approve(
        plan_file,
        key=signing.load_private(key),
        signer=signer,
        now=now(),
        trusted=signing.trusted_from(trust),
    )
    roles = ", ".join(f"{s.role} {s.signer}" for s in approved.signatures)
    click.echo(f"Approved plan {approved.plan_id}; signatures: {roles}")


@cli.command("apply")
@click.argument("plan_file", type=ExistingFile)
@trust_option
@root_option
@click.option(
    "--require-signatures",
    default=1,
    show_default=True,
    type=click.IntRange(1),
    help="Distinct trusted keys that must have signed.",
)
@json_option
@click.option("-q", "--quiet", is_flag=True, help="No progress on stderr.")
def apply_cmd(
    plan_file: Path,
    trust: tuple[Path, ...],
    root: Path | None,
    require_signatures: int,
    as_json: bool,
    quiet: bool,
) -> None:
    """Verify PLAN and move its targets into quarantine (re-run to finish an interrupted apply)."""
    reporter = Reporter("moving", enabled=False if (quiet or as_json) else None)
    result = apply.apply_plan(
        plan_path=plan_file,
        trusted=signing.trusted_from(trust),
        root=root,
        required=require_signatures,
        now=now(),
        progress=reporter.fraction,
    )
    reporter.done()
    if as_json:
        emit_json(
            {
                "apply_id": result.apply_id,
                "plan_id": result.plan_id,
                "moved": result.moved,
                "bytes": result.bytes,
                "quarantine": str(result.quarantine),
                "resumed": result.resumed,
                "fingerprint_ok": result.fingerprint_ok,
                "changed": list(result.changed),
            }
        )
    else:
        click.echo(render.applied(result))
    if not result.fingerprint_ok:
        raise ApplyError(
            f"apply {result.apply_id} finished, but the tree differs from the plan's prediction "
            f"({'; '.join(result.changed)}): something wrote meanwhile; check, then undo with: "
            f"regplan rollback {result.apply_id}"
        )


@cli.command()
@click.argument("apply_id")
@root_option
@json_option
def rollback(apply_id: str, root: Path | None, as_json: bool) -> None:
    """Put back everything APPLY_ID moved, byte for byte (also after an interrupted apply)."""
    result = apply.rollback(storage=_storage(root), apply_id=apply_id, now=now())
    if as_json:
        emit_json(
            {
                "apply_id": result.apply_id,
                "restored": result.restored,
                "fingerprint_ok": result.fingerprint_ok,
                "changed": list(result.changed),
            }
        )
    else:
        click.echo(render.rolled_back(result))
    if not result.fingerprint_ok:
        raise ApplyError(
            f"rolled back {apply_id}, but the tree differs from the plan's before "
            f"({'; '.join(result.changed)}): something else changed it meanwhile"
        )


@cli.command()
@click.argument("apply_id", required=False)
@click.option("--older-than", metavar="AGE", help="Every applied one older than AGE (e.g. 7d).")
@root_option
@json_option
def purge(apply_id: str | None, older_than: str | None, root: Path | None, as_json: bool) -> None:
    """Delete the quarantine of APPLY_ID (or of every applied one older than AGE) for good."""
    if (apply_id is None) == (older_than is None):
        raise click.UsageError("give an APPLY_ID or --older-than AGE")
    age = parse_age(older_than) if older_than is not None else None
    done = apply.purge(storage=_storage(root), apply_id=apply_id, older_than=age, now=now())
    if as_json:
        emit_json([r.apply_id for r in done])
    else:
        click.echo(render.purged(done))


@cli.command()
@root_option
@json_option
def history(root: Path | None, as_json: bool) -> None:
    """List the applies recorded in the storage, oldest first."""
    found = apply.records(_storage(root))
    if as_json:
        emit_json([apply.record_json(r) for r in found])
    else:
        click.echo(render.history(found), nl=False)


@cli.command()
@click.argument("directory", type=PathArg, required=False)
def demo(directory: Path | None) -> None:
    """Build a sample registry and walk through plan, show and verify on it."""
    walkthrough.run(directory, echo=click.echo, now=now())


def main() -> None:
    cli(prog_name="regplan")
